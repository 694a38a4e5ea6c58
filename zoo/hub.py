"""`zoo.load` and `zoo.info`: trained networks with their preprocessing, and what the zoo knows of an entry.

`load` resolves the weights in order: an explicit file or record, the weights the package publishes for
the entry (`zoo.published`, checked by sha256, offline), the local store's best run (chosen without the
test split), then the entry's pinned URL (checked by sha256). The network comes back in eval mode with a
`cifarzoo` attribute (`LoadedInfo`) carrying the entry, class names, mean/std, input size and metrics.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.cifar10 import NORMALIZATION
from zoo.entry import Entry
from zoo.errors import CifarzooError
from zoo.published import Weights, get_weights
from zoo.registry import create, get_entry
from zoo.weights import find_best, read_weights, store_dir


@dataclass(frozen=True)
class LoadedInfo:
    """What a loaded network needs around it: feed it (x / 255 - mean) / std at input_size."""

    entry: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    metrics: dict[str, Any] = field(default_factory=dict)
    weights: str = ""
    tta: str = "none"  # the test-time augmentation its published numbers were measured with
    sha256: str = ""  # of the weights file

    def transform(self) -> Any:
        """The evaluation transform (torchvision v2): a PIL image or uint8 HWC array/tensor in, the normalised
        float32 CHW tensor this network takes out (resized to `input_size` where that is not 32)."""
        import torch
        from torchvision.transforms import v2

        def hwc_to_chw(image: Any) -> Any:  # v2 reads tensors as CHW; arrays and PIL images it converts itself
            if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[-1] in (1, 3):
                return image.permute(2, 0, 1)
            return image

        steps = [v2.Lambda(hwc_to_chw), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
        if self.input_size != 32:
            steps.append(v2.Resize((self.input_size, self.input_size), antialias=False))  # as training did
        return v2.Compose([*steps, v2.Normalize(list(self.mean), list(self.std))])


def build(entry: Entry | str, pretrained: bool = False) -> Any:
    """The entry's network, untrained; `pretrained` keeps ImageNet initialisation for fine-tune entries."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    kwargs = dict(entry.arch_kwargs)
    if "pretrained" in kwargs:
        kwargs["pretrained"] = bool(kwargs["pretrained"]) and pretrained
    return create(entry.architecture, **kwargs)


def load(name: str, weights: str | os.PathLike | Weights | None = None) -> Any:
    """The trained network of entry `name` in eval mode, with `.cifarzoo` (LoadedInfo).

    `weights`: None (the published DEFAULT, else the best local run), "published", "local", a published
    `Weights` record, or the path of a .safetensors file (with its sidecar).
    """
    entry = get_entry(name)
    path, expected, meta = _resolve(entry, weights)
    state, side = read_weights(path, entry.name, sha256=expected)
    model = build(entry)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CifarzooError(f"weights file {path} does not fit entry '{entry.name}' (wrong keys or shapes: it was "
                            "trained for another architecture or configuration).") from err
    model.eval()
    model.cifarzoo = _loaded_info(entry, meta or side, path)
    return model


def entry_info(name: str, count: bool = True) -> dict[str, Any]:
    """Metadata of entry `name`: architecture, recipe, report, reported numbers, parameters, weights.

    `count=False` takes the parameter count from the entry's metadata (which the tests recompute)
    instead of building the network, so the CLI answers without importing timm or torchvision.
    """
    entry = get_entry(name)
    best = find_best(entry.name)
    published = get_weights(entry.name).DEFAULT
    data = entry.to_dict()
    params = entry.num_params if not count and entry.num_params is not None else count_params(entry)
    data.update(recipe=entry.recipe.to_dict(), params=params, weights_present=best is not None,
                weights=str(best) if best else None, store=str(store_dir() / entry.name),
                published=published.to_dict() if published else None)
    return data


