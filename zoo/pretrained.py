"""ImageNet weights for the fine-tune architectures, found locally or downloaded (never silently).

torchvision's weights API names each file (`get_weight(...).url`); the file is looked for, in order,
at an explicit `weights_file` (a file, or a directory holding the URL's basename), in the directory
named by $CIFARZOO_IMAGENET_WEIGHTS, and in the torch hub cache (torch.hub.get_dir()/checkpoints).
Only then is a download tried, with torch.hub's hash check and a socket timeout, so an offline
machine fails fast with one sentence saying how to provide the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError

ENV_DIR = "CIFARZOO_IMAGENET_WEIGHTS"
DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation: an offline machine must not hang

# architecture -> torchvision weights enum (ImageNet-1k, the weights report 001 fine-tuned)
IMAGENET_WEIGHTS = {
    "mobilenetv3-small": "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
    "efficientnetv2-s": "EfficientNet_V2_S_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's convention: name-<sha256 prefix>.pth


def weights_name(architecture: str) -> str:
    """The torchvision weights enum name for `architecture` (e.g. "ResNet18_Weights.IMAGENET1K_V1")."""
    try:
        return IMAGENET_WEIGHTS[architecture]
    except KeyError:
        raise CifarzooError(
            f"architecture '{architecture}' has no ImageNet weights; use one of {', '.join(IMAGENET_WEIGHTS)}."
        ) from None


def weights_url(architecture: str) -> str:
    """Download URL of the ImageNet weights of `architecture` (from torchvision's weights enum)."""
    from torchvision.models import get_weight

    return get_weight(weights_name(architecture)).url


def weights_file_name(architecture: str) -> str:
    """The file name torch.hub stores the weights under (the URL's basename, e.g. resnet18-f37072fd.pth)."""
    return weights_url(architecture).rsplit("/", 1)[-1]


def find_local(architecture: str, weights_file: str | os.PathLike | None = None) -> Path | None:
    """The local ImageNet weights file of `architecture`, or None; never downloads."""
    name = weights_file_name(architecture)
    candidates: list[Path] = []
    if weights_file:
        given = Path(weights_file).expanduser()
        candidates.append(given / name if given.is_dir() else given)
    if os.environ.get(ENV_DIR):
        candidates.append(Path(os.environ[ENV_DIR]).expanduser() / name)
    candidates.append(_hub_checkpoints() / name)
    return next((p for p in candidates if p.is_file()), None)


def imagenet_weights_available(architecture: str) -> bool:
    """Whether the ImageNet weights of `architecture` are on this machine (no download is tried)."""
    return find_local(architecture) is not None


def load_imagenet_state_dict(architecture: str,
                             weights_file: str | os.PathLike | None = None) -> tuple[dict[str, Any], str]:
    """The ImageNet state dict of `architecture` and where it came from (a path or the URL)."""
    if weights_file and not Path(weights_file).expanduser().exists():
        raise CifarzooError(f"ImageNet weights file {weights_file} does not exist; check the path.")
    path = find_local(architecture, weights_file)
    if path is not None:
        explicit = weights_file is not None and Path(weights_file).expanduser().is_file()
        if not explicit:
            _check_hash_in_name(path)
        return _read(path), str(path)
    url = weights_url(architecture)
    try:
        return _download(url), url
    except Exception as err:  # URLError, timeouts, HTTP errors, hash mismatch: all mean "not available"
        raise CifarzooError(
            f"ImageNet weights for {architecture} (file {url.rsplit('/', 1)[-1]}) are not available offline; "
            f"download them on a connected machine and pass --imagenet-weights DIR or set {ENV_DIR}."
        ) from err


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _check_hash_in_name(path: Path) -> None:
    match = _HASH_IN_NAME.search(path.name)
    if not match:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise CifarzooError(
            f"ImageNet weights file {path} is corrupt (its sha256 does not start with {match.group(1)} as its "
            "name says); download it again."
        )


def _read(path: Path) -> dict[str, Any]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CifarzooError(f"ImageNet weights file {path} cannot be read ({type(err).__name__}); "
                            "it is corrupt or not a state dict.") from err
    if not isinstance(state, dict):
        raise CifarzooError(f"ImageNet weights file {path} holds a {type(state).__name__}, not a state dict.")
    return state


def _download(url: str) -> dict[str, Any]:
    import torch.hub

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True,
                                                  weights_only=True)
    finally:
        socket.setdefaulttimeout(previous)
