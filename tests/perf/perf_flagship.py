"""Time-to-accuracy of the flagship (airnet-fast) on a real copy of CIFAR-10, over several seeds.

    python tests/perf/perf_flagship.py --data ../shared/datasets/cifar10-jpeg.zip --seeds 0 1 2

Each run does what `cifarzoo bench airnet-fast --profile full` does up to the test accuracy (split,
loaders, whitening init, fit, test prediction with the recipe's TTA) and prints, after every epoch,
the training seconds so far and the test accuracy with TTA (measured outside the clock: the curve),
then the wall clock from "data in memory" to "test accuracy" (loaders + init + fit + TTA prediction;
the per-epoch curve evaluations excluded). Not a CI test: minutes per seed on a 2-core CPU.

In the same run it trains airbench94's own recipe (widths 64/256/256, 9.9 epochs) with perf_reference.py's
single-script loop (`--reference-seeds`, default seed 0; none skips it) and prints both side by side: the
flagship's mean wall clock as a fraction of the reference's (target <= 0.8x) and both accuracies (target: the
flagship >= 90.7 % and >= the reference).

`--append` adds the new seeds to those already in the `--json` file (same entry, recipe, machine and
threads, else it stops before training), so three seeds can be run in sittings on a slow host:

    python tests/perf/perf_flagship.py --seeds 1 2 --reference-seeds --json F --append
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import torch
from perf_reference import AIRBENCH94_EPOCHS, train_reference
from perfkit import accuracy, peak_gflops, write_json

import zoo
from benchmark.augment import get_policy
from benchmark.data import load_dataset
from benchmark.loader import DeviceLoader
from benchmark.machine import gpu, host_line
from benchmark.splits import channel_stats, stratified_split
from benchmark.train import fit
from leaderboard.perf import flagship_summary
from zoo.recipe import RECIPE_FIELDS


def run_once(data, entry, recipe, seed: int, device: str, curve: bool) -> dict:
    """One seed: returns wall-clock seconds, final TTA test accuracy and the per-epoch curve."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    if recipe.val_fraction > 0:
        train_idx, _ = stratified_split(data.y_train, recipe.val_fraction, seed=seed)
    else:
        train_idx = torch.arange(len(data.y_train))
    mean, std = channel_stats(data.x_train[train_idx])
    train = DeviceLoader(data.x_train[train_idx], data.y_train[train_idx], batch_size=recipe.batch_size, mean=mean,
                         std=std, device=device, shuffle=True, seed=seed, policy=get_policy(recipe.augment),
                         channels_last=recipe.channels_last)
    test = DeviceLoader(data.x_test, data.y_test, batch_size=500, mean=mean, std=std, device=device,
                        channels_last=recipe.channels_last)
    model = zoo.create(entry.architecture, **entry.arch_kwargs)
    model.data_init(train.plain(5000))
    points: list[tuple[int, float, float]] = []
    clock = {"train_s": 0.0, "untimed_s": 0.0}

    def on_epoch(row: dict) -> None:
        clock["train_s"] += row["seconds"]
        if curve:
            t = time.perf_counter()
            points.append((row["epoch"], clock["train_s"], accuracy(model, test, recipe.precision, recipe.tta)))
            clock["untimed_s"] += time.perf_counter() - t
            print(f"  seed {seed} epoch {row['epoch']:2d}  train {clock['train_s']:7.1f} s  "
                  f"test acc (TTA) {points[-1][2]:.4f}", flush=True)

    fitted = fit(model, recipe, train, None, device=device, on_epoch=on_epoch)
    final = accuracy(fitted.model, test, recipe.precision, recipe.tta)
    wall = time.perf_counter() - t0 - clock["untimed_s"]
    return {"seed": seed, "wall_s": wall, "train_s": fitted.train_seconds, "acc": final, "curve": points}


def side_by_side(runs: list[dict], reference: list[dict]) -> None:
    """The flagship against airbench94's recipe by the reference loop: accuracies over every seed, the
    wall-clock ratio over the seeds run in the reference's own sitting (leaderboard.perf.flagship_summary)."""
    s = flagship_summary(runs, reference)
    if s["wall_ratio"] is None:
        print("\nno seed ran in the reference's sitting: no wall-clock ratio (add seeds with the reference's run)")
        return
    acc, ref_acc, ratio, wall, ref_wall = (s[k] for k in ("acc_mean", "ref_acc", "wall_ratio", "wall_mean", "ref_wall"))
    print(f"\n{'':<34} {'test acc':>8}  {'wall s':>7}\n{'reference loop, airbench94 recipe':<34} "
          f"{ref_acc:>8.4f}  {ref_wall:>7.1f}   ({len(reference)} seed(s))\n{'cifarzoo flagship':<34} {acc:>8.4f}  "
          f"{wall:>7.1f}   ({len(runs)} seed(s), {len(s['timed'])} timed beside the reference)")
    print(f"wall clock {ratio:.2f}x the reference's (target <= 0.80x: {'meets' if ratio <= 0.8 else 'misses'}); "
          f"accuracy {100 * (acc - ref_acc):+.2f} points against it, target >= 90.7 % and >= the reference: "
          f"{'meets' if acc >= max(0.907, ref_acc) else 'misses'}")