def num_parameters(model: Any) -> int:
    """Parameters of a network (trainable or not; buffers such as BatchNorm statistics excluded): the one
    definition every count in cifarzoo uses."""
    model = getattr(model, "_orig_mod", model)  # the eager module behind a torch.compile wrapper
    return sum(p.numel() for p in model.parameters())


def count_params(entry: Entry | str, arch_kwargs: dict[str, Any] | None = None) -> int:
    """Parameters of the entry's network (with other arguments, if given), counted on the meta device (no
    memory, no ImageNet weights)."""
    import torch

    entry = get_entry(entry) if isinstance(entry, str) else entry
    with torch.device("meta"):
        kwargs = None if arch_kwargs is None else {**arch_kwargs, **({"pretrained": False}
                                                                     if "pretrained" in arch_kwargs else {})}
        model = build(entry) if kwargs is None else create(entry.architecture, **kwargs)
    return num_parameters(model)


def _resolve(entry: Entry, weights: str | os.PathLike | Weights | None) -> tuple[Path, str | None, dict | None]:
    """(file, the sha256 it must have if a published record says so, that record as metadata)."""
    if isinstance(weights, Weights):
        return weights.path, weights.sha256, weights.to_dict()
    if weights in (None, "published"):
        default = get_weights(entry.name).DEFAULT
        if default is not None:
            return default.path, default.sha256, default.to_dict()
        if weights == "published":
            raise CifarzooError(f"cifarzoo publishes no weights for '{entry.name}'; `cifarzoo list` shows which "
                                "entries have them, or train it with `cifarzoo train " + entry.name + "`.")
    if weights in (None, "local"):
        best = find_best(entry.name)
        if best is not None:
            return best, None, None
        if entry.weights_url and weights is None:
            return _fetch_pinned(entry), entry.weights_sha256, None
        raise CifarzooError(f"no trained weights for '{entry.name}' (none published, none of a full or quick run on "
                            f"real data in {store_dir()}); produce them with `cifarzoo train {entry.name} --profile "
                            "full`, or pass a weights file.")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CifarzooError(f"weights file {path} does not exist; check the path.")
    return path, None, None


def _fetch_pinned(entry: Entry) -> Path:
    """Download the entry's pinned weights into the store, checked against weights_sha256."""
    from zoo.files import sha256_bytes, write_atomic

    if not entry.weights_sha256:
        raise CifarzooError(f"entry '{entry.name}' pins {entry.weights_url} without a sha256; it cannot be trusted.")
    path = store_dir() / entry.name / f"pinned-{entry.weights_sha256[:12]}.safetensors"
    if path.is_file():
        return path
    try:
        with urllib.request.urlopen(entry.weights_url, timeout=30) as response:
            blob = response.read()
    except OSError as err:
        raise CifarzooError(f"pinned weights of '{entry.name}' ({entry.weights_url}) cannot be downloaded "
                            f"({err.__class__.__name__}); train them with `cifarzoo train {entry.name}`.") from err
    if sha256_bytes(blob) != entry.weights_sha256:
        raise CifarzooError(f"pinned weights of '{entry.name}' from {entry.weights_url} fail their sha256 "
                            "check; nothing was stored.")
    return write_atomic(path, blob)


def _loaded_info(entry: Entry, meta: dict[str, Any], path: Path) -> LoadedInfo:
    mean, std = NORMALIZATION[entry.recipe.normalize]
    return LoadedInfo(
        entry=entry.name,
        classes=tuple(meta.get("classes") or entry.classes),
        mean=tuple(float(v) for v in (meta.get("mean") or mean)),
        std=tuple(float(v) for v in (meta.get("std") or std)),
        input_size=int(meta.get("input_size") or entry.recipe.input_size),
        metrics=dict(meta.get("metrics") or {}),
        weights=str(path),
        tta=str(meta.get("tta") or entry.recipe.tta),
        sha256=str(meta.get("sha256") or ""),
    )
