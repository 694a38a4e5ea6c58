"""Training images/s: cifarzoo's fast path vs the reports' style of loop, same model, batch and augmentation.

Not a CI test: a measurement to run by hand on an otherwise idle machine (minutes).

    .venv/bin/python tests/perf/perf_train_speed.py --data ../shared/datasets/cifar10-jpeg.zip
    .venv/bin/python tests/perf/perf_train_speed.py --skip-speed --acc-seeds 0 1 2   # the accuracy check only

The reports' loop: a dataset of PIL images in memory, torchvision DataLoader(num_workers=2, shuffle) with the
"aug" policy as PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15),
ColorJitter(0.2, 0.2, 0.2)) + ToTensor + Normalize, fp32, NCHW, torch.optim.Adam with its defaults,
`loss.item()` every step. The fast path: the engine's `fit` (DeviceLoader with the same policy as batched
tensor ops, the precision and layout this machine's probe chose (benchmark.fastpath: bf16 + channels_last
where bf16 is native, fp32 where it is emulated), the recipe's optimizer fused, no host sync inside the
step; `--compile` adds torch.compile). Each side trains one untimed epoch and then `--timed-epochs` (2) timed
ones over the same subset, and its fastest timed epoch is its rate (start-up costs excluded on both sides, the
DataLoader's per-epoch worker start-up included, as a report's loop pays it every epoch). The best of several
epochs because the reports' loop is noisy on two cores, where its two DataLoader workers contend with the
training threads: one timed epoch measured resnet12-aug's loop at 13.6-18.0 img/s and mixer-aug's at
278-454 img/s on one idle host in one afternoon, while the fast path's ranged 40.5-43.8 and 799-1032 img/s.
Every timed epoch's rate goes to the JSON.
Each entry runs in a spawned process of its own, its reports' loop first, before `fit` sets the engine's
process-wide malloc thresholds (benchmark.cpumemory), then its fast path. `--processes N` measures each entry
in N such processes, one after the other, and takes each side's fastest epoch of all: on a VM whose speed
differs from process to process (the same Mixer training loop, started again and again on one idle Zen 4 VM,
ran at 540-1,030 img/s) one process can land a side in its slow state. Each row also prints
the training FLOPs both loops achieve per second and a ceiling: the machine's peak dense rate (matmul or 3x3
conv, measured here) over the reports' loop's rate, the ratio no loop can pass without changing the arithmetic;
and each convolutional row a second one, the reports' whole step over the time the fast path's convolutions take
alone (timed after both sides, one at a time at their shapes), the ratio with all its other work free. With
`--json` each row is written as soon as it is measured.

Then the accuracy check: both loops train the same initial weights for the same epochs on a balanced
subset and are scored on the test split (no TTA); printed per seed and as the mean difference.
Every model uses the "aug" policy here (cnn004-relu's own recipe has none), so the loops differ only
in the pipeline: PIL + fp32 + NCHW + Adam vs device tensors + the chosen precision/layout + fused Adam.
Every architecture of the zoo is measured (one entry each; fine-tune architectures from random weights).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import torch
from perfkit import PilDataset, accuracy, conv_step_ms, peak_gflops, train_flops_per_image, write_json
from torch import nn

import zoo
from benchmark.augment import get_policy
from benchmark.data import load_dataset
from benchmark.loader import DeviceLoader
from benchmark.machine import host_line
from benchmark.splits import channel_stats, stratified_subset
from benchmark.train import fit

# entry (one per architecture), images per timed epoch, training images of the accuracy check (ResNet-12 at
# hidden 128 needs ~9 GFLOP per training image, 20x TinyVGG: fewer images, or it alone would take an hour;
# airnet-fast's batch is 2,000: 8,000 images make four steps an epoch, not one; efficientnetv2-s 512, four at 128)
MODELS = [("tinyvgg-aug", 2048, 5000), ("resnet12-aug", 384, 640), ("vit-aug", 2048, 5000),
          ("mixer-aug", 4096, 5000), ("cnn004-relu", 4096, 5000), ("gru-aug", 2048, 5000),
          ("cnn3-basic", 4096, 5000), ("mlp-s-norm", 8192, 5000), ("mlp-l-norm", 8192, 5000),
          ("vit-tiny-norm", 2048, 5000), ("cnn002-aug", 4096, 5000), ("vit002-norm", 512, 2000),
          ("resnet18-scratch", 2048, 5000), ("net003-norm", 1024, 5000), ("airnet-fast", 8000, 5000),
          ("mobilenetv3-small-ft", 256, 1000), ("efficientnetv2-s-ft", 512, 500)]
CONVOLUTIONAL = {"tinyvgg-aug", "resnet12-aug", "cnn004-relu", "cnn3-basic", "cnn002-aug", "resnet18-scratch",
                 "net003-norm", "airnet-fast", "mobilenetv3-small-ft", "efficientnetv2-s-ft"}


def _target(name: str, precision: str) -> float:
    """The issue's ratio target: CNNs 2.0x in fp32 (an AVX2 host), 2.5x where the fast path runs bf16; the ViTs
    and the Mixer 2.0x on either; the rest never slower (1.0x)."""
    if name in CONVOLUTIONAL:
        return 2.5 if precision == "bf16" else 2.0
    return 2.0 if name.split("-")[0] in ("vit", "mixer", "vit002") else 1.0


def _network(entry):
    """The entry's network; fine-tunes from random weights (their ImageNet weights are not needed for speed)."""
    kwargs = {k: v for k, v in entry.arch_kwargs.items() if k != "pretrained"}
    return zoo.create(entry.architecture, **kwargs)




