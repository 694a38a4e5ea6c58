"""Build the static site: gather and validate every record first, then render every page through one
Jinja environment into a fresh folder that replaces `out` only when it is complete.

`strict`: any warning (a skipped record, a missing traceback file, a data source matching no record)
fails the build with a CifarzooError *before* the output folder is touched, so a strict build never
publishes a site that leaves records out.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, select_autoescape

from benchmark.timings import newest_per_entry, newest_per_machine, read_timings
from leaderboard import format as fmt
from leaderboard import perf, plots, repro, samples, sweeps, tables
from leaderboard.pages import LOSSY_NOTE, SMOKE_NOTE, entry_context
from leaderboard.records import Gathered, collecting, gather, log
from zoo.errors import CifarzooError
from zoo.files import clean_stale, inside, replace_dir

HERE = Path(__file__).parent
MARKER = ".cifarzoo-site"  # written into every built site; only such folders are ever replaced


class StrictBuildError(CifarzooError):
    """A --strict build stopped on warnings; they are in `.warnings`."""

    def __init__(self, warnings: list[str]) -> None:
        super().__init__(f"--strict: {len(warnings)} warning(s), nothing was built; fix the records named "
                         "above or build without --strict.")
        self.warnings = warnings


@dataclass
class BuildReport:
    """What a build wrote and what it skipped."""

    out: Path
    index: Path
    pages: list[Path]  # entry pages
    studies: list[Path]  # sweep study pages
    records: int  # usable records read
    ok: int
    not_ok: int  # failed or skipped runs (listed on the index)
    rows: int  # leaderboard rows
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_site(results: Path, out: Path, strict: bool = False, data_source: str | Any | None = None,
               warn: Callable[[str], None] | None = None) -> BuildReport:
    """Build the leaderboard from the records under `results` into `out`; `warn` hears each warning.

    `data_source` (a source string, or an already loaded `benchmark.data.Dataset`) supplies the sample
    test images; records never hold images.
    """
    started = time.perf_counter()
    results, out = Path(results), Path(out)
    with collecting(warn) as warnings:  # everything logged while gathering is what --strict counts
        gathered = gather(results)
        dataset = _dataset(data_source, gathered)
        measured = perf.load_perf(results)
    if strict and warnings:
        raise StrictBuildError(warnings)
    check_out(out, results)

    building = out.parent / f".{out.name}.building-{os.getpid()}"
    try:
        clean_stale(out.parent)  # builds and swapped-out sites of killed processes
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        pages, studies = _render(gathered, building, dataset, data_source, measured)
        replace_dir(building, out)
    except OSError as err:
        raise _unwritable(err, out) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    runs = gathered.runs
    n_ok = int((runs["status"] == "ok").sum())
    return BuildReport(out=out, index=out / "index.html", pages=[out / p for p in pages],
                       studies=[out / p for p in studies],
                       records=len(runs), ok=n_ok, not_ok=len(runs) - n_ok, rows=len(pages),
                       warnings=warnings, seconds=time.perf_counter() - started)


def _dataset(source: str | Any | None, gathered: Gathered) -> Any:
    """Load `source` for sample images if given; warn when it matches no record's data."""
    if source is None:
        return None
    dataset = samples.load_dataset(str(source)) if isinstance(source, str | Path) else source
    if dataset.fingerprint not in set(gathered.runs["fingerprint"]):
        log.warning(f"data source {_name(source)} (fingerprint {dataset.fingerprint}) matches no record's data; "
             "sample images are left out.")
    return dataset


def check_out(out: Path, results: Path) -> None:
    """CifarzooError unless `out` can take a site: new, empty, or a site cifarzoo built."""
    out_abs, results_abs = out.resolve(), results.resolve()
    if out_abs == results_abs or out_abs in results_abs.parents:
        raise CifarzooError(f"output folder '{out}' contains the results folder '{results}'; pass --out "
                            "with a separate folder.")
    if out.exists() and not out.is_dir():
        raise CifarzooError(f"output '{out}' is a file; pass --out with a folder.")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise CifarzooError(f"output folder '{out}' is not empty and holds no cifarzoo site; pass --out "
                            "with a new or empty folder (a build replaces its whole output folder).")


def _unwritable(err: OSError, out: Path) -> Exception:
    """A site that cannot be written is the user's to fix: one sentence; the old site is still in place."""
    import errno

    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return CifarzooError(f"the disk is full while building the site {out}; the previous site (if any) is "
                             "unchanged: free some space and build again.")
    if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return CifarzooError(f"cannot write the site next to {out} (read-only or permission denied); pass --out "
                             "with a writable folder.")
    return err


class _Missing(ChainableUndefined):
    """A key a record lacks: renders as an em dash, so one sparse record cannot break a page."""

    def __str__(self) -> str:
        return fmt.DASH


