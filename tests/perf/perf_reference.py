"""cifarzoo's engine against a hand-tuned single-script loop, on airbench94's network and recipe.

Not a CI test: a measurement to run by hand on an otherwise idle machine.

    .venv/bin/python tests/perf/perf_reference.py --images 10240 --json results/perf/reference.json
    .venv/bin/python tests/perf/perf_reference.py --profile          # where a step's time goes, both sides

Both sides train the same network (AirNet at airbench94's widths 64/256/256, whitened stem, BN-bias groups)
with the same recipe: batch 1024, SGD-Nesterov (lr 1.5 per 1,024 images, momentum 0.85), label smoothing
0.2, a linear warm-up and decay (one-cycle in the engine, airbench94's triangle in the loop: the same cost),
lookahead, alternating flip + 2-px translate, in the precision and layout this
machine's probe chose. The reference loop is written the way the fastest single-file CIFAR-10 scripts do it
(airbench94): uint8 data resident on the device and normalised once, each epoch flipped and padded once,
translations cut by masks, no host sync in the step, the loss read only at the end. cifarzoo's side is
`benchmark.train.fit` with a DeviceLoader and the entry-style recipe. Each side is warmed up, then one epoch
over `--images` training images is timed; the script prints images/s for both and the ratio.

`train_reference` runs airbench94's whole recipe (9.9 epochs over the 50,000 training images, the whitening bias
frozen after 3, ending on the lookahead weights, flip + translate TTA) with this loop: perf_flagship.py's
baseline.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
from perfkit import accuracy, write_json
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import zoo  # noqa: E402
from benchmark.augment import get_policy  # noqa: E402
from benchmark.data import load_dataset  # noqa: E402
from benchmark.fastpath import autocast, choose  # noqa: E402
from benchmark.loader import DeviceLoader  # noqa: E402
from benchmark.machine import host_line  # noqa: E402
from benchmark.splits import channel_stats, stratified_subset  # noqa: E402
from benchmark.train import fit  # noqa: E402
from zoo.recipe import Recipe  # noqa: E402

WIDTHS = (64, 256, 256)
AIRBENCH94_EPOCHS = 9.9  # its training length; the last epoch stops part-way
WHITEN_BIAS_EPOCHS = 3  # airbench94 trains the whitening bias for the first three epochs, then freezes it
# airbench94's hyperparameters in the mean-loss parametrisation: lr 11.5 / (1 + 1 / (1 - 0.85)) = 1.5 per 1,024
# images, and its decoupled decay 0.0153 * 1024 / 7851 = 2e-3 of each weight per step
RECIPE = Recipe(optimizer="sgd", lr=1.5, momentum=0.85, weight_decay=2e-3 / 1.5, batch_size=1024, max_epochs=10,
                scheduler="onecycle", warmup_epochs=2.0, label_smoothing=0.2, augment="altfliptranslate",
                val_fraction=0.0, lookahead=True, tta="flip+translate")


def network(x: torch.Tensor, channels_last: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = zoo.create("airnet", widths=WIDTHS).to(x.device)
    model.data_init(x[:5000])
    return model.to(memory_format=torch.channels_last) if channels_last else model


def reference_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epoch: int, precision: str,
                    channels_last: bool, steps_per_epoch: int, state: dict) -> float:
    """One epoch of the single-script loop on the images' device; returns its seconds (the loss is read
    once, at the end: the epoch's one host sync, which also waits for a GPU's queued work)."""
    batch, device = RECIPE.batch_size, images.device
    t0 = time.perf_counter()
    odd = (torch.arange(len(images), device=device) % 2 == epoch % 2).view(-1, 1, 1, 1)
    flipped = torch.where(odd, images.flip(-1), images)
    padded = nn.functional.pad(flipped, (2, 2, 2, 2), mode="reflect")  # the whole epoch, once
    order = torch.randperm(len(images), generator=state["gen"], device=device)
    model.train()
    total = torch.zeros((), device=device)
    for start in range(0, len(order) - batch + 1, batch):
        idx = order[start:start + batch]
        x = _translate(padded[idx], state["gen"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device.type, precision):
            loss = nn.functional.cross_entropy(model(x), labels[idx], label_smoothing=RECIPE.label_smoothing)
        state["opt"].zero_grad(set_to_none=True)
        loss.backward()
        state["opt"].step()
        state["sched"].step()
        state["step"] += 1
        _lookahead(model, state)
        total += loss.detach().float()
        if state["step"] >= state["total"]:
            break
    total.item()  # the one host sync of the epoch
    return time.perf_counter() - t0


def _translate(padded: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 2-px translations cut from a 36x36 padded batch by masks: one slice per (dy, dx) pair."""
    n = len(padded)
    shifts = torch.randint(0, 5, (n, 2), generator=gen, device=padded.device)
    out = torch.empty(n, padded.shape[1], 32, 32, dtype=padded.dtype, device=padded.device)
    for dy in range(5):
        for dx in range(5):
            mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[mask] = padded[mask, :, dy:dy + 32, dx:dx + 32]
    return out