def reports_loader(x: torch.Tensor, y: torch.Tensor, mean, std, batch: int, seed: int, size: int = 32):
    from torchvision import transforms as T

    resize = [T.Resize(size)] if size != 32 else []  # fine-tunes upsample, as their transforms do
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(15),
                           T.ColorJitter(0.2, 0.2, 0.2), *resize, T.ToTensor(), T.Normalize(mean, std)])
    return torch.utils.data.DataLoader(PilDataset(x, y, transform), batch_size=batch, shuffle=True, num_workers=2,
                                       generator=torch.Generator().manual_seed(seed))


def reports_epochs(model: nn.Module, loader, lr: float, epochs: int) -> list[float]:
    """The reports' loop (fp32, NCHW, Adam, a host sync per step); seconds of each epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        running = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item()
        seconds.append(time.perf_counter() - t0)
    return seconds


COMPILE = False  # --compile: the fast path with torch.compile
TIMED_EPOCHS = 2  # --timed-epochs: each side's rate is its fastest of these, after one untimed epoch


def best_of(rows: list[dict]) -> dict:
    """One row from the same entry measured in several processes: each side's fastest epoch over all of them
    (the same rule as within one process), every epoch kept (process after process), the convolutions' fastest."""
    if len(rows) == 1:
        return rows[0]
    best = dict(rows[-1])
    for side in ("reports", "fast"):
        best[f"{side}_images_per_s"] = max(r[f"{side}_images_per_s"] for r in rows)
        best[f"{side}_epochs_images_per_s"] = [rate for r in rows for rate in r[f"{side}_epochs_images_per_s"]]
    for key in ("conv_ms_reports", "conv_ms_fast"):
        if key in best:
            best[key] = min(r[key] for r in rows)
    return {**best, "processes": len(rows)}


