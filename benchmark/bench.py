"""The bench: a planner that turns names, seeds and a profile into runs, and executors that do them.

Planner and executor are separate pieces: a plan is plain data (runs and which are already done), so a
distributed executor can take the same plan later; the local one runs them in order, in-process.
"""

from __future__ import annotations

import fnmatch
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import zoo
from benchmark.data import Dataset
from benchmark.progress import Progress
from benchmark.records import read_record, record_path
from benchmark.runner import Run, RunContext, execute, is_done, prepare
from zoo.errors import CifarzooError


def resolve_entries(patterns: list[str], all_entries: bool, exclude: list[str]) -> list[str]:
    """Entry names matching the globs (or all), minus the excluded ones; a glob matching nothing is an error."""
    known = zoo.list_models()
    if all_entries and patterns:
        raise CifarzooError("give entry names/globs or --all, not both.")
    if not all_entries and not patterns:
        raise CifarzooError("name the entries to bench (names or globs such as 'resnet*'), or pass --all.")
    chosen: list[str] = list(known) if all_entries else []
    for pattern in patterns:
        matched = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise CifarzooError(f"'{pattern}' matches no entry; available: {', '.join(known)}.")
        chosen += [n for n in matched if n not in chosen]
    return [n for n in chosen if not any(fnmatch.fnmatchcase(n, g) for g in exclude)]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CifarzooError(f"--seeds must be comma-separated integers such as 0,1,2, not '{text}'.") from None
    if not seeds:
        raise CifarzooError("--seeds is empty; give at least one seed, e.g. --seeds 0.")
    return list(dict.fromkeys(seeds))


@dataclass
class Plan:
    todo: list[Run] = field(default_factory=list)
    done: list[Run] = field(default_factory=list)

    @property
    def runs(self) -> list[Run]:
        return self.done + self.todo


def make_plan(entries: list[str], seeds: list[int], profile: str, data: Dataset, ctx: RunContext) -> Plan:
    """One run per (entry, seed); runs whose record exists are done (unless forced)."""
    plan = Plan()
    for name in entries:
        for seed in seeds:
            run = prepare(name, seed, profile, data)
            (plan.done if is_done(run, ctx.results) and not ctx.force else plan.todo).append(run)
    return plan


class Executor(Protocol):
    def run(self, plan: Plan, ctx: RunContext) -> list[dict[str, Any]]: ...


class LocalExecutor:
    """Runs the plan's runs one after another in this process, with an overall progress bar."""

    def run(self, plan: Plan, ctx: RunContext) -> list[dict[str, Any]]:
        bar = Progress(len(plan.runs), "bench", ctx.progress, position=0)
        bar.update(len(plan.done), done="(already recorded)") if plan.done else None
        records = []
        for run in plan.todo:
            t0 = time.perf_counter()
            record = execute(run, ctx)
            records.append(record)
            acc = (record.get("test") or {}).get("accuracy")
            status = f"{acc:.4f}" if acc is not None else record["status"]
            bar.write(f"{run.run_id}: {status}  ({time.perf_counter() - t0:.0f}s)"
                      + (f"  {record['reason']}" if record["reason"] else ""))
            bar.update(1, last=run.name)
        bar.close()
        return records


def collect(plan: Plan, ctx: RunContext) -> list[dict[str, Any]]:
    """The records of every planned run (newly written or already there)."""
    return [read_record(record_path(ctx.results, r.run_id)) for r in plan.runs
            if record_path(ctx.results, r.run_id).exists()]


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (entry, profile): test accuracy mean ± std over seeds and the rest of the summary."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["entry"]["name"], rec["profile"]), []).append(rec)
    rows = []
    for (name, profile), recs in sorted(groups.items()):
        ok = [r for r in recs if r["status"] == "ok"]
        accs = [r["test"]["accuracy"] for r in ok]
        speedups = [r["timing"]["speedup_batch1"] for r in ok if r["timing"] and r["timing"].get("speedup_batch1")]
        rows.append({
            "entry": name, "profile": profile, "seeds": len(ok),
            "status": "ok" if ok else recs[0]["status"],
            "accuracy_mean": statistics.fmean(accs) if accs else None,
            "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "loss": statistics.fmean(r["test"]["loss"] for r in ok) if ok else None,
            "params": ok[0]["model"]["params"] if ok else None,
            "speedup": statistics.fmean(speedups) if speedups else None,
            "train_s": statistics.fmean(r["durations"]["train_s"] for r in ok) if ok else None,
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
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        lines.append(f"{r['entry']:<24} {r['profile']:<7} {r['seeds']:>5} {acc:>15} {r['loss']:>7.3f} "
                     f"{r['params']:>10,} {speed:>7} {r['train_s']:>8.1f}")
    return "\n".join(lines)
