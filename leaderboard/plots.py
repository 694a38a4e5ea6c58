"""Every figure on the site, drawn with matplotlib's Agg backend and written as PNG files.

Each function draws one figure, writes it to `path` and closes it (a build draws dozens).
`draw` runs a list of queued figures, in worker processes where that pays.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, and no GUI toolkit import
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 100
INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
BLUE, ORANGE = "#2563eb", "#ea580c"
PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
           "#4b5563", "#65a30d"]
MARKERS = {"full": "o", "quick": "s", "smoke": "X"}

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK, "axes.titlecolor": INK, "xtick.color": MUTED, "ytick.color": MUTED,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": GRID,
    "grid.linewidth": 0.8, "legend.frameon": False, "legend.fontsize": 8, "svg.hashsalt": "cifarzoo",
})


def _margins(fig: Any, left: float, right: float, top: float, bottom: float, **spacing: float) -> None:
    """Fixed margins in inches: far cheaper than tight or constrained layout, which redraw the figure."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, **spacing)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def tradeoff(table: pd.DataFrame, path: Path) -> None:
    """Accuracy against batch-1 PyTorch latency and against parameters (log x), one labelled point per row."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    families = sorted(table["family"].unique())
    several_profiles = table["profile"].nunique() > 1
    panels = ((axes[0], "torch_ms", "PyTorch batch-1 latency, p50 (ms, log scale)", _tick_ms),
              (axes[1], "params", "parameters (log scale)", _tick_count))
    for ax, column, label, tick in panels:
        rows = table[table[column].notna() & table["acc_mean"].notna()]
        for row in rows.itertuples():
            color = PALETTE[families.index(row.family) % len(PALETTE)]
            x, y = float(getattr(row, column)), row.acc_mean * 100
            yerr = 0 if pd.isna(row.acc_std) else row.acc_std * 100
            ax.errorbar(x, y, yerr=yerr, fmt=MARKERS.get(row.profile, "D"), color=color, ms=7, capsize=3,
                        mfc="white" if row.profile == "smoke" else color, mew=1.5)
            name = f"{row.entry} ({row.profile})" if several_profiles else row.entry
            ax.annotate(name, (x, y), xytext=(6, 4), textcoords="offset points", fontsize=7.5, color=INK)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        if len(rows):  # room on the right for the labels, and plain tick labels (0.5, 1, 2 ms; 1M, 2M)
            low, high = float(rows[column].min()), float(rows[column].max())
            ax.set_xlim(low / 1.25, high * max(1.8, (high / low) ** 0.35))
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _, f=tick: f(v)))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax.text(0.5, 0.5, "no timed rows", transform=ax.transAxes, ha="center", color=MUTED)
    axes[0].set_ylabel("test accuracy (%)")
    handles = [plt.Line2D([], [], ls="", marker="o", color=PALETTE[i % len(PALETTE)], label=f)
               for i, f in enumerate(families)]
    handles += [plt.Line2D([], [], ls="", marker=MARKERS.get(p, "D"), color=MUTED, mfc="white" if p == "smoke"
                           else MUTED, label=f"profile {p}") for p in sorted(table["profile"].unique())]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), bbox_to_anchor=(0.5, 0.0))
    _margins(fig, left=0.65, right=0.2, top=0.15, bottom=0.95, wspace=0.05)
    _save(fig, path)


def _tick_ms(value: float) -> str:
    return f"{value:g}"


def _tick_count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def augmentation(pairs: pd.DataFrame, path: Path) -> None:
    """Per architecture: our accuracy without and with augmentation, and the report's numbers as ticks."""
    labels = [a if pairs["profile"].nunique() == 1 else f"{a} ({p})"
              for a, p in zip(pairs["architecture"], pairs["profile"])]
    y = np.arange(len(pairs))
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(pairs) + 1.0))
    for offset, kind, color, name in ((-0.2, "norm", "#93c5fd", "ours, normalisation only"),
                                      (0.2, "aug", BLUE, "ours, augmented")):
        values = pairs[f"acc_mean_{kind}"] * 100
        ax.barh(y + offset, values, 0.38, color=color, label=name)
        for yy, v in zip(y + offset, values):
            ax.text(v - 1, yy, f"{v:.1f}", va="center", ha="right", fontsize=7.5,
                    color="white" if kind == "aug" else INK)
        known = pairs[f"reported_acc_{kind}"].notna().to_numpy()
        ax.scatter(pairs[f"reported_acc_{kind}"][known] * 100, (y + offset)[known], marker="|", s=260,
                   color=INK, zorder=3, label="the report's number" if kind == "norm" else None)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="y", visible=False)
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda i: names[i].startswith("the report"))
    ax.legend([handles[i] for i in order], [names[i] for i in order], loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=3)
    _margins(fig, left=0.3 + 0.075 * max(map(len, labels)), right=0.25, top=0.4, bottom=0.5)
    _save(fig, path)


