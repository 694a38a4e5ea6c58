"""benchmark.attention: fused attention in fp32 while the rest of a CPU step runs in bf16."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import zoo
from benchmark.attention import _Fp32Attention, fp32_attention
from benchmark.fastpath import autocast


def _qkv(dtype: torch.dtype) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(2, 4, 17, 16).to(dtype).requires_grad_() for _ in range(3)]


def test_bf16_attention_is_computed_in_fp32_and_handed_back_in_bf16() -> None:
    q, k, v = _qkv(torch.bfloat16)
    with _Fp32Attention(), autocast("cpu", "bf16"):
        out = F.scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.bfloat16
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert torch.equal(out, exact.to(torch.bfloat16))  # the fp32 result, rounded once
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0
    plain = F.scaled_dot_product_attention(q, k, v)  # outside the mode: torch's own bf16 kernel
    assert not torch.equal(plain, out)  # so the mode did change which kernel ran


def test_keyword_inputs_and_a_float_mask_go_up_together() -> None:
    q, k, v = _qkv(torch.bfloat16)
    mask = torch.randn(17, 17).to(torch.bfloat16)
    with _Fp32Attention():
        out = F.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=mask)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask.float())
    assert torch.equal(out, exact.to(torch.bfloat16))


def test_fp32_inputs_and_other_functions_pass_through() -> None:
    q, k, v = _qkv(torch.float32)
    with _Fp32Attention():
        out = F.scaled_dot_product_attention(q, k, v)
        s = torch.softmax(q.to(torch.bfloat16), -1)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v)) and s.dtype == torch.bfloat16


def test_only_models_with_fused_attention_get_the_mode_and_it_ends_with_the_block() -> None:
    vit002 = zoo.create("vit002")  # no attention dropout: timm's fused path
    mlp = torch.nn.Linear(4, 4)
    with fp32_attention(vit002) as n, fp32_attention(mlp) as none:
        assert (n, none) == (4, 0)  # its four blocks
        assert torch._C._len_torch_function_stack() == 1
    assert torch._C._len_torch_function_stack() == 0


def test_fit_in_bf16_records_fp32_attention_for_vit002_only() -> None:
    from benchmark.loader import DeviceLoader
    from benchmark.train import fit
    from zoo.recipe import Recipe

    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    loader = DeviceLoader(x, torch.randint(0, 10, (16,)), batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    recipe = Recipe(max_epochs=1, val_fraction=0.0, channels_last=False)
    got = {}
    for arch, precision in (("vit002", "bf16"), ("vit002", "fp32"), ("vit", "bf16")):
        model = zoo.create(arch)
        got[arch, precision] = fit(model, recipe.replace(precision=precision), loader, None).fast_path["fp32_attention"]
    # vit's attention has dropout: fast_dropout unfuses it, so there is no fused call to change
    assert got == {("vit002", "bf16"): True, ("vit002", "fp32"): False, ("vit", "bf16"): False}
    assert torch._C._len_torch_function_stack() == 0