def earlier_runs(path: str | None, header: dict, reference_seeds: list[int],
                 seeds: list[int]) -> tuple[list[dict], list[dict]]:
    """The reference and flagship runs already in `path`, checked to be of the same configuration as
    `header` (what the file's other fields would be now) and to hold none of the seeds asked for, so that
    one mean never mixes two setups or counts a seed twice."""
    if path is None:
        raise SystemExit("--append needs --json: the file whose runs the new seeds join.")
    try:
        with open(path) as f:
            earlier = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"--append: cannot read {path} ({err}).") from None
    # through JSON first: the file holds lists where the header holds tuples (widths)
    differs = [k for k, v in header.items() if json.loads(json.dumps(v)) != earlier.get(k)]
    if differs:
        raise SystemExit(f"--append: {path} was measured with a different {', '.join(differs)}; "
                         "write these seeds to a new file instead.")
    reference, runs = earlier.get("reference", []), earlier.get("runs", [])
    for kind, done, asked in (("the reference", reference, reference_seeds), (header["entry"], runs, seeds)):
        if taken := sorted({r["seed"] for r in done} & set(asked)):
            raise SystemExit(f"--append: {path} already has seed(s) {taken} of {kind}.")
    return reference, runs


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("CIFARZOO_DATA", "../shared/datasets/cifar10-jpeg.zip"))
    parser.add_argument("--entry", default="airnet-fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reference-seeds", type=int, nargs="*", default=[0],
                        help="seeds of airbench94's recipe by the reference loop (none: skip it)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--no-curve", action="store_true", help="skip the per-epoch test evaluations")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the runs and the curve to this JSON file")
    parser.add_argument("--append", action="store_true",
                        help="add the new seeds to the runs already in --json (same configuration and machine)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help='recipe or architecture overrides, e.g. max_epochs=10 widths=[48,128,128]')
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.data)  # decoded once and cached: not part of the clock
    entry = zoo.get_entry(args.entry)
    recipe, arch = entry.recipe, dict(entry.arch_kwargs)
    for item in args.set:
        key, value = item.split("=", 1)
        if key in RECIPE_FIELDS:
            recipe = recipe.replace(**{key: json.loads(value)})
        else:
            arch[key] = json.loads(value)
    if args.epochs is not None:
        recipe = recipe.replace(max_epochs=args.epochs)
    entry = dataclasses.replace(entry, arch_kwargs=arch)
    print(f"{entry.name}: {entry.arch_kwargs}, {recipe.max_epochs} epochs, batch {recipe.batch_size}, "
          f"{recipe.precision}, channels_last={recipe.channels_last}, compile={recipe.compile}, tta={recipe.tta}")
    print(f"data: {data.description}")
    header = {"kind": "flagship", "entry": entry.name, "arch_kwargs": arch, "recipe": recipe.to_dict(),
              "data": data.description, "machine": host_line(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
              "gpu": (gpu() or {}).get("name") if args.device.startswith("cuda") else None}
    gpu_name = f", GPU {header['gpu']}" if header["gpu"] else ""
    print(f"machine: {header['machine']}{gpu_name}, torch {torch.__version__}, {header['threads']} threads, "
          f"load {os.getloadavg()[0]:.2f}")
    reference, runs = (earlier_runs(args.json, header, args.reference_seeds, args.seeds) if args.append
                       else ([], []))

    # every run carries its sitting (this process) and what the host could do then: one model name covers VMs,
    # and one VM's fp32 peak moved by a quarter within a day, so only runs of the reference's own sitting are timed
    # against it (leaderboard.perf.timed_beside); the others count for accuracy
    sitting = {"sitting": time.strftime("%Y-%m-%dT%H:%M:%S"), "peak_gflops_fp32": round(peak_gflops("fp32"), 1)}
    print(f"this sitting: {sitting}")

    def save() -> None:  # after every run: a long sitting that dies keeps the seeds it finished
        if args.json:
            write_json(args.json, {**header, "reference": reference, "runs": runs})

    for seed in args.reference_seeds:
        reference.append({**train_reference(data, seed, AIRBENCH94_EPOCHS, not args.no_curve, args.device), **sitting})
        print(f"reference seed {seed} (airbench94's recipe, the single-script loop, {reference[-1]['precision']}): "
              f"test accuracy {reference[-1]['acc']:.4f} in {reference[-1]['wall_s']:.1f} s wall", flush=True)
        save()
    for seed in args.seeds:
        load_before = os.getloadavg()[0]
        runs.append({**run_once(data, entry, recipe, seed, args.device, not args.no_curve), **sitting})
        r = runs[-1]
        r["load_before"], r["load_after"] = load_before, os.getloadavg()[0]
        print(f"seed {seed}: test accuracy {r['acc']:.4f} in {r['wall_s']:.1f} s wall "
              f"(train {r['train_s']:.1f} s), load {os.getloadavg()[0]:.2f}", flush=True)
        save()
    accs, walls = [r["acc"] for r in runs], [r["wall_s"] for r in runs]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"\nmean over {len(runs)} seeds: test accuracy {statistics.mean(accs):.4f} +- {sd:.4f}, "
          f"wall clock {statistics.mean(walls):.1f} s (max {max(walls):.1f} s)")
    if not args.no_curve:
        print("\ntime-to-accuracy (mean over seeds): epoch, train seconds, test accuracy with TTA")
        for i in range(min(len(r["curve"]) for r in runs)):
            sec = statistics.mean(r["curve"][i][1] for r in runs)
            acc = statistics.mean(r["curve"][i][2] for r in runs)
            print(f"  {runs[0]['curve'][i][0]:2d}  {sec:7.1f}  {acc:.4f}")
    if reference:
        side_by_side(runs, reference)


if __name__ == "__main__":
    main()
