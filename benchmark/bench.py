"""The bench: a planner that turns names, seeds and a profile into runs, and executors that do them.

Planner and executor are separate pieces: a plan is plain data (runs and which are already done), so a
distributed executor can take the same plan later; the local one runs them in order, in-process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.data import Dataset
from benchmark.progress import Progress
from benchmark.records import read_record, record_path
from benchmark.runner import Run, RunContext, execute, is_done, prepare
from benchmark.selection import resolve_entries
from benchmark.train import RunPaused
from zoo.files import write_atomic


@dataclass
class Plan:
    todo: list[Run] = field(default_factory=list)
    done: list[Run] = field(default_factory=list)
    retry: list[Run] = field(default_factory=list)  # in todo: their failed record is set aside first

    @property
    def runs(self) -> list[Run]:
        return self.done + self.todo


def make_plan(entries: list[str], seeds: list[int], profile: str, data: Dataset, ctx: RunContext,
              retry_failed: bool = False) -> Plan:
    """One run per (entry, seed); runs whose record exists are done (unless forced, or failed and retried)."""
    plan = Plan()
    for name in entries:
        for seed in seeds:
            run = prepare(name, seed, profile, data)
            if not is_done(run, ctx.results) or ctx.force:
                plan.todo.append(run)
            elif retry_failed and read_record(record_path(ctx.results, run.run_id))["status"] == "failed":
                plan.todo.append(run)
                plan.retry.append(run)
            else:
                plan.done.append(run)
    return plan


@dataclass
class Outcome:
    """What the executor did with the plan: new records, and runs left to another process."""

    records: list[dict[str, Any]] = field(default_factory=list)
    elsewhere: list[tuple[str, str]] = field(default_factory=list)  # (run_id, why: claimed / recorded)
    paused: list[str] = field(default_factory=list)  # run ids stopped at the time budget (checkpointed)
    not_started: list[str] = field(default_factory=list)  # run ids left when the time budget was spent


class LocalExecutor:
    """Runs the plan's runs one after another in this process, with an overall progress bar. Each run is
    claimed first (`claim`): one that another process is running, or has recorded meanwhile, is left to it."""

    def run(self, plan: Plan, ctx: RunContext) -> Outcome:
        bar = Progress(len(plan.runs), "bench", ctx.progress, position=0)
        bar.update(len(plan.done), done="(already recorded)") if plan.done else None
        outcome = Outcome()
        for run in plan.todo:
            if ctx.deadline is not None and (outcome.paused or time.monotonic() >= ctx.deadline):
                outcome.not_started.append(run.run_id)
                continue
            t0 = time.perf_counter()
            with claim(ctx.results, run.run_id) as holder:
                if holder is not None:
                    outcome.elsewhere.append((run.run_id, f"being run by {holder}"))
                    bar.write(f"{run.run_id}: left to {holder}, which is running it")
                elif is_done(run, ctx.results) and not ctx.force and run not in plan.retry:
                    outcome.elsewhere.append((run.run_id, "recorded by another process"))
                    bar.write(f"{run.run_id}: recorded by another process meanwhile")
                else:
                    if run in plan.retry:
                        set_aside_failure(ctx.results, run.run_id)
                    try:
                        record = execute(run, ctx)
                        outcome.records.append(record)
                        bar.write(_line(run, record, time.perf_counter() - t0))
                    except RunPaused as paused:
                        outcome.paused.append(run.run_id)
                        bar.write(f"{run.run_id}: {paused}")
            bar.update(1, last=run.name)
        bar.close()
        return outcome


def _line(run: Run, record: dict[str, Any], seconds: float) -> str:
    acc = (record.get("test") or {}).get("accuracy")
    status = f"{acc:.4f}" if acc is not None else record["status"]
    return f"{run.run_id}: {status}  ({seconds:.0f}s)" + (f"  {record['reason']}" if record["reason"] else "")


CLAIMS = ".claims"  # <results>/.claims/<run_id>.lock (held while running) and .json (who holds it)


@contextmanager
def claim(results: Path, run_id: str) -> Iterator[str | None]:
    """Hold run `run_id` for this process while the block runs; yields None when the claim is ours, else who
    holds it ("pid 123 on host"). The lock is an OS file lock (filelock): a killed process releases it."""
    from filelock import FileLock, Timeout

    folder = results / CLAIMS
    folder.mkdir(parents=True, exist_ok=True)
    lock, who = FileLock(folder / f"{run_id}.lock", timeout=0), folder / f"{run_id}.json"
    try:
        lock.acquire()
    except Timeout:
        yield _claimant(who)
        return
    try:
        write_atomic(who, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}), fsync=False)
        yield None
    finally:
        who.unlink(missing_ok=True)
        lock.release()


def _claimant(who: Path) -> str:
    try:
        data = json.loads(who.read_text())
        return f"pid {data['pid']} on {data['host']} (since {data['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def set_aside_failure(results: Path, run_id: str) -> Path:
    """Move a failed record (and its traceback) to <results>/.failed/ before the run is retried: kept, and
    out of the leaderboard's way. Returns the record's new path."""
    record = read_record(record_path(results, run_id))
    folder = results / ".failed"
    folder.mkdir(exist_ok=True)
    stamp = str(record.get("finished_at") or "").replace(":", "") or str(int(time.time()))
    target = folder / f"{run_id}.{stamp}.json"
    os.replace(record_path(results, run_id), target)
    if record.get("traceback_file") and (results / record["traceback_file"]).is_file():
        os.replace(results / record["traceback_file"], folder / f"{run_id}.{stamp}.traceback.txt")
    return target


def collect(plan: Plan, ctx: RunContext) -> list[dict[str, Any]]:
    """The records of every planned run (newly written or already there)."""
    return [read_record(record_path(ctx.results, r.run_id)) for r in plan.runs
            if record_path(ctx.results, r.run_id).exists()]


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (entry, profile): test accuracy mean ± sd over seeds and the rest of the summary (the same
    statistics as the site: benchmark.summary)."""
    from benchmark.summary import mean_sd, speedup
    from benchmark.timings import quotable

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["entry"]["name"], rec["profile"]), []).append(rec)
    rows = []
    for (name, profile), recs in sorted(groups.items()):
        ok = [r for r in recs if r["status"] == "ok"]
        timed = [r["timing"] for r in ok if quotable(r["timing"])]
        acc, sd = mean_sd(r["test"]["accuracy"] for r in ok)
        rows.append({
            "entry": name, "profile": profile, "seeds": len(ok),
            "status": "ok" if ok else recs[0]["status"],
            "accuracy_mean": acc, "accuracy_std": sd,
            "loss": mean_sd(r["test"]["loss"] for r in ok)[0],
            "params": ok[0]["model"]["params"] if ok else None,
            "speedup": speedup((t["torch"]["batch1_ms"]["p50"] for t in timed),
                               (t["onnxruntime"]["batch1_ms"]["p50"] for t in timed if t["onnxruntime"])),
            "timing": "ok" if timed else ("contended" if any(r["timing"] for r in ok) else None),
            "train_s": mean_sd(r["durations"]["train_s"] for r in ok)[0],
            "reason": None if ok else recs[0]["reason"],
        })
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The terminal table printed at the end of a bench."""
    head = f"{'entry':<24} {'profile':<7} {'seeds':>5} {'test acc':>15} {'loss':>7} {'params':>10} " \
           f"{'ORT/PT':>7} {'train s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["accuracy_mean"] is None:
            lines.append(f"{r['entry']:<24} {r['profile']:<7} {r['status']:>5}  {r['reason'] or ''}")
            continue
        acc = f"{100 * r['accuracy_mean']:.2f}" + (f" ± {100 * r['accuracy_std']:.2f}" if r["accuracy_std"] else "")
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else ("busy" if r["timing"] == "contended" else "-")
        lines.append(f"{r['entry']:<24} {r['profile']:<7} {r['seeds']:>5} {acc:>15} {r['loss']:>7.3f} "
                     f"{r['params']:>10,} {speed:>7} {r['train_s']:>8.1f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the bench, as a function


@dataclass
class BenchResult:
    """What `bench` did: the plan, the records of every planned run, and where the site went."""

    plan: Plan
    outcome: Outcome
    records: list[dict[str, Any]]  # every planned run's record, new or already there
    site: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Failed records of the plan, new or recorded earlier: a bench with any of them did not succeed."""
        return [r for r in self.records if r["status"] == "failed"]

    def below(self, accuracy: float) -> list[dict[str, Any]]:
        """Summary rows whose mean test accuracy is under `accuracy` (a fraction): for `--fail-under`."""
        return [row for row in summary_rows(self.records)
                if row["accuracy_mean"] is not None and row["accuracy_mean"] < accuracy]