def _lookahead(model: nn.Module, state: dict, every: int = 5) -> None:
    step, total = state["step"], state["total"]
    if step < 0.3 * total or step % every:
        return
    fast = [t for t in model.state_dict().values() if t.is_floating_point()]
    if state.get("slow") is None:
        state["slow"] = [t.clone() for t in fast]
        return
    rho = 0.95 ** every * (step / total) ** 3
    with torch.no_grad():
        torch._foreach_lerp_(state["slow"], fast, 1 - rho)
        torch._foreach_copy_(fast, state["slow"])


def reference_state(model: nn.Module, steps_per_epoch: int, epochs: float = RECIPE.max_epochs, seed: int = 0) -> dict:
    """Optimizer (BN biases at 64x the rate, airnet's groups), airbench94's triangular schedule (0.2 -> 1 over
    the first 23 % of the steps, then down to 0), step counter and the augmentation's generator."""
    groups = model.param_groups(RECIPE)
    opt = torch.optim.SGD(groups, lr=RECIPE.lr, momentum=RECIPE.momentum, nesterov=True,
                          weight_decay=RECIPE.weight_decay)
    total = math.ceil(epochs * steps_per_epoch)
    warm = int(0.23 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.2 + 0.8 * s / warm if s < warm else max(0.0, (total - s) / (total - warm)))
    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    return {"opt": opt, "sched": sched, "step": 0, "total": total, "gen": gen}


def train_reference(data, seed: int, epochs: float = AIRBENCH94_EPOCHS, curve: bool = False,
                    device: str = "cpu") -> dict:
    """airbench94's own recipe, end to end, by the reference loop: wall clock from "data in memory" to the
    test accuracy with flip + translate TTA (per-epoch curve evaluations, when asked for, are not counted)."""
    fast = choose("auto", None, device)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    mean, std = channel_stats(data.x_train)
    images = _normalised(data.x_train.to(device), mean, std)
    labels = data.y_train.to(device)
    model = network(images, fast.channels_last, seed)
    steps = len(images) // RECIPE.batch_size
    state = reference_state(model, steps, epochs, seed)
    test = DeviceLoader(data.x_test, data.y_test, batch_size=500, mean=mean, std=std, device=device,
                        channels_last=fast.channels_last)
    untimed, points = 0.0, []
    for epoch in range(math.ceil(epochs)):
        model.whiten.bias.requires_grad_(epoch < WHITEN_BIAS_EPOCHS)
        reference_epoch(model, images, labels, epoch, fast.precision, fast.channels_last, steps, state)
        if curve:
            t = time.perf_counter()
            points.append((epoch + 1, t - t0 - untimed, accuracy(model, test, "fp32", RECIPE.tta)))
            untimed += time.perf_counter() - t
            print(f"  reference seed {seed} epoch {epoch + 1:2d}  {points[-1][1]:7.1f} s  test acc (TTA) "
                  f"{points[-1][2]:.4f}", flush=True)
    if state.get("slow") is not None:  # the run ends on the lookahead's slow weights, as airbench94 does
        with torch.no_grad():
            torch._foreach_copy_([t for t in model.state_dict().values() if t.is_floating_point()], state["slow"])
    # scored in fp32, as the flagship's side and every record are
    acc = accuracy(model, test, "fp32", RECIPE.tta)
    return {"seed": seed, "wall_s": time.perf_counter() - t0 - untimed, "acc": acc, "epochs": epochs,
            "precision": fast.precision, "channels_last": fast.channels_last, "curve": points}


