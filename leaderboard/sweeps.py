"""Sweep trials: records with a `sweep` section are kept off the leaderboard (each trial is a different
recipe on the same seed, so averaging them as seeds would be wrong) and get one page per study instead.

A study's trials are ranked by their best validation accuracy, the number the sweep selected on; the
test accuracy is shown beside it and never used for ranking.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.summary import best_val_accuracy
from leaderboard import plots
from leaderboard.records import dig


def is_trial(runs: pd.DataFrame) -> pd.Series:
    """Which rows are sweep trials."""
    return runs["study"].notna()


def page_of(study: str) -> str:
    """The site-relative page of a study (study names may hold any character)."""
    return f"sweeps/{re.sub(r'[^A-Za-z0-9._-]+', '-', str(study)).strip('-') or 'study'}.html"


def studies_table(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """One summary per study: entry, profile, trial counts, and the trial with the best validation accuracy."""
    out = []
    for study, group in trials.groupby("study", sort=True):
        ok = group[(group["status"] == "ok") & group["best_val_acc"].notna()]
        best = ok.sort_values(["best_val_acc", "trial"], ascending=[False, True]).iloc[0] if len(ok) else None
        out.append({
            "study": study, "page": page_of(study), "entry": group["entry"].iloc[0],
            "profile": group["profile"].iloc[0], "trials": len(group), "ok": len(ok),
            "not_ok": int((group["status"] != "ok").sum()),
            "best_trial": None if best is None else int(best["trial"]),
            "best_val_acc": None if best is None else float(best["best_val_acc"]),
            "best_test_acc": None if best is None or pd.isna(best["test_acc"]) else float(best["test_acc"]),
        })
    return out


def study_context(summary: dict[str, Any], records: list[dict[str, Any]], site: Path,
                  figures: list[plots.Job]) -> dict[str, Any]:
    """Template data for one study page; queues its figure."""
    names = sorted({k for r in records for k in (dig(r, "sweep", "params") or {})})
    rows = []
    for r in records:
        rows.append({
            "trial": dig(r, "sweep", "trial"), "status": r["status"], "reason": r["reason"],
            "params": dig(r, "sweep", "params") or {}, "val_acc": best_val_accuracy(r["history"]),
            "test_acc": dig(r, "test", "accuracy"), "epochs": dig(r, "training", "epochs_run"),
            "train_s": dig(r, "durations", "train_s"), "command": r["command"], "run_id": r["run_id"],
        })
    ranked = sorted(rows, key=lambda t: (t["status"] != "ok" or t["val_acc"] is None,
                                         -(t["val_acc"] or 0.0), t["trial"] if t["trial"] is not None else 0))
    figure = None
    if any(t["val_acc"] is not None for t in rows):
        slug = Path(summary["page"]).stem
        figures.append(plots.job("sweep", rows, names, site / "assets" / "sweeps" / f"{slug}.png"))
        figure = f"../assets/sweeps/{slug}.png"
    rep = records[0]
    return {"study": summary, "trials": ranked, "names": names, "figure": figure, "entry": rep["entry"],
            "data": rep["data"] or {}, "seed": rep["seed"]}
