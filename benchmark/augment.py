"""Augmentation as batched tensor ops on the device (airbench-style): no per-image Python, no PIL.

Every op takes float images in 0..1, NCHW, and applies itself to each image with probability `p`
(and only where `mask` is True, when given). All randomness comes from the `generator` passed in,
and every op draws the same amount of it whatever `p` is, so an epoch's augmentation is a pure
function of the generator's seed. Policies are data: tuples of `Op`s, named in `POLICIES`.

Where our ops differ from torchvision's PIL transforms: rotation and resized crop interpolate
bilinearly (torchvision's RandomRotation defaults to nearest); colour jitter applies brightness,
contrast, saturation in that fixed order (torchvision shuffles the order per image); random erasing
and random resized crop clamp an oversized box to the image instead of re-drawing up to 10 times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zoo.errors import CifarzooError

GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


def _chosen(x: torch.Tensor, generator: torch.Generator, p: float, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Per-image booleans: this op applies to image i; None when it applies to all (always draws len(x) numbers)."""
    chosen = torch.rand(len(x), generator=generator, device=x.device) < p
    if mask is not None:
        return chosen & mask
    return None if p >= 1.0 else chosen


def _uniform(x: torch.Tensor, generator: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(len(x), generator=generator, device=x.device)


def _pick(chosen: torch.Tensor | None, changed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image: `changed` where chosen, else `x`."""
    return changed if chosen is None else torch.where(chosen[:, None, None, None], changed, x)


def _window(x: torch.Tensor, pad: int, dx: torch.Tensor, dy: torch.Tensor, mode: str) -> torch.Tensor:
    """Each image's HxW window at offset (dy, dx) of the image padded by `pad` on every side."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    sn, sc, sh, sw = padded.stride()
    # a view of every window of every image, (n, dy, dx, c, h, w); indexing copies only the chosen ones
    windows = padded.as_strided((n, 2 * pad + 1, 2 * pad + 1, c, h, w), (sn, sh, sw, sc, sh, sw))
    return windows[torch.arange(n, device=x.device), dy, dx]


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (n, c, height, width), align_corners=False)` as broadcast multiply-adds: the same
    sampling points up to rounding. torch computes them as a batched matmul of depth 3 over every pixel, which
    took 1.4 of the 7 ms of augmenting 256 images with the "aug" policy (2-core CPU, AVX2 kernels)."""
    def centres(size: int) -> torch.Tensor:  # pixel centres in [-1, 1]: (2 i + 1) / size - 1
        return torch.arange(size, device=theta.device, dtype=theta.dtype).mul_(2 / size).add_(1 / size - 1)

    t = theta[:, :, :, None, None]  # (n, 2 outputs, 3 inputs, 1, 1)
    row = torch.addcmul(t[:, :, 2], t[:, :, 0], centres(width))  # (n, 2, 1, width): the x term and the offset
    return torch.addcmul(row, t[:, :, 1], centres(height)[:, None]).permute(0, 2, 3, 1)  # (n, height, width, 2)


def _sample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = affine_grid(theta.to(x.dtype), x.shape[2], x.shape[3])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def hflip(x: torch.Tensor, generator: torch.Generator, p: float = 1.0, *,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror left-right."""
    return _pick(_chosen(x, generator, p, mask), x.flip(-1), x)


def alternating_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5, *,
                      mask: torch.Tensor | None = None, index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Derandomised flip (airbench, Jordan 2024): each image gets a fixed random bit, and is mirrored in the
    epochs whose parity matches it, so every two consecutive epochs show both orientations exactly once.
    Draws nothing from `generator`; `p` is not used (half the images flip each epoch by construction)."""
    # a fixed pseudo-random bit per dataset index (Knuth's multiplicative hash), flipped every epoch
    bit = ((index.to(torch.int64) * 2654435761) % 2**32 >> 16) & 1
    chosen = bit != epoch % 2
    if mask is not None:
        chosen = chosen & mask
    return _pick(chosen, x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator, p: float = 1.0, *,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-pad by `padding`, then cut a window of the original size at a uniform offset."""
    chosen = _chosen(x, generator, p, mask)
    offset = torch.randint(0, 2 * padding + 1, (2, len(x)), generator=generator, device=x.device)
    if chosen is not None:
        offset = torch.where(chosen, offset, padding)  # offset == padding: the image itself
    return _window(x, padding, offset[0], offset[1], "constant")


def translate(x: torch.Tensor, pixels: int, generator: torch.Generator, p: float = 1.0, *,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Shift by a uniform integer (dx, dy) in [-pixels, pixels], filling from a reflection of the edge."""
    chosen = _chosen(x, generator, p, mask)
    shift = torch.randint(-pixels, pixels + 1, (2, len(x)), generator=generator, device=x.device)
    if chosen is not None:
        shift = torch.where(chosen, shift, 0)
    offset = pixels - shift  # content moves by +shift
    return _window(x, pixels, offset[0], offset[1], "reflect")


def rotate(x: torch.Tensor, degrees: float | tuple[float, float], generator: torch.Generator, p: float = 1.0, *,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate about the centre by a uniform angle in [-degrees, degrees] (or a (lo, hi) range),
    counter-clockwise for positive angles (torchvision's convention), bilinear, corners filled with 0."""
    lo, hi = (-degrees, degrees) if isinstance(degrees, int | float) else degrees
    chosen = _chosen(x, generator, p, mask)
    angle = torch.deg2rad(_uniform(x, generator, lo, hi))
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _pick(chosen, _sample(x, theta), x)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float,
                 generator: torch.Generator, p: float = 1.0, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scale brightness, contrast and saturation by factors uniform in [1 - s, 1 + s] (torchvision's)."""
    chosen = _chosen(x, generator, p, mask)
    strength = torch.tensor([brightness, contrast, saturation], device=x.device, dtype=x.dtype)[:, None]
    factor = (1 + strength * (2 * torch.rand(3, len(x), generator=generator, device=x.device) - 1)).clamp_min(0)
    factor = factor[:, :, None, None, None]
    gray = torch.tensor(GRAY, device=x.device, dtype=x.dtype)[None, :, None, None]
    out = x
    # each blend one lerp (start + weight * (end - start)) and each clamp in place: fewer passes over the batch
    if brightness:
        out = (out * factor[0]).clamp_(0, 1)
    if contrast:
        mean = (out * gray).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        out = torch.lerp(mean, out, factor[1]).clamp_(0, 1)
    if saturation:
        out = torch.lerp((out * gray).sum(1, keepdim=True), out, factor[2]).clamp_(0, 1)
    return _pick(chosen, out, x)


def _box(x: torch.Tensor, generator: torch.Generator, scale: Sequence[float], ratio: Sequence[float]):
    """Random boxes as fractions of the image: (width, height), area in `scale`, log-uniform aspect in `ratio`."""
    area = _uniform(x, generator, scale[0], scale[1])
    aspect = torch.exp(_uniform(x, generator, math.log(ratio[0]), math.log(ratio[1])))  # width / height
    return (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)


def random_erasing(x: torch.Tensor, scale: Sequence[float], ratio: Sequence[float], generator: torch.Generator,
                   p: float = 1.0, value: float = 0.0, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fill one random box per image with `value` (torchvision's RandomErasing on the 0..1 image)."""
    n, _, h, w = x.shape
    chosen = _chosen(x, generator, p, mask)
    bw, bh = _box(x, generator, scale, ratio)
    bw, bh = (bw * w).round().clamp(1, w), (bh * h).round().clamp(1, h)
    u = torch.rand(2, n, generator=generator, device=x.device)
    left, top = (u[0] * (w - bw + 1)).floor(), (u[1] * (h - bh + 1)).floor()
    cols, rows = torch.arange(w, device=x.device), torch.arange(h, device=x.device)
    in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
    in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
    box = _pick(chosen, in_rows[:, None, :, None] & in_cols[:, None, None, :], False)
    return torch.where(box, torch.as_tensor(value, dtype=x.dtype, device=x.device), x)


def random_resized_crop(x: torch.Tensor, scale: Sequence[float], ratio: Sequence[float],
                        generator: torch.Generator, p: float = 1.0, *,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Crop a random box (area fraction in `scale`, aspect in `ratio`) and resize it back, bilinearly."""
    chosen = _chosen(x, generator, p, mask)
    bw, bh = _box(x, generator, scale, ratio)
    u = 2 * torch.rand(2, len(x), generator=generator, device=x.device) - 1
    cx, cy, zero = u[0] * (1 - bw), u[1] * (1 - bh), torch.zeros_like(bw)  # box centre, inside the image
    theta = torch.stack([torch.stack([bw, zero, cx], 1), torch.stack([zero, bh, cy], 1)], 1)
    return _pick(chosen, _sample(x, theta), x)


OPS: dict[str, Callable[..., torch.Tensor]] = {
    f.__name__: f for f in (hflip, alternating_hflip, random_crop, translate, rotate, color_jitter, random_erasing,
                            random_resized_crop)
}
POSITIONAL_OPS = {"alternating_hflip"}  # ops that also need each image's dataset index and the epoch


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value


@dataclass(frozen=True)
class Op:
    """One augmentation step: the op's name in `OPS`, its probability, its parameters.

    `params` may be given as a dict; it is stored as sorted (name, value) pairs so an Op is hashable.
    """

    name: str
    p: float = 1.0
    params: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()

    def __post_init__(self) -> None:
        if self.name not in OPS:
            raise ValueError(f"unknown augmentation op {self.name!r}; known: {', '.join(OPS)}")
        items = self.params.items() if isinstance(self.params, Mapping) else self.params
        object.__setattr__(self, "params", tuple(sorted((k, _frozen(v)) for k, v in items)))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, mask: torch.Tensor | None = None,
                 index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
        kwargs = self.kwargs
        if self.name in POSITIONAL_OPS:
            if index is None:
                raise ValueError(f"augmentation op {self.name!r} needs the images' dataset indices")
            kwargs.update(index=index, epoch=epoch)
        return OPS[self.name](x, generator=generator, p=self.p, mask=mask, **kwargs)


JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2}
POLICIES: dict[str, tuple[Op, ...]] = {
    # no augmentation, normalisation only: report 000's "normalization" runs
    "norm": (),
    # report 000: "random crop, random horizontal flip, random rotation and color jitter", no numbers given;
    # ours (a choice): the common torchvision CIFAR recipe RandomCrop(32, padding=4), RandomHorizontalFlip(),
    # RandomRotation(15), ColorJitter(0.2, 0.2, 0.2), in the report's order
    "aug": (Op("random_crop", 1.0, {"padding": 4}), Op("hflip", 0.5), Op("rotate", 1.0, {"degrees": 15.0}),
            Op("color_jitter", 1.0, JITTER)),
    # report 001 "basic": horizontal flip, colour jitter, rotation "by an angle up to 10 degrees" (the report's
    # number); flip p=0.5 and jitter 0.2/0.2/0.2 are our choice (no numbers given)
    "basic": (Op("hflip", 0.5), Op("color_jitter", 1.0, JITTER), Op("rotate", 1.0, {"degrees": 10.0})),
    # report 001 "basic + random erasing": no numbers given; ours: torchvision RandomErasing's defaults
    # (p=0.5, area 2-33%, aspect 0.3-3.3), erased to black on the 0..1 image
    "basic+erase": (Op("hflip", 0.5), Op("color_jitter", 1.0, JITTER), Op("rotate", 1.0, {"degrees": 10.0}),
                    Op("random_erasing", 0.5, {"scale": (0.02, 0.33), "ratio": (0.3, 3.3)})),
    # report 002: "Horizontal Flip, Random Rotation and Random Resized Crop", the whole policy applied with
    # probability Recipe.augment_prob (augment(apply_prob=...)); no numbers given; ours: flip p=0.5,
    # rotation 15 degrees, RandomResizedCrop(32)'s defaults (area 8-100%, aspect 3/4-4/3)
    "report002": (Op("hflip", 0.5), Op("rotate", 1.0, {"degrees": 15.0}),
                  Op("random_resized_crop", 1.0, {"scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)})),
    # the fast-training literature (Page's ResNet-9 DAWNBench entry, airbench): flip + translate up to 2 px,
    # reflect padding
    "fliptranslate": (Op("hflip", 0.5), Op("translate", 1.0, {"pixels": 2})),
    # the same with airbench's derandomised (alternating) flip
    "altfliptranslate": (Op("alternating_hflip", 0.5), Op("translate", 1.0, {"pixels": 2})),
}


def get_policy(name: str) -> tuple[Op, ...]:
    """The policy called `name`; an unknown name is a user error listing the valid ones."""
    if name not in POLICIES:
        raise CifarzooError(f"unknown augmentation policy '{name}'; valid policies: {', '.join(POLICIES)}.")
    return POLICIES[name]


def augment(images: torch.Tensor, policy: Sequence[Op], generator: torch.Generator,
            apply_prob: float = 1.0, *, index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
    """Apply `policy` to each image with probability `apply_prob`; each op then with its own p.
    `index` (the images' positions in the dataset) and `epoch` are needed by `POSITIONAL_OPS` only."""
    if not policy:
        return images
    mask = None
    if apply_prob < 1.0:
        mask = torch.rand(len(images), generator=generator, device=images.device) < apply_prob
    for op in policy:
        images = op(images, generator, mask, index, epoch)
    return images
