"""The leaderboard's tables, computed with pandas from the flat run rows of `records.gather`.

One leaderboard row per (entry, profile, data fingerprint): the mean and sample standard deviation
(n-1) of test accuracy over that group's seeds. Seeds are never pooled across data copies.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmark.summary import speedup

GROUP = ["entry", "profile", "fingerprint"]
PROFILE_ORDER = {"full": 0, "quick": 1, "smoke": 3}  # sweeps and other names sit between quick and smoke

# the columns of the index table, in order; the CSV and JSON downloads carry exactly these
COLUMNS = [
    "entry", "architecture", "family", "kind", "profile", "seeds", "acc_mean", "acc_std", "test_loss",
    "report", "reported_acc", "diff_pts", "params", "flops", "torch_ms", "ort_ms", "speedup", "timing",
    "train_s", "data_source", "fingerprint", "lossy", "failed", "page",
]


def leaderboard_table(runs: pd.DataFrame, timings: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (entry, profile, fingerprint) with at least one ok run, best first within a profile.

    Latencies come from the newest uncontended timing record of the entry (`timings`: entry -> record, see
    benchmark.timings), else from the group's uncontended runs; with neither, `timing` says "contended".
    """
    ok = runs[runs["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok.loc[~ok["timing_ok"].astype(bool), ["torch_ms", "ort_ms"]] = float("nan")  # never quote a busy timing
    grouped = ok.groupby(GROUP, sort=False, dropna=False)
    table = grouped.agg(
        architecture=("architecture", "first"), family=("family", "first"), kind=("kind", "first"),
        report=("report", "first"), reported_acc=("reported_acc", "first"),
        seeds=("seed", "nunique"), acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"),
        test_loss=("test_loss", "mean"), params=("params", "first"), flops=("flops", "first"),
        torch_ms=("torch_ms", "mean"), ort_ms=("ort_ms", "mean"), train_s=("train_s", "mean"),
        data_source=("data_source", "first"), lossy=("lossy", "first"), timed=("timed", "any"),
        devices=("timing_devices", "max"), cross_device=("cross_device", "any"),
    ).reset_index()
    table["params"], table["flops"] = table["params"].astype("Int64"), table["flops"].astype("Int64")
    table["timing"] = [("bench" + (f": {d}" if d else "")) if pd.notna(t) else ("contended" if timed else "none")
                       for t, timed, d in zip(table["torch_ms"], table["timed"], table["devices"])]
    _apply_timings(table, timings or {})
    # of the means; none where the runtimes ran on different devices (a GPU against a CPU is no speed-up)
    table["speedup"] = [None if cross and timing.startswith("bench") else speedup([t], [o])
                        for t, o, timing, cross in zip(table["torch_ms"], table["ort_ms"], table["timing"],
                                                       table["cross_device"])]
    table["diff_pts"] = (table["acc_mean"] - table["reported_acc"]) * 100
    failed = runs[runs["status"] != "ok"].groupby(GROUP, dropna=False).size()
    table["failed"] = [int(failed.get(tuple(k), 0)) for k in table[GROUP].itertuples(index=False)]
    table["page"] = _pages(table)
    table["_rank"] = table["profile"].map(lambda p: PROFILE_ORDER.get(p, 2))
    table = table.sort_values(["_rank", "profile", "acc_mean", "entry"], ascending=[True, True, False, True],
                              kind="stable")
    return table[COLUMNS].reset_index(drop=True)


def _apply_timings(table: pd.DataFrame, timings: dict[str, dict[str, Any]]) -> None:
    """Latencies from an entry's newest uncontended timing record, where it has one (same network)."""
    for i, entry in enumerate(table["entry"]):
        data = timings.get(entry)
        if data is None:
            continue
        t = data["timing"]
        table.loc[i, "torch_ms"] = t["torch"]["batch1_ms"]["p50"]
        table.loc[i, "ort_ms"] = t["onnxruntime"]["batch1_ms"]["p50"] if t["onnxruntime"] else float("nan")
        table.loc[i, "timing"] = f"timed {str(data['measured_at'])[:10]} on {data['machine']['cpu']}"


def _pages(table: pd.DataFrame) -> list[str]:
    """Entry page paths; the fingerprint joins the name only where one entry+profile has several."""
    copies = table.groupby(["entry", "profile"])["fingerprint"].transform("nunique")
    return [f"entries/{e}--{p}" + (f"--{str(f)[:8]}" if n > 1 else "") + ".html"
            for e, p, f, n in zip(table["entry"], table["profile"], table["fingerprint"], copies)]


def augmentation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Architectures with both a "norm" and an "aug" row (same profile and data): ours and the report's."""
    cols = ["architecture", "profile", "fingerprint", "acc_mean", "acc_std", "seeds", "reported_acc", "page",
            "entry", "report"]
    pairs = pd.merge(table.loc[table["kind"] == "norm", cols], table.loc[table["kind"] == "aug", cols],
                     on=["architecture", "profile", "fingerprint"], suffixes=("_norm", "_aug"))
    pairs["gain_pts"] = (pairs["acc_mean_aug"] - pairs["acc_mean_norm"]) * 100
    pairs["reported_gain_pts"] = (pairs["reported_acc_aug"] - pairs["reported_acc_norm"]) * 100
    pairs["_rank"] = pairs["profile"].map(lambda p: PROFILE_ORDER.get(p, 2))
    return pairs.sort_values(["_rank", "profile", "architecture"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def failures_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that failed or were skipped, with their reasons."""
    bad = runs.loc[runs["status"] != "ok",
                   ["entry", "seed", "profile", "status", "reason", "run_id", "traceback_file", "file"]]
    return bad.sort_values(["entry", "profile", "seed"], kind="stable").reset_index(drop=True)


def data_sources(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Each data copy the records come from, with how many runs used it."""
    out = []
    for (fingerprint, source), group in runs.groupby(["fingerprint", "data_source"], sort=True, dropna=False):
        out.append({"fingerprint": fingerprint, "source": source, "runs": len(group),
                    "description": group["data_description"].iloc[0], "lossy": bool(group["lossy"].any())})
    return out


def to_plain(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN becomes None, numpy scalars become Python numbers."""
    rows = []
    for row in table.to_dict(orient="records"):
        rows.append({k: _plain(v) for k, v in row.items()})
    return rows


def _plain(value: Any) -> Any:
    if value is pd.NA or value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value
