"""A study's trials ranked by validation accuracy (`cifarzoo sweep show`), and the best one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from benchmark.sweep.study import interrupted

STATE_ORDER = {"complete": 0, "pruned": 1, "failed": 2, "running": 3, "waiting": 4, "interrupted": 5, "duplicate": 6}


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # complete, pruned, failed, running, waiting, interrupted (no record), duplicate
    params: dict[str, Any]
    val_acc: float | None  # selection number: best validation accuracy of the run
    test_acc: float | None  # shown, never used for selection
    run_id: str | None
    note: str  # the reason of a failed/pruned run, "same parameters as trial N", or a started one's worker


def state_of(trial: Any) -> str:
    if "duplicate_of" in trial.user_attrs:
        return "duplicate"
    if interrupted(trial):
        return "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
            TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[trial.state]


def study_rows(study: Any) -> list[TrialRow]:
    """Every trial: complete ones by validation accuracy (best first, ties to the earlier trial), then the rest."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs, state = t.user_attrs, state_of(t)
        note = (f"same parameters as trial {attrs['duplicate_of']}" if state == "duplicate"
                else f"worker {attrs['worker']}" if state in ("running", "interrupted") and "worker" in attrs
                else attrs.get("reason") or "")
        val = t.value if state == "complete" else attrs.get("val_acc")
        params = t.params or t.system_attrs.get("fixed_params") or {}
        rows.append(TrialRow(t.number, state, dict(params), val, attrs.get("test_acc"), attrs.get("run_id"), note))
    return sorted(rows, key=lambda r: (STATE_ORDER[r.state], -(r.val_acc if r.val_acc is not None else -1.0),
                                       r.number))


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    """The complete trial with the best validation accuracy (the earliest of equals), or None."""
    complete = [r for r in rows if r.state == "complete" and r.val_acc is not None]
    return min(complete, key=lambda r: (-r.val_acc, r.number)) if complete else None


def format_rows(rows: list[TrialRow], names: list[str]) -> str:
    """The terminal table of `cifarzoo sweep show`."""
    width = {n: max(len(n), *(len(_cell(r.params.get(n))) for r in rows)) if rows else len(n) for n in names}
    head = f"{'rank':>4} {'trial':>5} {'state':<11} " + " ".join(f"{n:>{width[n]}}" for n in names) + \
        f" {'val acc':>8} {'test acc':>8}  run id"
    lines = [head, "-" * len(head)]
    for rank, r in enumerate(rows, 1):
        ranked = str(rank) if r.state == "complete" else "-"
        cells = " ".join(f"{_cell(r.params.get(n)):>{width[n]}}" for n in names)
        line = (f"{ranked:>4} {r.number:>5} {r.state:<11} {cells} {_acc(r.val_acc):>8} {_acc(r.test_acc):>8}  "
                f"{r.run_id or '-'}")
        lines.append(line + (f"  ({r.note})" if r.note and r.state != "complete" else ""))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _acc(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"
