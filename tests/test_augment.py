"""benchmark.augment: each batched op does what it says, p=0 is identity, randomness is reproducible."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from benchmark.augment import (
    OPS,
    POLICIES,
    POSITIONAL_OPS,
    Op,
    affine_grid,
    alternating_hflip,
    augment,
    color_jitter,
    get_policy,
    hflip,
    random_crop,
    random_erasing,
    random_resized_crop,
    rotate,
    translate,
)
from zoo.errors import CifarzooError

# keyword arguments that make each op do something visible
OP_PARAMS = {
    "hflip": {},
    "random_crop": {"padding": 4},
    "translate": {"pixels": 2},
    "rotate": {"degrees": 30.0},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4},
    "random_erasing": {"scale": (0.1, 0.3), "ratio": (0.5, 2.0)},
    "random_resized_crop": {"scale": (0.2, 0.5), "ratio": (0.75, 1.33)},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=gen(seed))


def coded(n: int) -> torch.Tensor:
    """Images whose every pixel value says where it came from: 1 + 1024*c + 32*row + col."""
    c, r, w = torch.meshgrid(torch.arange(3), torch.arange(32), torch.arange(32), indexing="ij")
    return (1 + 1024 * c + 32 * r + w).float().expand(n, 3, 32, 32).clone()


def test_every_op_is_registered_and_tested():
    assert set(OPS) == set(OP_PARAMS) | POSITIONAL_OPS  # positional ops have their own tests below


def test_alternating_hflip_shows_each_image_once_each_way_every_two_epochs():
    x, index = images(1000), torch.arange(1000)
    flipped = []
    for epoch in (0, 1, 2):
        out = alternating_hflip(x, gen(epoch), index=index, epoch=epoch)
        is_flip = (out == x.flip(-1)).flatten(1).all(1)
        assert torch.equal(is_flip, ~(out == x).flatten(1).all(1))  # each image is either itself or its mirror
        flipped.append(is_flip)
    assert torch.equal(flipped[0], ~flipped[1]) and torch.equal(flipped[0], flipped[2])
    assert 450 <= int(flipped[0].sum()) <= 550  # about half each epoch
    # the bit belongs to the image, not to its position in the batch
    perm = torch.randperm(1000, generator=gen(9))
    out = alternating_hflip(x[perm], gen(), index=index[perm], epoch=0)
    assert torch.equal(out, alternating_hflip(x, gen(), index=index, epoch=0)[perm])


def test_positional_op_without_indices_is_an_error():
    with pytest.raises(ValueError, match="dataset indices"):
        augment(images(4), get_policy("altfliptranslate"), gen())


@pytest.mark.parametrize("name", sorted(OP_PARAMS))
def test_p_zero_is_identity(name):
    x = images()
    assert torch.equal(OPS[name](x, generator=gen(), p=0.0, **OP_PARAMS[name]), x)


@pytest.mark.parametrize("name", sorted(OP_PARAMS))
def test_same_seed_same_output_other_seed_other_output(name):
    x = images()
    a = OPS[name](x, generator=gen(1), p=0.5, **OP_PARAMS[name])
    b = OPS[name](x, generator=gen(1), p=0.5, **OP_PARAMS[name])
    c = OPS[name](x, generator=gen(2), p=0.5, **OP_PARAMS[name])
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


@pytest.mark.parametrize("name", sorted(OP_PARAMS))
def test_mask_limits_the_op_to_chosen_images(name):
    x = images(8)
    mask = torch.tensor([True, False] * 4)
    out = OPS[name](x, generator=gen(), mask=mask, **OP_PARAMS[name])
    assert torch.equal(out[~mask], x[~mask])
    assert not torch.equal(out[mask], x[mask])


def test_hflip_mirrors_exactly():
    x = images()
    assert torch.equal(hflip(x, gen()), x.flip(-1))
    half = hflip(x, gen(), p=0.5)
    flipped = torch.tensor([torch.equal(h, f) for h, f in zip(half, x.flip(-1))])
    kept = torch.tensor([torch.equal(h, o) for h, o in zip(half, x)])
    assert torch.all(flipped ^ kept) and 0 < flipped.sum() < len(x)


def _shift_of(out: torch.Tensor) -> tuple[int, int]:
    """(dy, dx) by which coded content moved: read where the centre pixel came from."""
    v = int(out[0, 16, 16].item()) - 1
    return 16 - v // 32, 16 - v % 32


def test_random_crop_shifts_content_and_pads_with_zero():
    x = coded(64)
    out = random_crop(x, 4, gen())
    shifts = set()
    for o in out:
        dy, dx = _shift_of(o)
        assert abs(dy) <= 4 and abs(dx) <= 4
        expected = torch.zeros_like(o)
        expected[:, max(dy, 0) : 32 + min(dy, 0), max(dx, 0) : 32 + min(dx, 0)] = \
            x[0, :, max(-dy, 0) : 32 + min(-dy, 0), max(-dx, 0) : 32 + min(-dx, 0)]
        assert torch.equal(o, expected)  # content shifted, the uncovered border is zero
        shifts.add((dy, dx))
    assert len(shifts) > 20  # 81 possible offsets


def test_translate_moves_a_delta_pixel_by_the_offset():
    x = torch.zeros(300, 3, 32, 32)
    x[:, 1, 16, 16] = 1.0
    out = translate(x, 2, gen())
    moves = set()
    for o in out:
        where = o.nonzero().tolist()
        assert len(where) == 1 and where[0][0] == 1  # the one pixel moved, nothing else appeared
        dy, dx = where[0][1] - 16, where[0][2] - 16
        assert abs(dy) <= 2 and abs(dx) <= 2
        moves.add((dy, dx))
    assert len(moves) == 25  # every offset in [-2, 2]^2 occurs


def test_translate_fills_from_reflection_not_zero():
    x = coded(32)
    out = translate(x, 2, gen())
    assert (out > 0).all()  # reflect padding: no black border
    for o in out:
        dy, dx = _shift_of(o)
        assert torch.equal(o[:, 2:-2, 2:-2], x[0, :, 2 - dy : 30 - dy, 2 - dx : 30 - dx])


def test_random_erasing_fills_one_box_and_leaves_the_rest():
    x = images(64) * 0.4  # never equal to the fill value
    out = random_erasing(x, (0.05, 0.3), (0.3, 3.3), gen(), value=0.5)
    for o, orig in zip(out, x):
        changed = (o != orig).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        box = torch.zeros_like(changed)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(changed, box)  # a filled rectangle
        assert (o[:, box] == 0.5).all() and torch.equal(o[:, ~box], orig[:, ~box])
        assert 0.02 * 1024 <= box.sum() <= 0.4 * 1024


def test_color_jitter_with_zero_strength_is_identity():
    x = images()
    assert torch.equal(color_jitter(x, 0.0, 0.0, 0.0, gen()), x)


def test_brightness_scales_each_image_by_one_factor_in_range():
    x = 0.1 + 0.4 * images()  # no clamping at 1.2x
    ratio = color_jitter(x, 0.2, 0.0, 0.0, gen()) / x
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5)
    assert per_image.min() >= 0.8 - 1e-5 and per_image.max() <= 1.2 + 1e-5
    assert per_image[:, 0].std() > 0.01  # factors differ between images


def test_saturation_keeps_luma_and_contrast_keeps_mean_luma():
    x = 0.45 + 0.1 * images()  # no clamping even at factor 2
    saturated = color_jitter(x, 0.0, 0.0, 1.0, gen())  # factors in [0, 2]: grey to twice as colourful
    luma = lambda t: (t * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(-3)  # noqa: E731
    assert torch.allclose(luma(saturated), luma(x), atol=1e-5)
    assert not torch.allclose(saturated, x, atol=1e-3)
    contrasted = color_jitter(x, 0.0, 0.3, 0.0, gen())
    assert torch.allclose(luma(contrasted).mean((1, 2)), luma(x).mean((1, 2)), atol=1e-5)


def test_rotation_by_zero_is_identity_and_by_90_is_rot90():
    x = images()
    assert (rotate(x, (0.0, 0.0), gen()) - x).abs().max() < 1e-5
    quarter = rotate(x, (90.0, 90.0), gen())
    assert (quarter - torch.rot90(x, 1, (2, 3)))[..., 1:-1, 1:-1].abs().max() < 1e-5


def test_rotation_matches_torchvision_bilinear_counter_clockwise():
    x = images(4)
    ours = rotate(x, (30.0, 30.0), gen())
    theirs = TF.rotate(x, 30.0, interpolation=TF.InterpolationMode.BILINEAR)
    assert (ours - theirs)[..., 4:-4, 4:-4].abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_affine_grid_gives_torchs_sampling_points(dtype):
    theta = torch.randn(5, 2, 3, generator=gen(), dtype=dtype)  # rotation, scale, shear and shift at once
    ours = affine_grid(theta, 7, 12)  # unequal sides: swapped axes would show
    theirs = F.affine_grid(theta, [5, 3, 7, 12], align_corners=False)
    assert ours.shape == theirs.shape == (5, 7, 12, 2)
    assert (ours - theirs).abs().max() < (1e-12 if dtype == torch.float64 else 1e-5)


def test_random_resized_crop_full_box_is_identity_and_crops_zoom_in():
    x = images()
    assert (random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), gen()) - x).abs().max() < 1e-5
    ramp = torch.linspace(0, 1, 32).expand(8, 3, 32, 32).clone()  # brightness grows to the right
    zoomed = random_resized_crop(ramp, (0.25, 0.25), (1.0, 1.0), gen())  # a 16x16 box, scaled by 2
    assert (zoomed.diff(dim=-1) >= -1e-6).all()  # still a ramp
    span = zoomed[..., -1] - zoomed[..., 0]
    assert torch.allclose(span, torch.full_like(span, 15 / 31), atol=0.05)  # covering half the range


def test_policies_are_data():
    assert {"norm", "aug", "basic", "basic+erase", "report002", "fliptranslate"} <= set(POLICIES)
    for name, policy in POLICIES.items():
        assert isinstance(policy, tuple) and all(isinstance(op, Op) for op in policy), name
        assert all(op.name in OPS and 0.0 <= op.p <= 1.0 for op in policy)
        assert get_policy(name) is policy
        hash(policy)  # frozen, hashable: usable as a cache key
    assert POLICIES["norm"] == ()
    assert Op("rotate", 1.0, {"degrees": 10.0}) in POLICIES["basic"]


def test_op_params_accept_a_dict_and_stay_hashable():
    op = Op("random_erasing", 0.5, {"scale": [0.02, 0.33], "ratio": (0.3, 3.3)})
    assert op.params == (("ratio", (0.3, 3.3)), ("scale", (0.02, 0.33)))
    assert op.kwargs == {"ratio": (0.3, 3.3), "scale": (0.02, 0.33)}
    assert op == Op("random_erasing", 0.5, (("scale", (0.02, 0.33)), ("ratio", (0.3, 3.3))))
    assert len({op, op}) == 1
    with pytest.raises(ValueError, match="unknown augmentation op"):
        Op("mixup")


def test_unknown_policy_is_a_user_error_listing_the_valid_ones():
    with pytest.raises(CifarzooError, match=r"unknown augmentation policy 'autoaugment'.*fliptranslate"):
        get_policy("autoaugment")


def test_augment_is_reproducible_and_respects_apply_prob():
    x = images(64)
    policy = get_policy("aug")
    a, b = augment(x, policy, gen(3)), augment(x, policy, gen(3))
    assert torch.equal(a, b) and not torch.equal(a, augment(x, policy, gen(4)))
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(augment(x, policy, gen(), apply_prob=0.0), x)
    assert torch.equal(augment(x, (), gen()), x)
    some = augment(x, (Op("hflip", 1.0),), gen(), apply_prob=0.5)
    untouched = torch.tensor([torch.equal(s, o) for s, o in zip(some, x)])
    assert 10 < untouched.sum() < 54
    assert torch.equal(some[~untouched], x[~untouched].flip(-1))
