"""The reproduction page: each seed system (report x model) with the report's number beside ours.

Ours is the `full` profile (the report's recipe) only: mean ± sd over seeds, per data copy. The verdict rule,
stated on the page: within max(2 sd, 1 point) of the report's number is "reproduced"; otherwise "above" or
"below" by the difference. Systems not yet run at `full` are listed with what running them would cost (from
the plans `cifarzoo bench --plan --json` wrote into RESULTS/perf/plan*.json) and the command that runs them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

PAGE = "reproduction.html"
TOLERANCE_PTS = 1.0  # a difference within max(2 sd, this) counts as reproduced
REPORTS = ("000", "001", "002", "003", "004")


def verdict(diff_pts: float | None, sd_pts: float | None) -> tuple[str, str]:
    """(kind, words) for ours minus the report's, in points: reproduced / above / below / no number."""
    if diff_pts is None or math.isnan(diff_pts):
        return "none", "no report number to compare"
    bar = max(2 * sd_pts if sd_pts is not None and not math.isnan(sd_pts) else 0.0, TOLERANCE_PTS)
    if abs(diff_pts) <= bar:
        return "ok", f"reproduced (within {bar:.1f} pts)"
    return ("above", f"above by {diff_pts:.1f} pts") if diff_pts > 0 else ("below", f"below by {-diff_pts:.1f} pts")


def load_plans(results: Path) -> dict[str, dict[str, Any]]:
    """device -> {entry -> estimated seconds per seed}, from RESULTS/perf/plan*.json."""
    plans: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(results) / "perf").glob("plan*.json")):
        try:
            data = json.loads(path.read_text())
            per_entry = {run["entry"]: run["estimate_s"] for run in data["runs"] if run["estimate_s"] is not None}
            plans[data["device"]] = {"entries": per_entry, "machine": data.get("machine", ""),
                                     "basis": data.get("basis", "")}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return plans


def reproduction_rows(entries: list[Any], table: pd.DataFrame, plans: dict[str, dict[str, Any]],
                      data_arg: str) -> list[dict[str, Any]]:
    """One row per registered entry of the five reports, `full` rows of the leaderboard table beside it."""
    full = table[table["profile"] == "full"]
    rows = []
    for entry in sorted((e for e in entries if e.report in REPORTS), key=lambda e: (e.report, e.name)):
        ours = full[full["entry"] == entry.name]
        base = {"report": entry.report, "entry": entry.name, "model": entry.report_model,
                "reported": entry.reported.accuracy, "where": entry.reported.where, "note": entry.reported.note}
        if ours.empty:
            cpu, gpu = (plans.get(d, {}).get("entries", {}).get(entry.name) for d in ("cpu", "cuda"))
            rows.append({**base, "run": False, "cpu_h": cpu / 3600 if cpu else None,
                         "gpu_min": gpu / 60 if gpu else None,
                         "command": f"cifarzoo bench {entry.name} --profile full --data {data_arg}"})
            continue
        for _, r in ours.iterrows():
            diff = r["diff_pts"] if pd.notna(r["diff_pts"]) else None
            sd = 100 * r["acc_std"] if pd.notna(r["acc_std"]) else None
            kind, words = verdict(diff, sd)
            rows.append({**base, "run": True, "mean": r["acc_mean"], "sd": r["acc_std"], "seeds": int(r["seeds"]),
                         "diff_pts": diff, "verdict": kind, "verdict_text": words, "page": r["page"],
                         "data_source": r["data_source"], "lossy": bool(r["lossy"])})
    return rows


def repro_context(entries: list[Any], table: pd.DataFrame, results: Path) -> dict[str, Any]:
    """Template data of the reproduction page."""
    plans = load_plans(results)
    # the command names the data copy the full runs used (by file name, as records do), else the official one
    sources = table.loc[table["profile"] == "full", "data_source"].dropna()
    rows = reproduction_rows(entries, table, plans, sources.mode().iat[0] if len(sources) else "cifar10")
    done = [r for r in rows if r["run"]]
    return {"rows": rows, "n_done": len({r["entry"] for r in done}), "n_systems": len({r["entry"] for r in rows}),
            "tolerance": TOLERANCE_PTS, "plans": plans,
            "counts": {k: sum(r.get("verdict") == k for r in done) for k in ("ok", "above", "below", "none")}}
