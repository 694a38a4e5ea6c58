"""The Performance page: what the scripts in tests/perf measured, read from `RESULTS/perf/*.json`.

Each script writes one file with `--json` (`flagship.json` from perf_flagship.py, `train_speed.json` from
perf_train_speed.py, `reference.json` from perf_reference.py, `inference.json` from perf_inference.py); the
page shows whichever exist. A second host's measurement of the same kind sits beside it as
`<kind>-<label>.json` (`flagship-avx2.json`) and gets its own section, after the plain one: figures from two
kinds of CPU are never mixed in one table. These are not result records: they hold their own machine,
versions and load, since they are measured by hand.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import zoo
from benchmark.machine import isa_caps_in, isa_caps_text
from leaderboard import plots
from leaderboard.records import log
from zoo.errors import CifarzooError
from zoo.registry import architecture_arguments

KINDS = ("flagship", "train_speed", "reference", "inference")
PAGE = "performance.html"


def load_perf(results: Path) -> dict[str, list[dict[str, Any]]]:
    """{kind: [measurement, ...]}: `results/perf/<kind>.json` first, then `<kind>-<label>.json` by name. Each
    carries its `file` name and `anchor` (the stem, an HTML id); an unreadable file is warned about, left out."""
    found: dict[str, list[dict[str, Any]]] = {}
    folder = Path(results) / "perf"
    for kind in KINDS:
        labelled = sorted(p for p in folder.glob(f"{kind}-*.json")
                          if re.fullmatch(r"[a-z0-9-]+", p.stem[len(kind) + 1:]))  # a label fit for an HTML id
        plain = folder / f"{kind}.json"
        for path in ([plain] if plain.is_file() else []) + labelled:
            data = _read_measurement(path, kind)
            if data is not None:
                found.setdefault(kind, []).append({**data, "file": path.name, "anchor": path.stem.replace("_", "-")})
    return found


def _read_measurement(path: Path, kind: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning(f"perf/{path.name} is not readable JSON ({err}); the Performance page leaves it out.")
        return None
    found_kind = data.get("kind") if isinstance(data, dict) else None  # a list or number has no kind
    if found_kind != kind:
        log.warning(f"perf/{path.name} is not a {kind} measurement (its 'kind' is {found_kind!r}); left out.")
        return None
    return data


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def timed_beside(runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The flagship runs whose wall clock is compared with the reference's: those of a sitting (one process
    of perf_flagship.py) that also ran the reference. A VM's speed drifts between sittings (the AVX2 host's
    fp32 peak read 188 GFLOP/s one morning, 145-165 that afternoon), so runs added later by `--append` count for
    the accuracy only. Files without sittings are one sitting."""
    if not reference:
        return runs
    sittings = {r.get("sitting") for r in reference}
    return [r for r in runs if r.get("sitting") in sittings]


def flagship_summary(runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, Any]:
    """The flagship against the reference loop: mean (and sd) accuracy over every seed, mean wall clock over the
    seeds timed beside the reference (`timed_beside`), the reference's means, and the wall-clock ratio (None
    without a timed seed or a reference)."""
    acc, acc_sd = _mean_sd([r["acc"] for r in runs])
    timed = timed_beside(runs, reference)
    wall, _ = _mean_sd([r["wall_s"] for r in timed])
    ref_acc, _ = _mean_sd([r["acc"] for r in reference])
    ref_wall, _ = _mean_sd([r["wall_s"] for r in reference])
    return {"acc_mean": acc, "acc_sd": acc_sd, "timed": timed, "wall_mean": wall, "ref_acc": ref_acc,
            "ref_wall": ref_wall, "wall_ratio": wall / ref_wall if wall is not None and ref_wall else None}


def flagship_context(data: dict[str, Any], site: Path, figures: list[plots.Job]) -> dict[str, Any]:
    """Seeds, their mean and the mean time-to-accuracy curve; queues the curve's figure."""
    runs = data.get("runs") or []
    reference = data.get("reference") or []  # airbench94's recipe by the single-script loop
    summary = flagship_summary(runs, reference)
    timed = summary.pop("timed")
    curves = [r["curve"] for r in runs if r.get("curve")]
    n = min((len(c) for c in curves), default=0)
    mean_curve = [{"epoch": curves[0][i][0], "seconds": statistics.mean(c[i][1] for c in curves),
                   "acc": statistics.mean(c[i][2] for c in curves)} for i in range(n)]
    figure = None
    if curves:
        figure = f"assets/perf/{data['anchor']}.png"
        figures.append(plots.job("time_to_accuracy", {r["seed"]: r["curve"] for r in runs if r.get("curve")},
                                 site / figure))
    return {**data, **summary, "timed_seeds": [r["seed"] for r in timed],
            "sittings": any(r.get("sitting") for r in runs + reference),
            "wall_max": max((r["wall_s"] for r in timed), default=None), "curve": mean_curve, "figure": figure,
            "reference": reference, "reproduce": flagship_command(data)}