def _normalised(x_u8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW, once, resident (the single-script way)."""
    mean, std = (torch.tensor(v, device=x_u8.device).view(1, 3, 1, 1) for v in (mean, std))
    return (x_u8.permute(0, 3, 1, 2).float() / 255 - mean) / std


def prepared(data, n: int, epochs: int) -> dict:
    """Both sides' inputs: the subset, its loader (cifarzoo) and its normalised tensor (reference)."""
    idx = stratified_subset(data.y_train, n, seed=0)
    x_u8, y = data.x_train[idx], data.y_train[idx]
    mean, std = channel_stats(x_u8)
    fast = choose("auto", None, "cpu")
    recipe = RECIPE.replace(precision=fast.precision, channels_last=fast.channels_last, max_epochs=epochs + 1)
    loader = DeviceLoader(x_u8, y, batch_size=recipe.batch_size, mean=mean, std=std, shuffle=True, drop_last=True,
                          policy=get_policy(recipe.augment), channels_last=fast.channels_last)
    images = _normalised(x_u8, mean, std)
    return {"fast": fast, "recipe": recipe, "loader": loader, "images": images, "labels": y, "epochs": epochs}


def run_reference(p: dict) -> float:
    """Images/s of the reference loop's fastest timed epoch (the first epoch warms up)."""
    fast, loader = p["fast"], p["loader"]
    model = network(loader.plain(5000), fast.channels_last)
    state = reference_state(model, len(loader))
    seconds = [reference_epoch(model, p["images"], p["labels"], e, fast.precision, fast.channels_last, len(loader),
                               state) for e in range(p["epochs"] + 1)][1:]
    return len(loader) * RECIPE.batch_size / min(seconds)


def run_cifarzoo(p: dict) -> float:
    """Images/s of cifarzoo's engine, its fastest timed epoch (the first warms up)."""
    fast, loader = p["fast"], p["loader"]
    history = fit(network(loader.plain(5000), fast.channels_last), p["recipe"], loader, None, fast_path=fast).history
    return max(row["images_per_s"] for row in history[1:])


def measure(data, n: int, epochs: int) -> dict:
    p = prepared(data, n, epochs)
    # the reference first: fit's malloc thresholds (benchmark.cpumemory) are process-wide and a single script
    # does not set them
    ref_rate, our_rate = run_reference(p), run_cifarzoo(p)
    return {"images": n, "epochs_timed": epochs, "precision": p["fast"].precision,
            "channels_last": p["fast"].channels_last, "threads": torch.get_num_threads(),
            "reference_images_per_s": ref_rate, "cifarzoo_images_per_s": our_rate, "ratio": our_rate / ref_rate}


def profile(data, n: int) -> None:
    """torch.profiler over one warm-up and one timed epoch of each side: self CPU time by operator family."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    p = prepared(data, n, 1)
    for side, run in (("reference loop", run_reference), ("cifarzoo engine", run_cifarzoo)):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            run(p)
        totals: dict[str, float] = {}
        for event in prof.key_averages():
            family = _family(event.key)
            totals[family] = totals.get(family, 0.0) + event.self_cpu_time_total
        whole = sum(totals.values()) or 1.0
        print(f"{side}: " + ", ".join(f"{k} {100 * v / whole:.0f}%" for k, v in
                                     sorted(totals.items(), key=lambda kv: -kv[1])), flush=True)


def _family(op: str) -> str:
    op = op.lower()
    for family, words in (("convolutions", ("conv", "mkldnn")),
                          ("batchnorm/gelu", ("batch_norm", "gelu", "native_batch")),
                          ("optimizer", ("sgd", "_foreach", "lerp", "addcmul")),
                          ("augmentation", ("flip", "pad", "index", "where", "randperm", "randint", "copy_")),
                          ("matmul/linear", ("addmm", "mm", "linear"))):
        if any(w in op for w in words):
            return family
    return "other (bookkeeping, pooling, loss)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("CIFARZOO_DATA", "../shared/datasets/cifar10-jpeg.zip"))
    parser.add_argument("--images", type=int, default=10240, help="training images per timed epoch")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per side (after one warm-up epoch)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    print(f"machine: {host_line()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, load {os.getloadavg()[0]:.2f}; data: {data.description}")
    if args.profile:
        profile(data, args.images)
        return
    row = measure(data, args.images, args.epochs)
    print(f"airbench94 network (widths {'/'.join(map(str, WIDTHS))}), batch 1024, {row['precision']}"
          f"{' + channels_last' if row['channels_last'] else ''}: reference loop {row['reference_images_per_s']:.1f} "
          f"img/s, cifarzoo {row['cifarzoo_images_per_s']:.1f} img/s: {row['ratio']:.2f}x")
    if args.json:
        write_json(args.json, {"kind": "reference", "machine": host_line(),
                               "torch": torch.__version__, "load_end": os.getloadavg()[0], **row})


if __name__ == "__main__":
    main()