def planned(entries: list[str] | tuple[str, ...] = (), *, all_entries: bool = False,
            exclude: tuple[str, ...] = (), data: str | Dataset = "cifar10", profile: str = "smoke",
            seeds: list[int] | None = None, results: str | Path = "results", device: str = "cpu",
            force: bool = False, retry_failed: bool = False, progress: str = "quiet",
            command: str = "", time_budget: float | None = None, imagenet_weights: str | Path | None = None,
            tensorboard: str | Path | None = None, mlflow: str | bool | None = None,
            shard: tuple[int, int] | None = None) -> tuple[Plan, RunContext]:
    """The plan of a bench and its context, with every check a bench makes before its first run."""
    from benchmark.data import load_dataset
    from benchmark.fastpath import environment_override
    from benchmark.onnx_export import exporter_override
    from benchmark.profiles import get_profile
    from benchmark.records import check_results_dir

    environment_override()  # a bad $CIFARZOO_PRECISION (or exporter) fails here, not in every run
    exporter_override()
    names = resolve_entries(list(entries), all_entries, list(exclude))
    seeds = list(seeds) if seeds is not None else list(get_profile(profile).seeds)
    results = Path(results)
    check_results_dir(results)
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    ctx = RunContext(results, dataset, device, command, progress, force, deadline=deadline,
                     imagenet_weights=Path(imagenet_weights) if imagenet_weights else None,
                     trackers=_trackers(tensorboard, mlflow, results))
    plan = make_plan(names, seeds, profile, dataset, ctx, retry_failed=retry_failed)
    if shard is not None:  # this process's slice only: N processes with K = 1..N share the plan
        from benchmark.distributed import shard as slice_of

        mine = {r.run_id for r in slice_of(plan.runs, *shard)}
        plan = Plan([r for r in plan.todo if r.run_id in mine], [r for r in plan.done if r.run_id in mine],
                    [r for r in plan.retry if r.run_id in mine])
    return plan, ctx


