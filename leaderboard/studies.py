"""Sweep study pages: one per study named in the records (`record["sweep"]["study"]`).

Each page has the trials table (sortable), validation accuracy against each swept parameter, and the best
configuration with its test result. Selection is by validation accuracy only, as in `cifarzoo sweep`;
ties go to the earlier trial. Trial records are left out of the main leaderboard table (their
configurations differ from the entry's), so the index links the studies instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

STATUS = {"ok": "complete", "failed": "failed", "skipped": "skipped"}


def sweep_run_ids(records: dict[str, dict[str, Any]]) -> set[str]:
    """Run ids of the records that are sweep trials (kept off the main leaderboard table)."""
    return {rid for rid, r in records.items() if r.get("sweep")}


def study_trials(records: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """study name -> its trials (one flat dict per record), best validation accuracy first."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for rid, r in records.items():
        sweep = r.get("sweep")
        if not sweep or not sweep.get("study"):
            continue
        accs = [row["val_acc"] for row in r.get("history") or [] if row.get("val_acc") is not None]
        test = r.get("test") or {}
        studies.setdefault(str(sweep["study"]), []).append({
            "trial": sweep.get("trial"), "params": sweep.get("params") or {}, "status": r["status"],
            "pruned": r["status"] == "skipped" and "pruned" in (r.get("reason") or ""),
            "val_acc": max(accs) if accs else None, "test_acc": test.get("accuracy"), "test_loss": test.get("loss"),
            "epochs": len(r.get("history") or []), "train_s": (r.get("durations") or {}).get("train_s"),
            "run_id": rid, "reason": r.get("reason"), "record": r,
        })
    for trials in studies.values():
        trials.sort(key=lambda t: (t["status"] != "ok", -(t["val_acc"] or 0.0), t["trial"] or 0))
    return studies


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ok trial with the best validation accuracy (the earlier trial of equals); never the test split."""
    ok = [t for t in trials if t["status"] == "ok" and t["val_acc"] is not None]
    return min(ok, key=lambda t: (-t["val_acc"], t["trial"] or 0)) if ok else None


def page_name(study: str) -> str:
    return f"studies/{re.sub(r'[^A-Za-z0-9_.-]', '_', study)}.html"


def render_studies(records: dict[str, dict[str, Any]], site: Path, env: Any,
                   page_of: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    """Write every study page (and its figure) under `site`; returns one summary per study for the index."""
    summaries = []
    for study, trials in sorted(study_trials(records).items()):
        page = page_name(study)
        names = sorted({n for t in trials for n in t["params"]})
        best = best_trial(trials)
        first = (best or trials[0])["record"]
        figure = f"assets/studies/{Path(page).stem}/val_acc.png"
        plotted = plot_val_acc(trials, names, best, site / figure)
        summary = {
            "study": study, "page": page, "entry": first["entry"]["name"], "profile": first["profile"],
            "trials": len(trials), "ok": sum(t["status"] == "ok" for t in trials),
            "names": names, "best": best,
        }
        entry_page = (page_of or {}).get((summary["entry"], summary["profile"]))
        html = env.get_template("study.html").render(
            root="../", s=summary, trials=trials, names=names, best=best, data=first["data"],
            figure=f"../{figure}" if plotted else None, entry_page=f"../{entry_page}" if entry_page else None,
            seed=first["seed"],
            smoke_note=env.globals.get("smoke_note") if first["profile"] == "smoke" else "")
        path = site / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        summaries.append(summary)
    return summaries


def plot_val_acc(trials: list[dict[str, Any]], names: list[str], best: dict[str, Any] | None, path: Path) -> bool:
    """Validation accuracy against each parameter, one panel per parameter; False when nothing to plot."""
    from leaderboard import plots  # matplotlib, the site's style

    plt = plots.plt
    points = [t for t in trials if t["val_acc"] is not None and t["status"] in ("ok", "skipped")]
    if not points or not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.6, 3.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        values = [t["params"].get(name) for t in points]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = [float(v) for v in values]
            if min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:  # categories in order of first appearance by value text
            cats = sorted({str(v) for v in values})
            xs = [cats.index(str(v)) for v in values]
            ax.set_xticks(range(len(cats)), cats)
        for x, t in zip(xs, points):
            is_best = best is not None and t["run_id"] == best["run_id"]
            colour = plots.ORANGE if is_best else plots.BLUE
            ax.scatter([x], [t["val_acc"] * 100], s=90 if is_best else 28, zorder=3, marker="*" if is_best else "o",
                       edgecolors=colour, facecolors=colour if t["status"] == "ok" else "none")  # hollow: pruned
        ax.set_xlabel(name)
    axes[0][0].set_ylabel("best validation accuracy (%)")
    plots._margins(fig, 0.7, 0.2, 0.2, 0.6, wspace=0.25)
    plots._save(fig, path)
    return True