def fast_fit(model: nn.Module, entry, x, y, mean, std, epochs: int, seed: int):
    from benchmark.train import resolve_fast_path

    recipe = entry.recipe.replace(max_epochs=epochs, early_stopping=None, min_epochs=0, val_fraction=0.0,
                                  augment="aug", input_size=min(entry.recipe.input_size, 64),
                                  compile=COMPILE or entry.recipe.compile)
    fast = resolve_fast_path(recipe, "cpu")  # this machine's probe
    recipe = recipe.replace(precision=fast.precision, channels_last=fast.channels_last)
    loader = DeviceLoader(x, y, batch_size=recipe.batch_size, mean=mean, std=std, shuffle=True, seed=seed,
                          policy=get_policy("aug"), channels_last=recipe.channels_last, input_size=recipe.input_size)
    return fit(model, recipe, loader, None, fast_path=fast)


def test_accuracy(model: nn.Module, x, y, mean, std, precision: str, channels_last: bool) -> float:
    loader = DeviceLoader(x, y, batch_size=500, mean=mean, std=std, channels_last=channels_last)
    return accuracy(model, loader, precision)


def speed(data, mean, std, names: list[str], threads: int | None, processes: int = 1) -> Iterator[dict]:
    """Both loops' images/s for each entry, yielded as it is measured, with the ceiling: the best the fast path
    could reach if all of its counted FLOPs ran at this machine's peak dense rate (matmul or conv), as a multiple
    of the reports' loop; and for the convolutional entries a second one, the reports' whole step over the fast
    path's convolutions alone (perfkit.conv_step_ms): what the fast path would reach with all else free.

    Each entry runs in a process of its own (spawned), the reports' loop first, then the fast path: the two
    sides of a row are measured within minutes of each other, not the length of the zoo apart as when every
    reports' loop ran first (a VM's speed drifts within the hour), and nothing of one entry (heap, threads,
    the engine's process-wide malloc setting, benchmark.cpumemory, which the reports' loops must run without)
    carries into the next."""
    print(f"{'model':<20} {'batch':>5} {'images':>6}  {'reports img/s':>13}  {'fast img/s':>10}  {'ratio':>6}  "
          f"{'GFLOP/s r/f':>11}  {'ceiling':>7}")
    peaks: dict[str, float] = {}  # per precision, measured when first used (emulated bf16 would take minutes)
    for name, n, _ in MODELS:
        if name not in names:
            continue
        idx = stratified_subset(data.y_train, n, seed=0)
        rows = []
        for _ in range(processes):  # --processes: each side's fastest epoch of all (best_of)
            # not a multiprocessing.Pool: its workers are daemons, and the reports' DataLoader starts workers
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(_both_sides, name, data.x_train[idx], data.y_train[idx], mean, std, threads,
                                        COMPILE, TIMED_EPOCHS, multiprocessing.get_start_method()).result())
        row = best_of(rows)
        precision, slow_rate, fast_rate = row["precision"], row["reports_images_per_s"], row["fast_images_per_s"]
        if precision not in peaks:
            peaks[precision] = peak_gflops(precision)
            print(f"  (peak dense rate, {precision}, matmul or 3x3 conv: {peaks[precision]:.0f} GFLOP/s)")
        flops, target = row["train_flops_per_image"], _target(name, precision)
        ceiling = peaks[precision] * 1e9 / flops / slow_rate
        print(f"{name:<20} {row['batch_size']:>5} {row['images']:>6}  {slow_rate:>13.1f}  {fast_rate:>10.1f}  "
              f"{fast_rate / slow_rate:>5.2f}x  {flops * slow_rate / 1e9:>5.0f}/{flops * fast_rate / 1e9:<5.0f}  "
              f"{ceiling:>6.2f}x  {precision}{' +cl' if row['channels_last'] else ''}"
              f"{' +compile' if row['compile'] else ''}  {'meets' if fast_rate / slow_rate >= target else 'BELOW'} "
              f"{target:.1f}x", flush=True)
        if row.get("conv_ms_fast"):
            row["conv_bound"] = _print_conv_bound(row)
        yield {**row, "peak_gflops": peaks[precision], "ceiling": ceiling}


