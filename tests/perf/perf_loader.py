"""Batches per second: DeviceLoader + the "aug" policy vs torchvision DataLoader + the same PIL transforms.

Not a test (pytest does not collect it): a measurement to run by hand, on an otherwise idle machine.

    .venv/bin/python tests/perf/perf_loader.py [--batches 40] [--device cpu]

Uses the real zip when present (decoded once, cached), else the synthetic set. Both loaders read the
same uint8 images, batch 128, shuffled, on the same CPU in the same run. The first batch of each
loader is excluded (DataLoader worker start-up, lazy imports); the next --batches are timed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from perfkit import PilDataset

ZIP = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "cifar10-jpeg.zip"


def batches_per_second(loader, n: int) -> float:
    it = iter(loader)
    next(it)  # warm-up: worker start-up and first-call costs are not steady-state throughput
    start = time.perf_counter()
    for _ in range(n):
        x, _ = next(it)
    if x.is_cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)




def main() -> None:
    from torchvision import transforms as T

    from benchmark.augment import get_policy
    from benchmark.data import load_dataset
    from benchmark.loader import DeviceLoader
    from benchmark.splits import channel_stats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="timed batches per loader")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="device of the DeviceLoader (torchvision's stays on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(str(ZIP.resolve()) if ZIP.exists() else "synthetic")
    mean, std = channel_stats(data.x_train)
    print(f"data: {data.description}")
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs "
          f"(load average {load}), batch {args.batch_size}, {args.batches} timed batches each\n")

    results = {}
    device_loader = DeviceLoader(data.x_train, data.y_train, batch_size=args.batch_size, mean=mean, std=std,
                                 device=args.device, shuffle=True, policy=get_policy("aug"))
    results[f"DeviceLoader 'aug' ({args.device})"] = batches_per_second(device_loader, args.batches)

    transform = T.Compose([
        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(15), T.ColorJitter(0.2, 0.2, 0.2),
        T.ToTensor(), T.Normalize(mean, std),
    ])
    dataset = PilDataset(data.x_train, data.y_train, transform)
    for workers in (2, 0):
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                             num_workers=workers, persistent_workers=False)
        results[f"torchvision DataLoader + PIL, num_workers={workers}"] = batches_per_second(loader, args.batches)

    ours = next(iter(results.values()))
    width = max(map(len, results))
    for name, rate in results.items():
        print(f"{name:<{width}}  {rate:8.1f} batches/s  {rate * args.batch_size:9.0f} images/s  "
              f"ratio {ours / rate:5.2f}x")


if __name__ == "__main__":
    main()