def _trackers(tensorboard: str | Path | None, mlflow: str | bool | None, results: Path) -> tuple[Any, ...]:
    from benchmark.tracking import MLflow, TensorBoard

    chosen: list[Any] = [TensorBoard(tensorboard)] if tensorboard else []
    if mlflow:
        chosen.append(MLflow(mlflow if isinstance(mlflow, str) else None, results))
    return tuple(chosen)


def estimates(plan: Plan, ctx: RunContext) -> list[tuple[Run, Any, bool]]:
    """(run, its estimated cost or None if recorded, recorded?) for every run of the plan, in order."""
    from benchmark.estimate import estimate_run

    return [(run, None, True) if run in plan.done else (run, estimate_run(run, ctx.data, ctx.device), False)
            for run in plan.runs]


def bench(entries: list[str] | tuple[str, ...] = (), *, site: str | Path | None = "site", site_images: bool = True,
          on_plan: Any = None, executor: str = "local", address: str | None = None, threads: int | None = None,
          **options: Any) -> BenchResult:
    """Plan (entry x seed) runs, do the ones not recorded yet, build the site: what `cifarzoo bench` does.

        >>> from benchmark.bench import bench
        >>> result = bench(["cnn3-basic"], data="synthetic", profile="smoke", results="out", site=None)
        >>> [r["test"]["accuracy"] for r in result.records]

    `options` are `planned`'s (data, profile, seeds, results, device, force, retry_failed, progress, shard,
    ...). `executor`: "local" (runs one after another here) or "ray" (tasks on the Ray cluster at `address`, or
    a local one; benchmark.distributed). `threads`: torch threads per run. `on_plan(plan, dataset)` is called
    once the plan is known, before any run starts.
    """
    site = Path(site) if site is not None else None
    if site is not None:
        from leaderboard.build import check_out

        check_out(site, Path(options.get("results", "results")))  # refused before any training
    plan, ctx = planned(entries, **options)
    if on_plan is not None:
        on_plan(plan, ctx.data)
    if executor == "ray":
        from benchmark.distributed import RayExecutor

        outcome = RayExecutor(address, threads or 1).run(plan, ctx)
    else:
        if threads:
            import torch

            torch.set_num_threads(threads)
        outcome = LocalExecutor().run(plan, ctx)
    result = BenchResult(plan, outcome, collect(plan, ctx))
    if site is not None:
        from leaderboard.build import build_site

        report = build_site(ctx.results, site, data_source=ctx.data if site_images else None)
        result.site, result.warnings = report.index, report.warnings
    return result
