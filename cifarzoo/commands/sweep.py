"""`cifarzoo sweep`: grid or random hyperparameter search on Optuna, `sweep show STUDY [--promote]`.

`cifarzoo sweep ENTRY ...` is short for `cifarzoo sweep run ENTRY ...`.
"""

from __future__ import annotations

from pathlib import Path

import click

from cifarzoo.commands._common import (
    command_line,
    device_option,
    profile_option,
    progress_option,
    resolve_device,
    results_option,
)
from cifarzoo.commands._options import data_option
from zoo.errors import CifarzooError

storage_option = click.option(
    "--storage", metavar="URL", default=None,
    help="Optuna storage of the study [default: sqlite:///<results>/sweeps.db]; any database URL Optuna accepts "
    "(e.g. postgresql://user@host/db) lets workers on several machines share one study.")


class SweepGroup(click.Group):
    """A group whose first word, when it is no subcommand (an entry name or an option), means `run`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=SweepGroup)
def sweep() -> None:
    """Hyperparameter search: `sweep ENTRY --param NAME=SPEC ...` runs one, `sweep show STUDY` ranks it.

    \b
    SPEC: a list 32,64,128 (--grid tries every combination) or, with --random N,
    a range uniform:LO:HI, loguniform:LO:HI or int:LO:HI.
    NAME: any recipe field (lr, batch_size, weight_decay, augment, ...) or any argument
    of the entry's architecture (hidden, depth, ...).
    """


@sweep.command()
@click.argument("entry", required=False)
@click.option("--param", "params", multiple=True, metavar="NAME=SPEC", help="A parameter to search (repeatable).")
@click.option("--preset", metavar="NAME", help="A published grid, e.g. report000-tinyvgg (see `sweep presets`).")
@click.option("--grid", is_flag=True, help="Every combination of the lists (the default when all SPECs are lists).")
@click.option("--random", "random_n", type=int, metavar="N", help="N random trials (ranges allowed).")
@click.option("--study", metavar="NAME", help="Study name [default: the preset, or ENTRY-grid / ENTRY-random].")
@storage_option
@data_option
@profile_option
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of every trial's run (split, init, batches) and of the random sampler.")
@results_option
@click.option("--max-trials", type=int, default=50, show_default=True,
              help="Refuse a search larger than this unless --yes.")
@click.option("--yes", is_flag=True, help="Run a search larger than --max-trials.")
@click.option("--n-trials", type=int, metavar="K", help="Start at most K trials in this process (resume later).")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Stop trials whose validation accuracy falls below the median of earlier trials (from epoch 3).")
@click.option("--site", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also build the leaderboard into this folder at the end (with the study's page).")
@click.option("--grace", type=click.IntRange(3, 3600), default=60, show_default=True, metavar="SECONDS",
              help="A trial whose worker sent no heartbeat for this long was killed: another worker reruns it.")
@device_option
@progress_option
def run(entry: str | None, params: tuple[str, ...], preset: str | None, grid: bool, random_n: int | None,
        study: str | None, storage: str | None, data: str, profile: str, seed: int, results: Path, max_trials: int,
        yes: bool, n_trials: int | None, prune: bool, site: Path | None, grace: int, device: str,
        progress: str) -> None:
    """Search hyperparameters of ENTRY; every trial is a normal run with a normal result record.

    Rerunning the same command resumes the study (finished trials are never repeated); running it in
    several processes against one --storage shares the work.
    """
    from benchmark.data import load_dataset
    from benchmark.records import check_results_dir
    from benchmark.runner import RunContext
    from benchmark.sweep import default_storage, define_sweep, format_rows, open_storage, run_sweep, study_rows

    if n_trials is not None and n_trials < 1:
        raise CifarzooError(f"--n-trials needs a positive number, not {n_trials}.")
    plan = define_sweep(entry, list(params), study=study, preset=preset, grid=grid, random=random_n,
                        profile=profile, seed=seed, max_trials=max_trials, yes=yes)
    check_results_dir(results)
    url = storage or default_storage(results)
    opened = open_storage(url, grace_s=grace)  # before the data: a bad URL fails in a second
    dataset = load_dataset(data)
    ctx = RunContext(results, dataset, resolve_device(device), command_line(), progress)
    quiet = progress == "quiet"
    what = f"{plan.n} grid points" if plan.mode == "grid" else f"{plan.n} random trials"
    if not quiet:
        click.echo(f"sweep {plan.study}: {plan.entry}, {what} over {', '.join(p.name for p in plan.params)}; "
                   f"profile {profile}, data: {dataset.description}", err=True)
    try:
        result = run_sweep(plan, opened, dataset, ctx, n_trials=n_trials, prune=prune,
                           echo=(lambda line: None) if quiet else (lambda line: click.echo(line, err=True)))
    except KeyboardInterrupt:
        click.echo(f"sweep {plan.study} interrupted: rerun the same command to resume (finished trials are kept; "
                   "the interrupted one starts again from its last epoch).", err=True)
        raise
    rows = study_rows(result.study)
    click.echo(format_rows(rows, plan.names))
    _summary(rows, plan.study, _where(storage, results), result.pending)
    if site is not None:
        from leaderboard.build import build_site

        click.echo(f"leaderboard: {build_site(results, site).index}")
    if result.ran and not any(r.state == "complete" for r in rows):
        raise SystemExit(1)


def _where(storage: str | None, results: Path) -> str:
    """The options that find the study again (for the hints printed after a sweep)."""
    from benchmark.sweep.study import masked

    if storage:
        return f" --storage '{masked(storage)}'"
    return "" if results == Path("results") else f" --results {results}"


def _summary(rows: list, study: str, where: str, pending: int) -> None:
    from benchmark.sweep import best_row

    best = best_row(rows)
    if best is not None:
        values = " ".join(f"{k}={v}" for k, v in best.params.items())
        test = f" (test {best.test_acc:.4f}, not used to select)" if best.test_acc is not None else ""
        click.echo(f"best: trial {best.number} [{values}] val acc {best.val_acc:.4f}{test}")
    if pending:
        click.echo(f"{pending} trial(s) still to run (in other workers, or rerun this command to resume).")
    click.echo(f"show it again with: cifarzoo sweep show {study}{where}; promote the best with: "
               f"cifarzoo sweep show {study}{where} --promote")


@sweep.command()
@click.argument("study")
@storage_option
@results_option
@click.option("--promote", metavar="[NAME]", is_flag=False, flag_value="", default=None,
              help="Register the best configuration as a new entry (default name <architecture>-<study>).")
@click.option("--force", is_flag=True, help="With --promote: replace a promoted entry of the same name.")
def show(study: str, storage: str | None, results: Path, promote: str | None, force: bool) -> None:
    """Print the trials of STUDY ranked by validation accuracy (test accuracy is shown, never used)."""
    from benchmark.sweep import default_storage, format_rows, load_study, open_storage, study_rows

    url = storage or default_storage(results)
    _require_sqlite_file(url)
    found = load_study(study, open_storage(url))
    definition = found.user_attrs.get("cifarzoo") or {}
    rows = study_rows(found)
    if definition:
        click.echo(f"study {study}: {definition['entry']}, {definition['mode']} over "
                   + ", ".join(f"{n}={d['spec']}" for n, d in definition["params"].items())
                   + f"; profile {definition['profile']}, seed {definition['seed']}, data {definition['data_source']}")
    names = sorted(definition.get("params") or {r for row in rows for r in row.params})
    click.echo(format_rows(rows, names))
    if promote is None:
        _summary(rows, study, _where(storage, results), 0)
    if promote is not None:
        from benchmark.sweep import promote as promote_best

        done = promote_best(study, url, promote or None, force=force)
        click.echo(f"promoted trial {done.trial} (val acc {done.val_acc:.4f}) as entry {done.entry.name} "
                   f"({done.path}); run it with: cifarzoo bench {done.entry.name}")


@sweep.command()
def presets() -> None:
    """List the preset grids (the reports' own hyperparameter searches)."""
    from benchmark.sweep import PRESETS

    for name, preset in PRESETS.items():
        click.echo(f"{name:<20} {preset.entry:<15} {' '.join(preset.params)}  ({preset.where})")


def _require_sqlite_file(url: str) -> None:
    """`show` never creates a database: a missing SQLite file is a clear error, not an empty study list."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:") and not Path(url[len(prefix):]).exists():
        raise CifarzooError(f"no sweep storage at {url[len(prefix):]}; run a sweep first, or pass --storage / "
                            "--results where it ran.")
