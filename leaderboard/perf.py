"""The Performance page: what the scripts in tests/perf measured, read from `RESULTS/perf/*.json`.

Each script writes one file with `--json` (`flagship.json` from perf_flagship.py, `train_speed.json` from
perf_train_speed.py, `inference.json` from perf_inference.py); the page shows whichever exist. These are
not result records: they hold their own machine, versions and load, since they are measured by hand.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from leaderboard import plots
from leaderboard.records import log

KINDS = ("flagship", "train_speed", "inference")
PAGE = "performance.html"


def load_perf(results: Path) -> dict[str, dict[str, Any]]:
    """{kind: measurement} for each `results/perf/<kind>.json` present; an unreadable one is warned about."""
    found = {}
    for kind in KINDS:
        path = Path(results) / "perf" / f"{kind}.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            log.warning(f"perf/{kind}.json is not readable JSON ({err}); the Performance page leaves it out.")
            continue
        found_kind = data.get("kind") if isinstance(data, dict) else None  # a list or number has no kind
        if found_kind != kind:
            log.warning(f"perf/{kind}.json is not a {kind} measurement (its 'kind' is {found_kind!r}); left out.")
            continue
        found[kind] = data
    return found


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def flagship_context(data: dict[str, Any], site: Path, figures: list[plots.Job]) -> dict[str, Any]:
    """Seeds, their mean and the mean time-to-accuracy curve; queues the curve's figure."""
    runs = data.get("runs") or []
    acc, acc_sd = _mean_sd([r["acc"] for r in runs])
    wall, _ = _mean_sd([r["wall_s"] for r in runs])
    curves = [r["curve"] for r in runs if r.get("curve")]
    n = min((len(c) for c in curves), default=0)
    mean_curve = [{"epoch": curves[0][i][0], "seconds": statistics.mean(c[i][1] for c in curves),
                   "acc": statistics.mean(c[i][2] for c in curves)} for i in range(n)]
    figure = None
    if curves:
        figures.append(plots.job("time_to_accuracy", {r["seed"]: r["curve"] for r in runs if r.get("curve")},
                                 site / "assets" / "perf" / "flagship.png"))
        figure = "assets/perf/flagship.png"
    reference = data.get("reference") or []  # airbench94's recipe by the single-script loop, same run
    ref_acc, _ = _mean_sd([r["acc"] for r in reference])
    ref_wall, _ = _mean_sd([r["wall_s"] for r in reference])
    return {**data, "acc_mean": acc, "acc_sd": acc_sd, "wall_mean": wall,
            "wall_max": max((r["wall_s"] for r in runs), default=None), "curve": mean_curve, "figure": figure,
            "reference": reference, "ref_acc": ref_acc, "ref_wall": ref_wall,
            "wall_ratio": wall / ref_wall if wall is not None and ref_wall else None}


def train_speed_context(data: dict[str, Any]) -> dict[str, Any]:
    """Speed rows with their ratio, and the accuracy check per seed and per model (mean difference)."""
    speed = [{**r, "ratio": r["fast_images_per_s"] / r["reports_images_per_s"]} for r in data.get("speed") or []]
    checks = data.get("accuracy") or []
    summary = []
    for entry in dict.fromkeys(r["entry"] for r in checks):
        rows = [r for r in checks if r["entry"] == entry]
        diff, sd = _mean_sd([r["fast_acc"] - r["reports_acc"] for r in rows])
        summary.append({"entry": entry, "seeds": len(rows), "images": rows[0]["images"], "epochs": rows[0]["epochs"],
                        "reports_acc": statistics.mean(r["reports_acc"] for r in rows),
                        "fast_acc": statistics.mean(r["fast_acc"] for r in rows), "diff": diff, "diff_sd": sd})
    return {**data, "speed": speed, "accuracy": checks, "summary": summary}


def inference_context(data: dict[str, Any]) -> dict[str, Any]:
    """Rows as measured, plus the median ONNX Runtime speed-ups."""
    rows = data.get("rows") or []
    b1 = [r["speedup_batch1"] for r in rows if r.get("speedup_batch1")]
    bn = [r["speedup_batch"] for r in rows if r.get("speedup_batch")]
    return {**data, "rows": rows, "median_batch1": statistics.median(b1) if b1 else None,
            "median_batch": statistics.median(bn) if bn else None}


def perf_context(perf: dict[str, dict[str, Any]], site: Path, figures: list[plots.Job]) -> dict[str, Any]:
    """Template data for the Performance page (one section per measurement present)."""
    return {
        "flagship": flagship_context(perf["flagship"], site, figures) if "flagship" in perf else None,
        "train_speed": train_speed_context(perf["train_speed"]) if "train_speed" in perf else None,
        "inference": inference_context(perf["inference"]) if "inference" in perf else None,
    }
