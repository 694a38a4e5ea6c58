"""Architectures, one module per family; each registers its builders with `zoo.registry.register_model`.

`zoo.entries` imports every module here, then registers the entries (architecture + recipe). Modules
import torch at the top but timm and torchvision inside their builders, so listing the zoo stays fast.
"""