def _print_conv_bound(row: dict) -> float:
    """Print a convolutional row's second ceiling and return it: the reports' whole step over the fast path's
    convolutions alone (perfkit.conv_step_ms), the ratio the fast path would reach with all its other work free."""
    step_ms = 1000 * row["batch_size"] / row["reports_images_per_s"]
    reports, fast = row["conv_ms_reports"], row["conv_ms_fast"]
    bound = step_ms / fast
    print(f"  its convolutions alone: {reports:.0f} ms a step as the reports' loop runs them, {fast:.0f} ms as the "
          f"fast path does ({reports / fast:.2f}x); against the reports' whole step of {step_ms:.0f} ms, the fast "
          f"path with all else free would reach {bound:.2f}x", flush=True)
    return bound


def _both_sides(name: str, x, y, mean, std, threads: int | None, compile_: bool, timed_epochs: int,
                start_method: str) -> dict:
    """In a fresh process: the reports' loop on one entry, then the fast path from the same initial weights;
    each side's fastest timed epoch."""
    global COMPILE, TIMED_EPOCHS
    COMPILE, TIMED_EPOCHS = compile_, timed_epochs
    # a spawned process makes "spawn" its default: the reports' DataLoader would then start its workers from a
    # fresh interpreter every epoch (cnn3-basic's loop 3.5x slower), not as a notebook's, on this platform's default
    multiprocessing.set_start_method(start_method, force=True)
    if threads:
        torch.set_num_threads(threads)
    entry = zoo.get_entry(name)
    torch.manual_seed(0)
    model = _network(entry)
    fast_model = _network(entry)
    fast_model.load_state_dict(model.state_dict())
    size = min(entry.recipe.input_size, 64)
    flops = train_flops_per_image(model, size)
    loader = reports_loader(x, y, mean, std, entry.recipe.batch_size, seed=0, size=size)
    rates = [len(y) / s for s in reports_epochs(model, loader, entry.recipe.lr, 1 + TIMED_EPOCHS)[1:]]
    print(f"  reports' loop {name}: {max(rates):.1f} img/s (timed epochs {', '.join(f'{r:.1f}' for r in rates)})",
          flush=True)
    fitted = fast_fit(fast_model, entry, x, y, mean, std, 1 + TIMED_EPOCHS, seed=0)
    fast_rates, fp = [h["images_per_s"] for h in fitted.history[1:]], fitted.fast_path
    batch, convs = entry.recipe.batch_size, {}
    if name in CONVOLUTIONAL:  # after both sides, so it slows neither
        convs = {"conv_ms_reports": conv_step_ms(model, batch, size, "fp32", False),
                 "conv_ms_fast": conv_step_ms(fast_model, batch, size, fp["precision"], fp["channels_last"], True)}
    return {"entry": name, "batch_size": batch, "images": len(y),
            "reports_images_per_s": max(rates), "fast_images_per_s": max(fast_rates),
            "reports_epochs_images_per_s": rates, "fast_epochs_images_per_s": fast_rates,
            "precision": fp["precision"], "channels_last": fp["channels_last"], "compile": fp["compile"],
            "freed_memory_kept": fp["freed_memory_kept"], "train_flops_per_image": flops, "process": "own", **convs}


