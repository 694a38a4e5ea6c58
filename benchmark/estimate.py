"""Know the cost first: what each planned run will take on this machine, before paying for it.

A run's time is estimated from its own network, timed here: a few training steps at the recipe's batch
size, input size and chosen precision/layout (seconds per training image), and a few inference batches
(seconds per evaluated image). Those rates are cached per machine under `$CIFARZOO_HOME/machine/`, so a
second `--plan` answers at once. The estimate is the worst case of the recipe:

    train images x max_epochs x s/train image + (validation passes x val images + test images) x s/eval image
    + the profile's export and timing allowance

Early stopping only shortens it. With `--device cuda` on a machine without a GPU, the rates come from the
network's FLOPs and a stated GPU throughput (`GPU_TFLOPS`, `GPU_STEP_S`) instead of a measurement.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

GPU_TFLOPS = 40.0  # assumed sustained bf16 training throughput of one H100/H200-class GPU on these nets
GPU_STEP_S = 0.004  # assumed floor per optimizer step on a GPU (kernel launches of a small net)
OVERHEAD_S = {"smoke": 5.0, "quick": 30.0, "full": 150.0}  # ONNX export, parity and timing, by profile
STEPS = 2  # timed training steps per network (after one warm-up)


@dataclass(frozen=True)
class Estimate:
    """The expected cost of one run, in seconds, and how it was obtained."""

    train_s: float
    eval_s: float
    overhead_s: float
    epochs: int
    train_images: int
    basis: str  # "measured" (timed here) or "flops" (FLOPs / stated GPU throughput)

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s + self.overhead_s


def estimate_run(run: Any, data: Any, device: str = "cpu") -> Estimate:
    """The worst-case cost of `run` (a benchmark.runner.Run) on `device` with `data`."""
    recipe, profile = run.recipe, run.profile
    n_total = len(data.y_train)
    n_val = int(round(n_total * recipe.val_fraction))
    n_train = n_total - n_val
    if profile.train_images is not None:
        n_train = min(n_train, profile.train_images)
    if profile.val_images is not None:
        n_val = min(n_val, profile.val_images)
    n_test = len(data.y_test) if profile.test_images is None else min(len(data.y_test), profile.test_images)
    epochs = recipe.max_epochs
    passes = 0 if n_val == 0 else math.ceil(epochs / recipe.eval_every)
    rates = step_rates(run, device)
    return Estimate(train_s=n_train * epochs * rates["train_s_per_image"],
                    eval_s=(passes * n_val + n_test) * rates["eval_s_per_image"],
                    overhead_s=OVERHEAD_S.get(profile.timing, 60.0), epochs=epochs, train_images=n_train,
                    basis=rates["basis"])


def step_rates(run: Any, device: str = "cpu") -> dict[str, Any]:
    """Seconds per training image and per evaluated image of the run's network (cached per machine)."""
    from benchmark import fastpath

    recipe = run.recipe
    on_gpu = device.startswith("cuda")
    fast = fastpath.choose(recipe.precision, recipe.channels_last, "cuda" if on_gpu else "cpu") \
        if not on_gpu or torch.cuda.is_available() else fastpath.FastPath("bf16", True, "cuda")
    key = json.dumps([run.entry.architecture, run.arch_kwargs, recipe.batch_size, recipe.input_size, fast.precision,
                      fast.channels_last, torch.get_num_threads(), device], sort_keys=True, default=str)
    cache = _cache_path(device)
    table = _read(cache)
    if key in table:
        return table[key]
    if on_gpu and not torch.cuda.is_available():
        rates = _from_flops(run)
    else:
        rates = _measure(run, fast.precision, fast.channels_last, device)
    if rates.get("busy"):  # timed while other processes shared the CPU: too slow, and not kept
        rates["basis"] = f"measured on a busy machine (load {rates['busy']}): too high"
    else:
        table[key] = rates
        _write(cache, table)
    return rates


def _cache_path(device: str) -> Path:
    from benchmark.fastpath import cache_key
    from zoo.files import home_dir

    return home_dir("machine") / f"steps-{cache_key('cuda' if device.startswith('cuda') else 'cpu')}.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: Path, table: dict[str, Any]) -> None:
    from zoo.files import write_atomic

    try:
        write_atomic(path, json.dumps(table, indent=1, sort_keys=True) + "\n", fsync=False)
    except Exception:  # an unwritable cache only costs a measurement next time
        pass


def _network(run: Any) -> torch.nn.Module:
    import zoo

    kwargs = dict(run.arch_kwargs)
    if "pretrained" in kwargs:  # the cost of a fine-tune does not depend on the ImageNet weights
        kwargs["pretrained"] = False
    torch.manual_seed(0)
    return zoo.create(run.entry.architecture, **kwargs)


def _measure(run: Any, precision: str, channels_last: bool, device: str) -> dict[str, Any]:
    """Time STEPS training steps (after a warm-up) and two inference batches on random data."""
    from benchmark.fastpath import autocast
    from benchmark.machine import contended, load_average
    from benchmark.train import build_optimizer

    rng = torch.get_rng_state()
    load = load_average()
    try:
        model = _network(run).to(device)
        batch, size = run.recipe.batch_size, run.recipe.input_size
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.arange(batch, device=device) % 10
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        optimizer, _ = build_optimizer(model, run.recipe)
        model.train()

        def step() -> None:
            with autocast(device, precision):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        train_s = _best_of(step, device) / batch
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), autocast(device, "fp32"):
                model(x)

        eval_s = _best_of(infer, device) / batch
    finally:
        torch.set_rng_state(rng)
    after = load_average()
    return {"train_s_per_image": train_s, "eval_s_per_image": eval_s, "basis": "measured",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "busy": max(x or 0 for x in (load, after)) if contended((load, after)) and device == "cpu" else None}


def _best_of(call: Any, device: str) -> float:
    call()  # warm-up: kernel selection, allocation
    best = float("inf")
    for _ in range(STEPS):
        t0 = time.perf_counter()
        call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _from_flops(run: Any) -> dict[str, Any]:
    """A GPU's rates from the network's FLOPs (training ~ 3x a forward pass) and a stated throughput."""
    from benchmark.modelstats import flops_per_image

    with torch.device("cpu"):
        flops = flops_per_image(_network(run).eval(), run.recipe.input_size)
    batch = run.recipe.batch_size
    train = max(3 * flops / (GPU_TFLOPS * 1e12), GPU_STEP_S / batch)
    return {"train_s_per_image": train, "eval_s_per_image": max(flops / (GPU_TFLOPS * 1e12), GPU_STEP_S / 500),
            "basis": f"flops ({flops / 1e6:.0f} MFLOP/image at an assumed {GPU_TFLOPS:g} TFLOP/s)"}


def format_plan(rows: list[tuple[Any, Estimate | None, bool]]) -> str:
    """The table `bench --plan` prints: each run, done or its estimate, and the total still to pay."""
    lines = [f"{'run':<48} {'epochs':>6} {'train imgs':>10} {'estimate':>10}  basis"]
    total = 0.0
    for run, est, done in rows:
        if done:
            lines.append(f"{run.run_id:<48} {'':>6} {'':>10} {'recorded':>10}")
            continue
        total += est.total_s
        lines.append(f"{run.run_id:<48} {est.epochs:>6} {est.train_images:>10,} {_human(est.total_s):>10}  "
                     f"{est.basis}")
    todo = sum(not done for _, _, done in rows)
    lines.append(f"total: {todo} run(s) to do, about {_human(total)} at most (early stopping only shortens it)")
    return "\n".join(lines)


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
