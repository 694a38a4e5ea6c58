"""A short check of every architecture on a device (CUDA on a GPU machine; CPU to test the check itself).

For each architecture: its entry's recipe settles the precision and layout on the device (benchmark.fastpath:
bf16 + channels_last on a CUDA GPU with bf16), `torch.compile` where the recipe asks for it; a fixed batch is
trained for a few steps and the loss must fall; then the network is exported to ONNX and compared with
PyTorch (parity). Prints one line per architecture and, with --json, writes them.

    python tests/perf/cuda_check.py --device cuda --json OUT/cuda_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import zoo  # noqa: E402
from benchmark.fastpath import autocast, choose  # noqa: E402
from benchmark.onnx_export import export_onnx, ort_session, parity  # noqa: E402
from benchmark.train import build_optimizer  # noqa: E402


def check(entry_name: str, device: str, steps: int, batch: int) -> dict:
    entry = zoo.get_entry(entry_name)
    # a check, not the recipe: a learning rate that moves a fixed batch's loss within a few steps
    recipe = entry.recipe.replace(lr=1e-3 if entry.recipe.optimizer != "sgd" else 0.05)
    fast = choose(recipe.precision, recipe.channels_last, device)
    torch.manual_seed(0)
    kwargs = {k: v for k, v in entry.arch_kwargs.items() if k != "pretrained"}
    model = zoo.create(entry.architecture, **kwargs).to(device)
    size = min(recipe.input_size, 64)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.arange(batch, device=device) % 10
    if hasattr(model, "data_init"):
        model.data_init(x)
    if fast.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    step_model = torch.compile(model) if recipe.compile else model
    optimizer, _ = build_optimizer(model, recipe)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        with autocast(device, fast.precision):
            loss = torch.nn.functional.cross_entropy(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(model, Path(tmp) / "m.onnx", input_size=size)
        same = parity(model, ort_session(exported.path, 4, device), x.float().contiguous()[:16].cpu()) \
            if exported.ok else {"parity_ok": False}
    return {"entry": entry_name, "architecture": entry.architecture, "device": device, "precision": fast.precision,
            "channels_last": fast.channels_last, "compile": recipe.compile, "steps": steps, "batch": batch,
            "images_per_s": steps * batch / seconds, "loss_first": losses[0], "loss_last": losses[-1],
            "loss_falls": min(losses[1:]) < losses[0], "onnx": exported.ok, "parity_ok": bool(same["parity_ok"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--entries", nargs="*", help="entries to check [default: one per architecture]")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = args.entries or _one_per_architecture()
    rows, ok = [], True
    for name in names:
        try:
            row = check(name, args.device, args.steps, args.batch)
        except Exception as err:  # noqa: BLE001 (a broken architecture is a line of the report, not the end of it)
            row = {"entry": name, "error": f"{type(err).__name__}: {err}"[:300]}
        good = "error" not in row and row["loss_falls"] and row["parity_ok"]
        ok &= good
        rows.append(row)
        print(f"{'ok  ' if good else 'FAIL'} {name:<22} " + (row.get("error") or
              f"{row['precision']}{' +cl' if row['channels_last'] else ''} {row['images_per_s']:9.0f} img/s  loss "
              f"{row['loss_first']:.3f} -> {row['loss_last']:.3f}  onnx parity {row['parity_ok']}"), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "gpu": torch.cuda.get_device_name()
                                         if torch.cuda.is_available() else None, "rows": rows}, indent=1))
    return 0 if ok else 1


def _one_per_architecture() -> list[str]:
    seen, names = set(), []
    for name in zoo.list_models():
        arch = zoo.get_entry(name).architecture
        if arch not in seen:
            seen.add(arch)
            names.append(name)
    return names


if __name__ == "__main__":
    sys.exit(main())