def accuracy_check(data, mean, std, names: list[str], images: int | None, epochs: int,
                   seeds: list[int]) -> list[dict]:
    print(f"\naccuracy check: balanced training subset, {epochs} epochs, full test split (no TTA)")
    print(f"{'model':<14} {'images':>6} {'seed':>4}  {'reports loop':>12}  {'fast path':>9}  {'fast - reports':>14}")
    out = []
    for name, _, n_default in MODELS:
        if name not in names:
            continue
        n_train = images or n_default
        entry = zoo.get_entry(name)
        diffs = []
        for seed in seeds:
            idx = stratified_subset(data.y_train, n_train, seed=seed)
            x, y = data.x_train[idx], data.y_train[idx]
            torch.manual_seed(seed)
            model = _network(entry)
            fast_model = _network(entry)
            fast_model.load_state_dict(model.state_dict())
            reports_epochs(model, reports_loader(x, y, mean, std, entry.recipe.batch_size, seed), entry.recipe.lr,
                           epochs)
            slow = test_accuracy(model, data.x_test, data.y_test, mean, std, "fp32", False)
            fitted = fast_fit(fast_model, entry, x, y, mean, std, epochs, seed)
            fast = test_accuracy(fitted.model, data.x_test, data.y_test, mean, std, "fp32", False)
            diffs.append(fast - slow)
            out.append({"entry": name, "images": n_train, "epochs": epochs, "seed": seed, "reports_acc": slow,
                        "fast_acc": fast})
            print(f"{name:<14} {n_train:>6} {seed:>4}  {slow:>12.4f}  {fast:>9.4f}  {100 * (fast - slow):>+13.2f}pt",
                  flush=True)
        sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        print(f"{name:<14} mean  difference {100 * statistics.mean(diffs):+.2f} pt (sd {100 * sd:.2f} pt over "
              f"{len(diffs)} seeds)", flush=True)
    return out


def main() -> None:
    global COMPILE, TIMED_EPOCHS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("CIFARZOO_DATA", "../shared/datasets/cifar10-jpeg.zip"))
    parser.add_argument("--models", nargs="+", default=[m for m, _, _ in MODELS])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--acc-images", type=int, default=None,
                        help="training images of the accuracy check (default: 5000; ResNet-12 640)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file; rows of an "
                        "existing one that this run does not measure again (other models or seeds) are kept")
    parser.add_argument("--acc-epochs", type=int, default=3)
    parser.add_argument("--acc-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--compile", action="store_true", help="the fast path with torch.compile")
    parser.add_argument("--timed-epochs", type=int, default=TIMED_EPOCHS,
                        help="timed epochs per side after an untimed one; each side's fastest is its rate")
    parser.add_argument("--processes", type=int, default=1,
                        help="fresh processes per entry, one after the other; each side's fastest epoch of all is "
                             "its rate (for a VM whose speed differs from process to process)")
    args = parser.parse_args()
    COMPILE, TIMED_EPOCHS = args.compile, max(1, args.timed_epochs)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.data)
    mean, std = channel_stats(data.x_train)
    print(f"data: {data.description}")
    print(f"machine: {host_line()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}\n")
    result = {"kind": "train_speed", "data": data.description, "machine": host_line(),
              "torch": torch.__version__, "speed": [], "accuracy": []}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            result = {**json.load(f), **{k: v for k, v in result.items() if k not in ("speed", "accuracy")}}
    measured = {"threads": torch.get_num_threads()}
    if not args.skip_speed:
        processes = max(1, args.processes)
        for row in speed(data, mean, std, args.models, args.threads, processes):  # each row kept when measured
            row = {**row, **measured, "load": os.getloadavg()[0]}
            result["speed"] = merge(result.get("speed", []), [row], ("entry",))
            if args.json:
                write_json(args.json, result)
    if not args.skip_accuracy:
        rows = accuracy_check(data, mean, std, args.models, args.acc_images, args.acc_epochs, args.acc_seeds)
        result["accuracy"] = merge(result.get("accuracy", []), rows, ("entry", "seed"))
    if args.json:
        write_json(args.json, result)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


def merge(old: list[dict], new: list[dict], key: tuple[str, ...]) -> list[dict]:
    """`old` rows with those `new` measures again replaced, in MODELS order (then seed)."""
    rows = {tuple(r[k] for k in key): r for r in old} | {tuple(r[k] for k in key): r for r in new}
    order = [m for m, _, _ in MODELS]
    return sorted(rows.values(), key=lambda r: (order.index(r["entry"]) if r["entry"] in order else len(order),
                                                r.get("seed", 0)))


if __name__ == "__main__":
    main()