def curves(histories: dict[int, list[dict[str, Any]]], path: Path) -> None:
    """Training (solid) and validation (dashed) loss and accuracy per epoch, one colour per seed."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, (seed, history) in enumerate(sorted(histories.items())):
        color = PALETTE[i % len(PALETTE)]
        frame = pd.DataFrame(history)
        for ax, key, scale in ((loss_ax, "loss", 1), (acc_ax, "acc", 100)):
            for split, style in (("train", "-"), ("val", "--")):
                column = f"{split}_{key}"
                if column in frame and frame[column].notna().any():
                    ax.plot(frame["epoch"], frame[column] * scale, style, color=color, marker=".",
                            label=f"seed {seed}, {'training' if split == 'train' else 'validation'}")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    _margins(fig, left=0.6, right=2.3, top=0.3, bottom=0.5, wspace=0.25)
    _save(fig, path)


def time_unit(longest_s: float) -> tuple[int, str]:
    """(seconds per unit, unit name) for a time axis reaching `longest_s`: a GPU's whole run is seconds, a
    CPU's tens of minutes, and each should read in its own unit."""
    return (60, "minutes") if longest_s >= 120 else (1, "seconds")


def time_to_accuracy(curves: dict[int, list[list[float]]], path: Path) -> None:
    """Test accuracy against training seconds, one line per seed ([epoch, seconds, accuracy] points)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    scale, unit = time_unit(max((p[1] for points in curves.values() for p in points), default=0.0))
    for i, (seed, points) in enumerate(sorted(curves.items())):
        _, seconds, acc = zip(*points)
        ax.plot(np.array(seconds) / scale, np.array(acc) * 100, "-", marker=".", color=PALETTE[i % len(PALETTE)],
                label=f"seed {seed}")
    ax.set(xlabel=f"training time ({unit})", ylabel="test accuracy, with TTA (%)", title="Time to accuracy")
    ax.legend(loc="lower right")
    _margins(fig, left=0.6, right=0.2, top=0.3, bottom=0.5)
    _save(fig, path)


def confusion(matrix: list[list[int]], classes: list[str], title: str, path: Path) -> None:
    """Counts, rows = true class; the colour is the row share so rare mistakes still show."""
    cm = np.asarray(matrix, dtype=float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    big = cm.max() >= 1000
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6.5 if big else 7.5,
                    color="white" if share[i, j] > 0.55 else INK)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    _margins(fig, left=1.0, right=0.3, top=0.3, bottom=1.0)
    _save(fig, path)


def per_class(scores: dict[str, list[float]], classes: list[str], path: Path) -> None:
    """Precision, recall and F1 per class as grouped bars."""
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(10, 3.3))
    for k, (metric, color) in enumerate((("precision", "#93c5fd"), ("recall", BLUE), ("f1", ORANGE))):
        ax.bar(x + (k - 1) * 0.27, np.asarray(scores[metric]) * 100, 0.26, color=color,
               label="F1" if metric == "f1" else metric)
    ax.set_xticks(x, classes)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
    _margins(fig, left=0.6, right=0.1, top=0.35, bottom=0.35)
    _save(fig, path)


def roc(fpr: list[list[float]], tpr: list[list[float]], auc: list[float], classes: list[str],
        path: Path) -> None:
    """One-vs-rest ROC curve per class, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(6.8, 4.5))
    for i, name in enumerate(classes):
        ax.plot(fpr[i], tpr[i], color=PALETTE[i % len(PALETTE)], lw=1.4, label=f"{name} (AUC {auc[i]:.3f})")
    ax.plot([0, 1], [0, 1], ":", color=MUTED, lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_aspect("equal")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    _margins(fig, left=0.6, right=2.1, top=0.15, bottom=0.5)
    _save(fig, path)


def calibration(confidence: list[float], accuracy: list[float], count: list[int], ece: float | None,
                path: Path) -> None:
    """Reliability diagram: accuracy of each confidence bin against the diagonal, bin sizes below."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.2, 5), sharex=True, height_ratios=(3, 1))
    conf, acc, n = (np.asarray(v, dtype=float) for v in (confidence, accuracy, count))
    used = n > 0
    ax.plot([0, 1], [0, 1], ":", color=MUTED, lw=1, label="perfect calibration")
    ax.plot(conf[used], acc[used], "o-", color=BLUE, label="this model")
    ax.set(ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Reliability" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left")
    hist.bar(conf, n, width=0.8 / max(len(conf), 1), color="#93c5fd")
    hist.set(xlabel="mean confidence in bin", ylabel="images")
    hist.grid(axis="x", visible=False)
    _margins(fig, left=0.65, right=0.15, top=0.35, bottom=0.5, hspace=0.08)
    _save(fig, path)


def sweep(trials: list[dict[str, Any]], names: list[str], path: Path) -> None:
    """A study: best validation accuracy per trial (and the running best), then against each parameter."""
    done = [t for t in trials if t["val_acc"] is not None and t["trial"] is not None]
    shown = names[:3]  # more panels would be too small to read
    fig, axes = plt.subplots(1, 1 + len(shown), figsize=(3.6 * (1 + len(shown)), 3.2), sharey=True,
                             squeeze=False)
    axes = axes[0]
    done.sort(key=lambda t: t["trial"])
    x = [t["trial"] for t in done]
    y = [t["val_acc"] * 100 for t in done]
    colors = [BLUE if t["status"] == "ok" else MUTED for t in done]
    axes[0].scatter(x, y, c=colors, s=22, zorder=3)
    axes[0].step(x, np.maximum.accumulate(y), where="post", color=ORANGE, lw=1.3, label="best so far")
    axes[0].set(xlabel="trial", ylabel="best validation accuracy (%)")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(loc="lower right")
    for ax, name in zip(axes[1:], shown):
        values = [t["params"].get(name) for t in done]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            ax.scatter(values, y, c=colors, s=22, zorder=3)
            positive = all(v > 0 for v in values)
            if positive and max(values) / min(values) >= 20:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _tick_ms(v)))
            ax.margins(x=0.08)
        else:
            labels = sorted({str(v) for v in values})
            ax.scatter([labels.index(str(v)) for v in values], y, c=colors, s=22, zorder=3)
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
    _margins(fig, left=0.6, right=0.2, top=0.15, bottom=0.55, wspace=0.08)
    _save(fig, path)


FIGURES = (tradeoff, augmentation, curves, time_to_accuracy, confusion, per_class, roc, calibration, sweep)
Job = functools.partial  # a figure function of this module with all its arguments, the output path last


def job(name: str, *args: Any) -> Job:
    """The figure function `name` of this module, bound to its arguments (an unknown name fails here)."""
    figure = {f.__name__: f for f in FIGURES}[name]
    return functools.partial(figure, *args)


def draw(jobs: list[Job], workers: int | None = None) -> None:
    """Draw every queued figure; forked workers share the cores (a figure costs ~0.1-0.2 s of CPU).

    $CIFARZOO_SITE_WORKERS sets the number of workers (1: draw in this process, no fork).
    """
    workers = workers or int(os.environ.get("CIFARZOO_SITE_WORKERS") or 0) or os.cpu_count() or 1
    workers = min(workers, len(jobs), 8)
    if workers < 2 or len(jobs) < 6 or sys.platform != "linux":  # fork is cheap only on Linux
        for job in jobs:
            _run(job)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_run, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _run(job: Job) -> None:
    job()
