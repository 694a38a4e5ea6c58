"""benchmark.dropout: cheap dropout masks keep the dropout rule (rate, scaling, independence per position,
gradient) and the context manager swaps and restores exactly what it says."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import zoo
from benchmark.dropout import LEVELS, FastDropout, fast_dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_keep_mask_keeps_each_position_at_the_right_rate_and_scales_by_one_over_keep(p: float) -> None:
    torch.manual_seed(0)
    n = 400_000
    mask = keep_mask((n,), p, torch.float32)
    kept = round(p * LEVELS)
    scale = LEVELS / (LEVELS - kept)
    assert mask.unique().tolist() == [0.0, pytest.approx(scale)]
    # the four 16-bit slots of each random word are separate positions: each must keep 1 - p of its elements
    # (a word drawn by plain `random_()` has a 0 sign bit, which keeps every fourth element always)
    sd = (p * (1 - p) / (n / 4)) ** 0.5
    for slot in range(4):
        rate = (mask.view(-1, 4)[:, slot] > 0).float().mean().item()
        assert abs(rate - (1 - kept / LEVELS)) < 5 * sd, (slot, rate)
    assert mask.mean().item() == pytest.approx(1.0, abs=5 * sd * scale)  # unbiased: E[mask] = 1


def test_keep_mask_keeps_exactly_the_elements_whose_16_bits_clear_the_threshold() -> None:
    # the rule itself, on the very bits the generator gives (so a seeded or resumed run's masks are what they
    # were before the mask was computed by float arithmetic): kept iff bits >= round(p * 65536) - 32768,
    # including the elements at the threshold and just below it
    p, n = 0.1, 100_003
    torch.manual_seed(3)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
    bits = words.view(torch.int16)[:n]
    torch.manual_seed(3)
    mask = keep_mask((n,), p, torch.float32)
    threshold = round(p * LEVELS) - LEVELS // 2
    assert torch.equal(mask > 0, bits >= threshold)
    assert ((bits == threshold) | (bits == threshold - 1)).any()  # the edge was exercised


def test_keep_mask_odd_sizes_and_bf16() -> None:
    torch.manual_seed(1)
    mask = keep_mask((3, 5, 7), 0.2, torch.bfloat16)
    assert mask.shape == (3, 5, 7) and mask.dtype == torch.bfloat16
    assert ((mask == 0) | (mask == mask.max())).all()


def test_keep_mask_in_bf16_is_the_fp32_mask_rounded_and_a_zero_rate_keeps_all_and_draws_the_same() -> None:
    for p in (0.1, 0.25, 0.5, 0.9):
        torch.manual_seed(2)
        wide = keep_mask((4, 1001), p, torch.float32)
        torch.manual_seed(2)
        assert torch.equal(keep_mask((4, 1001), p, torch.bfloat16), wide.to(torch.bfloat16)), p
    torch.manual_seed(5)
    mask = keep_mask((3, 7), 1e-6, torch.float32)  # rounds to p' = 0
    after = torch.rand(1)
    torch.manual_seed(5)
    torch.empty(6, dtype=torch.int64).random_(-(1 << 63), None)  # (21 + 3) // 4 words
    assert torch.equal(mask, torch.ones(3, 7)) and torch.equal(torch.rand(1), after)


def test_fast_dropout_is_identity_in_eval_and_its_gradient_is_the_mask() -> None:
    torch.manual_seed(2)
    drop = FastDropout(0.3)
    x = torch.randn(64, 33, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    mask = y.detach() / x.detach()
    assert torch.allclose(x.grad, mask)  # d(sum(x * m))/dx = m
    assert 0.6 < (mask > 0).float().mean().item() < 0.8
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0)(x) is x


def test_fast_dropout_swaps_vit_dropout_and_unfuses_attention_with_dropout_then_restores() -> None:
    model = zoo.create("vit", embed_dim=32, depth=2, mlp_dim=64, num_heads=4)
    originals = [m for m in model.modules() if type(m) is nn.Dropout and m.p > 0]
    assert model.blocks[0].attn.fused_attn and model.blocks[0].attn.attn_drop.p == 0.1
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    before = model(x)
    with fast_dropout(model) as swapped:
        assert swapped == len(originals) == 8  # per block: attention weights, projection, MLP x 2
        assert all(not b.attn.fused_attn for b in model.blocks)
        assert not any(type(m) is nn.Dropout and m.p > 0 for m in model.modules())
        assert torch.allclose(model(x), before, atol=1e-5)  # eval: unfused attention, same function
        model.train()
        torch.manual_seed(3)
        a = model(x)
        torch.manual_seed(3)
        assert torch.equal(model(x), a)  # masks come from torch's seeded generator
    assert [m for m in model.modules() if type(m) is nn.Dropout and m.p > 0] == originals
    assert all(b.attn.fused_attn for b in model.blocks)


def test_fit_on_cpu_records_fast_dropout_and_returns_the_architectures_own_modules() -> None:
    from benchmark.loader import DeviceLoader
    from benchmark.train import fit
    from zoo.recipe import Recipe

    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    loader = DeviceLoader(x, y, batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    result = fit(model, Recipe(max_epochs=1, val_fraction=0.0, precision="fp32", channels_last=False), loader, None)
    assert result.fast_path["fast_dropout"] is True
    assert result.fast_path["freed_memory_kept"] is (sys.platform == "linux")  # benchmark.cpumemory
    assert type(result.model[3]) is nn.Dropout
