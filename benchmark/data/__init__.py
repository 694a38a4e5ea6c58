"""Data sources -> one in-memory `Dataset` (uint8 NHWC tensors + labels + class names + fingerprint).

Sources: "cifar10" (official download), "synthetic" (generated, for tests), or a path to an
image-folder tree (folder, .zip, .tar, .tar.gz). Path sources are decoded once and cached.
"""

from .dataset import CIFAR10_CLASSES, Dataset, fingerprint, home_dir
from .folder import read_image_folder
from .sources import SOURCE_FORMS, load_dataset, official_cifar10
from .synthetic import synthetic_dataset

__all__ = [
    "CIFAR10_CLASSES", "Dataset", "SOURCE_FORMS", "fingerprint", "home_dir", "load_dataset",
    "official_cifar10", "read_image_folder", "synthetic_dataset",
]