def environment() -> Environment:
    """The one Jinja environment every page is rendered with."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(("html",)),
                      undefined=_Missing, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt.FILTERS)
    env.globals.update(missing=fmt.missing, lossy_note=LOSSY_NOTE, smoke_note=SMOKE_NOTE)
    return env


def _render(gathered: Gathered, site: Path, dataset: Any, data_source: Any,
            measured: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Write every page, figure, download and copied file of the site; returns the entry and study pages."""
    trial = sweeps.is_trial(gathered.runs)
    runs, trials = gathered.runs[~trial], gathered.runs[trial]
    timings = read_timings(gathered.results) if gathered.results is not None else []
    table = tables.leaderboard_table(runs, newest_per_entry(timings))
    pairs = tables.augmentation_table(table)
    failures = tables.failures_table(runs)
    env = environment()
    shutil.copytree(HERE / "static", site / "static")
    (site / MARKER).write_text("built by `cifarzoo leaderboard build`; the next build replaces this folder\n")

    images = _sample_images(gathered, table, site, dataset)
    rows = tables.to_plain(table)
    figures: list[plots.Job] = []
    if len(table):
        figures.append(plots.job("tradeoff", table, site / "assets" / "index" / "tradeoff.png"))
    if len(pairs):
        figures.append(plots.job("augmentation", pairs, site / "assets" / "index" / "augmentation.png"))
    pages = []
    for row in rows:
        records = [gathered.records[r] for r in runs.loc[(runs["status"] == "ok") & (runs["entry"] == row["entry"])
                   & (runs["profile"] == row["profile"]) & (runs["fingerprint"] == row["fingerprint"]), "run_id"]]
        note = _sample_note(dataset, data_source, row["fingerprint"])
        context = entry_context(row, records, site, images.get(row["fingerprint"]), note, figures,
                                newest_per_machine(timings, row["entry"]))
        _write(inside(site, row["page"]), env.get_template("entry.html").render(root="../", **context))
        pages.append(row["page"])
    studies = sweeps.studies_table(trials)
    for study in studies:
        records = [gathered.records[r] for r in trials.loc[trials["study"] == study["study"]].sort_values("trial")
                   ["run_id"]]
        context = sweeps.study_context(study, records, site, figures)
        _write(inside(site, study["page"]), env.get_template("sweep.html").render(root="../", **context))
    _write(site / repro.PAGE, env.get_template("reproduction.html").render(
        root="", **repro.repro_context(_registered_entries(), table, gathered.results or Path("."))))
    if measured:
        context = perf.perf_context(measured, site, figures)
        _write(site / perf.PAGE, env.get_template("performance.html").render(root="", **context))

    plots.draw(figures)
    failed = _copy_tracebacks(gathered, failures, site)
    _write(site / "leaderboard.csv", table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    _write(site / "leaderboard.json", json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    page_of = {(r["entry"], r["profile"]): r["page"] for r in rows}
    html = env.get_template("index.html").render(
        root="", rows=rows, pairs=tables.to_plain(pairs), failures=failed, page_of=page_of,
        studies=studies, n_trials=len(trials), perf_page=perf.PAGE if measured else None, repro_page=repro.PAGE,
        default_profile="full" if "full" in set(table["profile"]) else "",
        sources=tables.data_sources(gathered.runs[gathered.runs["fingerprint"].notna()]),
        several_sources=table["fingerprint"].nunique() > 1, n_records=len(gathered.runs),
        options={k: sorted(set(table[k])) for k in ("family", "kind", "profile")},
        built_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    _write(site / "index.html", html)
    return pages, [s["page"] for s in studies]


def _registered_entries() -> list[Any]:
    import zoo

    return [zoo.get_entry(name) for name in zoo.list_models()]


def _sample_images(gathered: Gathered, table: Any, site: Path, dataset: Any) -> dict[str, dict[int, str]]:
    """fingerprint -> {test index -> site-relative image path}, for the data copy given with --data."""
    if dataset is None or dataset.fingerprint not in set(table["fingerprint"]):
        return {}
    indices = [s["index"] for r in gathered.records.values() if r["status"] == "ok"
               and not r["sweep"] and r["data"]["fingerprint"] == dataset.fingerprint
               for s in (r["test"].get("samples") or [])]
    folder = f"samples/{dataset.fingerprint[:16]}"
    names = samples.write_images(dataset.x_test, indices, site / folder)
    return {dataset.fingerprint: {i: f"{folder}/{n}" for i, n in names.items()}}


def _name(source: Any) -> str:
    return str(source) if isinstance(source, str | Path) else str(getattr(source, "source", source))


def _sample_note(dataset: Any, data_source: Any, fingerprint: str) -> str:
    if dataset is None:
        return ("Images are not stored in records; build the site with --data SOURCE (the data copy these runs "
                "used) to show them.")
    if dataset.fingerprint != fingerprint:
        return (f"No images: the data given with --data ({_name(data_source)}, fingerprint {dataset.fingerprint}) is "
                f"not the copy these runs used (fingerprint {fingerprint}).")
    return ""


def _copy_tracebacks(gathered: Gathered, failures: Any, site: Path) -> list[dict[str, Any]]:
    """Failure rows for the index, with each traceback file copied into site/tracebacks/. Only a plain file
    beside its record is copied (the schema's name check already refused names with folders in them)."""
    rows = tables.to_plain(failures)
    for row in rows:
        row["traceback"] = None
        if row["traceback_file"]:
            folder = gathered.paths[row["run_id"]].parent
            source = folder / row["traceback_file"]
            if source.is_file() and not source.is_symlink() and source.resolve().parent == folder.resolve():
                target = inside(site, f"tracebacks/{row['run_id']}.txt")
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(source, target)
                row["traceback"] = f"tracebacks/{row['run_id']}.txt"
    return rows


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