def flagship_command(data: dict[str, Any]) -> str:
    """The command lines that measure a flagship file again, from what the file says ran: one per sitting (the
    first writes the file, later ones `--append` to it), each with the kernel ISA caps its host line names (as
    environment variables), device, seeds, reference seeds, epochs, the recipe and architecture overrides
    (`--set`, against the entry's own), curve and threads; joined by ` && `."""
    runs, reference = data.get("runs") or [], data.get("reference") or []
    sittings = sorted({r.get("sitting") for r in runs + reference}, key=lambda s: s or "") or [None]
    common = _flagship_overrides(data)
    if not any(r.get("curve") for r in runs):
        common.append("--no-curve")
    if data.get("threads"):
        common.append(f"--threads {data['threads']}")
    common.append(f"--json results/perf/{data['file']}")
    caps = [isa_caps_text(caps)] if (caps := isa_caps_in(data.get("machine") or "")) else []
    device = [f"--device {data['device']}"] if data.get("device", "cpu") != "cpu" else []
    commands = []
    for i, sitting in enumerate(sittings):
        seeds = [str(r["seed"]) for r in runs if r.get("sitting") == sitting]
        ref_seeds = [str(r["seed"]) for r in reference if r.get("sitting") == sitting]
        commands.append(" ".join([*caps, "python tests/perf/perf_flagship.py", *device,
                                  *(["--seeds " + " ".join(seeds)] if seeds else []),
                                  " ".join(["--reference-seeds", *ref_seeds]), *common,
                                  *(["--append"] if i else [])]))
    return " && ".join(commands)


def _flagship_overrides(data: dict[str, Any]) -> list[str]:
    """`--epochs N` and a `--set FIELD=JSON` for each recipe field and architecture argument of the file that
    differs from its entry's own (none where the entry is not registered here: the file's recipe is then the
    only record of what ran). An argument the entry sets and the file lacks ran at the builder's default: a file
    from before the entry changed (airnet-fast's `filter_ns_steps`) still names what it ran."""
    recipe, arch = data.get("recipe") or {}, data.get("arch_kwargs") or {}
    parts = [f"--epochs {recipe['max_epochs']}"] if recipe.get("max_epochs") else []
    try:
        entry = zoo.get_entry(data.get("entry") or "")
    except CifarzooError:
        return parts
    own_recipe, own_arch = json.loads(json.dumps([entry.recipe.to_dict(), entry.arch_kwargs]))  # lists, as in files
    changed = [f"{k}={json.dumps(v)}" for k, v in recipe.items() if k != "max_epochs" and own_recipe.get(k, v) != v]
    defaults = json.loads(json.dumps(architecture_arguments(entry.architecture), default=lambda _: None))
    ran = {**{k: defaults.get(k) for k in own_arch}, **arch}
    changed += [f"{k}={json.dumps(v)}" for k, v in ran.items() if k not in own_arch or own_arch[k] != v]
    if changed:
        parts.append("--set " + " ".join(map(shlex.quote, changed)))
    return parts


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
    setups = dict.fromkeys(f"{r.get('precision', 'bf16')}{', channels_last' if r.get('channels_last', True) else ''}"
                           for r in speed)  # the fast path's layout per row: what this host's probe chose
    return {**data, "speed": speed, "accuracy": checks, "summary": summary, "fast_setup": "; ".join(setups),
            "timing": _speed_timing(speed)}


def _process_counts(rows: list[dict[str, Any]]) -> str:
    """'3 fresh processes per entry', or, where rows were re-measured with another count, which rows had which."""
    tally = Counter(r.get("processes", 1) for r in rows)
    if len(tally) == 1:
        return f"{next(iter(tally))} fresh processes per entry"
    *named, rest = [n for n, _ in sorted(tally.items(), key=lambda item: item[1])]  # the most common last
    parts = [f"{n} fresh process{'es' if n > 1 else ''} for "
             + ", ".join(r["entry"] for r in rows if r.get("processes", 1) == n) for n in named]
    return "; ".join(parts) + f", and {rest} for the other entries"


def _speed_timing(rows: list[dict[str, Any]]) -> str:
    """How the rows' rates were timed: files written before the best-of-epochs protocol timed one epoch."""
    counts = sorted({len(r["fast_epochs_images_per_s"]) // r.get("processes", 1)
                     for r in rows if r.get("fast_epochs_images_per_s")})
    if not counts:
        return "the second of two epochs, one each"
    timed = f"each side's fastest of {' or '.join(str(n) for n in counts)} timed epochs after an untimed one"
    own = sum(r.get("process") == "own" for r in rows)  # since 2026-12-07: each entry in a process of its own
    if own == len(rows) and any(r.get("processes", 1) > 1 for r in rows):  # perf_train_speed.py --processes N
        return (f"{timed} in each of {_process_counts(rows)}, one after the other, each its reports' "
                "loop and then its fast path; the fastest epoch of all")
    if own == len(rows):
        return f"{timed}; each entry in a process of its own, its reports' loop and then its fast path"
    if own:
        return f"{timed}; {own} of {len(rows)} entries each in a process of its own, the rest in one process"
    return f"{timed}; in one process, every reports' loop before the first fast path"


def inference_context(data: dict[str, Any]) -> dict[str, Any]:
    """Rows as measured, plus the median ONNX Runtime speed-ups."""
    rows = data.get("rows") or []
    b1 = [r["speedup_batch1"] for r in rows if r.get("speedup_batch1")]
    bn = [r["speedup_batch"] for r in rows if r.get("speedup_batch")]
    return {**data, "rows": rows, "median_batch1": statistics.median(b1) if b1 else None,
            "median_batch": statistics.median(bn) if bn else None}


def perf_context(perf: dict[str, list[dict[str, Any]]], site: Path, figures: list[plots.Job]) -> dict[str, Any]:
    """Template data for the Performance page: per kind, one section per measurement file present."""
    return {
        "flagships": [flagship_context(m, site, figures) for m in perf.get("flagship", [])],
        "train_speeds": [train_speed_context(m) for m in perf.get("train_speed", [])],
        "references": perf.get("reference", []),  # one row each, shown as measured
        "inferences": [inference_context(m) for m in perf.get("inference", [])],
    }
