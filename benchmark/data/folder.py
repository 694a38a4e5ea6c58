"""Image-folder sources: train/<class>/* and test/<class>/* in a folder, .zip or .tar(.gz).

Class names are the folder names sorted alphabetically (for CIFAR-10 that is the official label
order). The tree may sit inside one wrapping top-level folder. JPEGs are decoded in batches by
torchvision (libjpeg-turbo, about 4x faster than PIL one by one, bit-identical); anything else, and
any JPEG that batch decoding refuses, goes through PIL, which names the offending file.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from zoo.errors import CifarzooError, one_line

from .archive import FolderTree, TarTree, ZipTree, open_tree
from .dataset import Dataset, fingerprint

SPLITS = ("train", "test")
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_SUFFIXES = (".jpg", ".jpeg")
LAYOUT_HINT = "expected train/<class>/<image> and test/<class>/<image>, optionally inside one top-level folder"
# Archives we know by checksum get a precise description (see ../shared/datasets/README.md).
KNOWN_ARCHIVES = {
    "05b4c8c8bf43c21250b5d4abc4621c4fed6837d691555b00c9215bfc6b363d11": "CIFAR-10, JPEG q75 re-encoding (lossy)",
}
Tree = FolderTree | ZipTree | TarTree


def find_layout(files: list[str], dirs: set[str], origin: str) -> dict[str, dict[str, list[str]]]:
    """Map split -> class -> sorted file names, or raise naming what is wrong with the layout."""
    dirs = dirs | {name.rsplit("/", 1)[0] for name in files if "/" in name}
    dirs |= {d.rsplit("/", 1)[0] for d in dirs if "/" in d}  # grandparents: train/ from train/cat/x.png
    prefix = _root_prefix(dirs, origin)
    layout: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        base = f"{prefix}{split}/"
        classes: dict[str, list[str]] = {
            d[len(base):]: [] for d in dirs if d.startswith(base) and "/" not in d[len(base):]
        }
        for name in files:
            if not name.startswith(base):
                continue
            parts = name[len(base):].split("/")
            if len(parts) == 1:
                raise CifarzooError(f"'{name}' in {origin} sits directly in {split}/; {LAYOUT_HINT}.")
            if len(parts) > 2:
                raise CifarzooError(f"'{name}' in {origin} is nested too deep; {LAYOUT_HINT}.")
            classes[parts[0]].append(name)
        for cls, names in classes.items():
            if not names:
                raise CifarzooError(f"class folder '{base}{cls}/' in {origin} is empty; add its images or remove it.")
            names.sort()
        layout[split] = classes
    train, test = set(layout["train"]), set(layout["test"])
    if train != test:
        only = [f"train only: {', '.join(sorted(train - test))}"] * bool(train - test)
        only += [f"test only: {', '.join(sorted(test - train))}"] * bool(test - train)
        raise CifarzooError(f"train/ and test/ in {origin} have different class folders ({'; '.join(only)}).")
    return layout


def _root_prefix(dirs: set[str], origin: str) -> str:
    """'' when train/ and test/ are at the top, 'wrapper/' when inside one top-level folder."""
    tops = sorted({d.split("/")[0] for d in dirs})
    prefix = f"{tops[0]}/" if len(tops) == 1 and tops[0] not in SPLITS else ""
    missing = [f"{prefix}{s}/" for s in SPLITS if f"{prefix}{s}" not in dirs]
    if not missing:
        return prefix
    found = ", ".join(f"{d}/" for d in tops[:8]) or "no folders"
    raise CifarzooError(f"{origin} has no {' or '.join(missing)} folder (found: {found}); {LAYOUT_HINT}.")


def decode_images(names: list[str], blobs: list[bytes], tree: Tree) -> np.ndarray:
    """Decode images to a uint8 (N, 32, 32, 3) array; anything not 32x32 RGB is an error naming the file."""
    from torchvision.io import decode_jpeg

    out = np.empty((len(names), 32, 32, 3), np.uint8)
    jpegs = [i for i, blob in enumerate(blobs) if blob[:3] == JPEG_MAGIC]
    for i in sorted(set(range(len(names))) - set(jpegs)):
        out[i] = _decode_pil(names[i], blobs[i], tree)
    for start in range(0, len(jpegs), 4096):
        chunk = jpegs[start : start + 4096]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # libjpeg's "corrupt data" warnings mean a damaged file
                decoded = decode_jpeg([torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in chunk])
        except (RuntimeError, Warning):
            decoded = []
        if len(decoded) == len(chunk) and all(tuple(img.shape) == (3, 32, 32) for img in decoded):
            out[chunk] = torch.stack(decoded).permute(0, 2, 3, 1).numpy()
        else:  # some file is damaged or not 32x32 RGB: PIL finds it and names it
            for i in chunk:
                out[i] = _decode_pil(names[i], blobs[i], tree)
    return out


def _decode_pil(name: str, blob: bytes, tree: Tree) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as img:
            if img.size != (32, 32) or img.mode != "RGB":
                raise CifarzooError(
                    f"{tree.where(name)} is {img.size[0]}x{img.size[1]} {img.mode}, not 32x32 RGB; "
                    "convert the dataset to 32x32 RGB images."
                )
            return np.asarray(img.convert("RGB"))
    except CifarzooError:
        raise
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        # PIL's messages name its in-memory buffer ("<_io.BytesIO object at 0x...>"), not the file: say the file
        why = type(err).__name__ if "BytesIO" in str(err) else one_line(err)
        raise CifarzooError(
            f"{tree.where(name)} could not be decoded as an image ({why}); replace or remove it."
        ) from None


def read_image_folder(path: Path) -> Dataset:
    """Decode an image-folder tree (folder or archive at absolute `path`) into a Dataset."""
    from .official import layout_of, read_official

    tree = open_tree(path)
    files, dirs = tree.listing()
    official = layout_of(files)
    if official is not None:  # the official python/binary releases, or Kaggle's layout
        return read_official(path, tree, *official)
    layout = find_layout(files, dirs, str(path))
    classes = sorted(layout["train"])
    arrays = {}
    lossy = False
    for split in SPLITS:
        names = [n for cls in classes for n in layout[split][cls]]
        labels = [k for k, cls in enumerate(classes) for _ in layout[split][cls]]
        blobs = tree.read(names)
        lossy = lossy or any(n.lower().endswith(JPEG_SUFFIXES) or b[:3] == JPEG_MAGIC for n, b in zip(names, blobs))
        arrays[split] = (torch.from_numpy(decode_images(names, blobs, tree)), torch.tensor(labels, dtype=torch.int64))
        del blobs
    (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    return Dataset(
        x_train, y_train, x_test, y_test, classes,
        source=path.name,  # records and pages name the file, never the machine's path to it
        description=_describe(path, classes, len(y_train), len(y_test), lossy),
        fingerprint=fingerprint(x_train, y_train, x_test, y_test, classes),
        lossy=lossy,
    )


def _describe(path: Path, classes: list[str], n_train: int, n_test: int, lossy: bool) -> str:
    kind = "JPEG, lossy" if lossy else "lossless"
    what = f"{len(classes)} classes, {n_train:,} train / {n_test:,} test images, {kind}"
    if path.is_dir():
        return f"Image folder ({what}), {path.name}/."
    digest = _sha256(path)
    name = KNOWN_ARCHIVES.get(digest, f"Image-folder archive ({what})")
    return f"{name}, {path.name}, sha256 {digest}."


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
