"""benchmark.loader.DeviceLoader: batches, normalisation, layout, resize, and (seed, epoch) determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from benchmark.augment import get_policy
from benchmark.data import synthetic_dataset
from benchmark.loader import DeviceLoader
from benchmark.splits import channel_stats

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    ds = synthetic_dataset(n_train=300, n_test=10)
    return ds.x_train, ds.y_train


def stats_loader(images, labels, **kw) -> DeviceLoader:
    mean, std = channel_stats(images)
    return DeviceLoader(images, labels, mean=mean, std=std, **{"batch_size": 64, **kw})


def collect(loader: DeviceLoader, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader.epoch(epoch))
    return torch.cat(xs), torch.cat(ys)


def test_shapes_dtypes_and_batch_count(data):
    images, labels = data
    loader = stats_loader(images, labels, batch_size=64)
    batches = list(loader)
    assert len(loader) == len(batches) == 5  # 300 = 4 * 64 + 44
    assert [len(y) for _, y in batches] == [64, 64, 64, 64, 44]
    x, y = batches[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    dropped = stats_loader(images, labels, batch_size=64, drop_last=True, shuffle=True)
    assert len(dropped) == 4 and [len(y) for _, y in dropped.epoch(0)] == [64] * 4
    assert next(iter(stats_loader(images, labels, dtype=torch.bfloat16)))[0].dtype == torch.bfloat16


def test_normalised_by_the_data_statistics(data):
    images, labels = data
    x, _ = collect(stats_loader(images, labels, shuffle=True))
    assert x.mean((0, 2, 3)).abs().max() < 1e-4
    assert (x.std((0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4


def test_every_image_exactly_once_per_epoch_with_its_label(data):
    images, _ = data
    ids = torch.arange(len(images))  # the label says which image it is
    mean, std = [0.0] * 3, [1.0] * 3
    loader = DeviceLoader(images, ids, batch_size=64, mean=mean, std=std, shuffle=True, channels_last=False)
    for epoch in (0, 1):
        x, y = collect(loader, epoch)
        assert torch.equal(torch.sort(y).values, ids)
        assert not torch.equal(y, ids)  # shuffled
        assert torch.allclose(x * 255, images[y].permute(0, 3, 1, 2).float(), atol=1e-4)
    unshuffled = DeviceLoader(images, ids, batch_size=64, mean=mean, std=std)
    assert torch.equal(collect(unshuffled)[1], ids)


def test_epochs_are_reproducible_from_seed_and_epoch_alone(data):
    images, labels = data
    kw = {"shuffle": True, "policy": get_policy("aug"), "seed": 7}
    first, second = stats_loader(images, labels, **kw), stats_loader(images, labels, **kw)
    for epoch in range(3):  # a loader that already ran epochs 0..2 ...
        collect(first, epoch)
    resumed_x, resumed_y = collect(first, 3)
    fresh_x, fresh_y = collect(second, 3)  # ... gives the same epoch 3 as a fresh one
    assert torch.equal(resumed_x, fresh_x) and torch.equal(resumed_y, fresh_y)
    other_epoch_x, other_epoch_y = collect(second, 4)
    assert not torch.equal(fresh_y, other_epoch_y) and not torch.equal(fresh_x, other_epoch_x)
    other_seed_y = collect(stats_loader(images, labels, **{**kw, "seed": 8}), 3)[1]
    assert not torch.equal(fresh_y, other_seed_y)


def test_augmentation_changes_pixels_not_labels(data):
    images, labels = data
    plain_x, plain_y = collect(stats_loader(images, labels, shuffle=True))
    aug_x, aug_y = collect(stats_loader(images, labels, shuffle=True, policy=get_policy("fliptranslate")))
    assert torch.equal(plain_y, aug_y)  # same order: the permutation is drawn before any augmentation
    assert not torch.equal(plain_x, aug_x)
    never = stats_loader(images, labels, shuffle=True, policy=get_policy("aug"), apply_prob=0.0)
    assert torch.equal(collect(never)[0], plain_x)


def test_alternating_flip_mirrors_every_image_in_exactly_one_of_two_epochs(data):
    images, labels = data
    plain = stats_loader(images, labels, shuffle=True)
    alt = stats_loader(images, labels, shuffle=True, policy=get_policy("altfliptranslate")[:1])
    reference = plain.plain().flatten(1)  # dataset order, unaugmented
    times_flipped = torch.zeros(len(labels), dtype=torch.long)
    for epoch in (1, 2):
        x_plain, x_alt = collect(plain, epoch)[0], collect(alt, epoch)[0]
        index = torch.cdist(x_plain.flatten(1), reference).argmin(1)  # each batch row's dataset index
        assert torch.equal(torch.sort(index).values, torch.arange(len(labels)))
        flipped = (x_alt == x_plain.flip(-1)).flatten(1).all(1)
        assert torch.equal(flipped, ~(x_alt == x_plain).flatten(1).all(1))
        times_flipped[index[flipped]] += 1
    assert torch.equal(times_flipped, torch.ones_like(times_flipped))


def test_plain_is_the_unaugmented_normalised_split_in_order(data):
    images, labels = data
    loader = stats_loader(images, labels, shuffle=True, policy=get_policy("aug"))
    mean, std = channel_stats(images)
    expected = (images.permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std).view(1, 3, 1, 1)
    assert torch.allclose(loader.plain(), expected, atol=1e-6)
    assert torch.equal(loader.plain(10), loader.plain()[:10])


def test_channels_last_layout(data):
    images, labels = data
    x, _ = next(iter(stats_loader(images, labels)))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert x.stride() == (3 * 32 * 32, 1, 32 * 3, 3)
    x, _ = next(iter(stats_loader(images, labels, channels_last=False)))
    assert x.is_contiguous()


def test_resize_to_64_is_bilinear_without_antialias(data):
    images, labels = data
    small, _ = next(iter(stats_loader(images, labels, channels_last=False)))
    big, _ = next(iter(stats_loader(images, labels, input_size=64, channels_last=False)))
    assert big.shape == (64, 3, 64, 64)
    expected = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    assert torch.allclose(big, expected, atol=1e-5)


class _BigOutputs(TorchDispatchMode):
    """The ops that write a tensor of `size` pixels a side."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.ops = size, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] == self.size:
            self.ops.append(func.overloadpacket.__name__)
        return out


def test_resize_writes_the_big_batch_once_in_its_layout(data):
    """EfficientNetV2-S sees 384 px: a channels_last copy after the resize would write that big batch twice."""
    images, labels = data
    small, _ = next(iter(stats_loader(images, labels, channels_last=False)))
    loader = stats_loader(images, labels, input_size=64)
    with _BigOutputs(64) as seen:
        big = loader.plain(64)
    assert seen.ops == ["upsample_bilinear2d"]
    assert big.is_contiguous(memory_format=torch.channels_last)
    expected = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(big, expected)


def test_images_live_on_the_device_once_as_uint8_nchw(data):
    images, labels = data
    loader = stats_loader(images, labels)
    assert loader.images.dtype == torch.uint8 and loader.images.shape == (300, 3, 32, 32)
    assert torch.equal(loader.images, images.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="uint8 NHWC"):
        DeviceLoader(images.float(), labels, batch_size=8, mean=[0.5] * 3, std=[0.5] * 3)
