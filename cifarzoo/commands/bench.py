"""`cifarzoo bench`: the whole zoo (or a selection) in one resumable command."""

from __future__ import annotations

import os
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


@click.command()
@click.argument("entries", nargs=-1)
@click.option("--all", "all_entries", is_flag=True, help="Every registered entry.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out entries matching GLOB (repeatable).")
@data_option
@profile_option
@click.option("--seeds", default=None, help="Comma-separated seeds [default: the profile's; full: 0,1,2].")
@results_option
@click.option("--site", type=click.Path(file_okay=False, path_type=Path), default=Path("site"), show_default=True,
              help="Where the leaderboard site is built at the end.")
@click.option("--no-site", is_flag=True, help="Do not build the site.")
@click.option("--site-images/--no-site-images", default=True, show_default=True,
              help="Draw sample test images on the entry pages (off for a site you will publish with licensed data).")
@click.option("--imagenet-weights", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder holding torchvision's ImageNet weight files, for the fine-tune entries.")
@device_option
@progress_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output; only the summary table.")
@click.option("-v", "--verbose", is_flag=True, help="List the planned runs and log every epoch as a line.")
@click.option("--force", is_flag=True, help="Run again even where a record exists (replacing it).")
@click.option("--retry-failed", is_flag=True, help="Run again the runs recorded as failed (their old record is "
              "kept in RESULTS/.failed/).")
@click.pass_context
def bench(ctx: click.Context, entries: tuple[str, ...], all_entries: bool, exclude: tuple[str, ...], data: str,
          profile: str, seeds: str | None, results: Path, site: Path, no_site: bool, site_images: bool,
          imagenet_weights: Path | None, device: str, progress: str, quiet: bool, verbose: bool, force: bool,
          retry_failed: bool) -> None:
    """Train, evaluate, export and time ENTRIES (names or globs), then build the leaderboard.

    Exit codes: 0 every planned run is recorded ok or skipped; 1 some run of the plan is recorded as failed
    (now or earlier); 2 a mistake in the command or its input (one sentence says which).
    """
    if no_site and ctx.get_parameter_source("site") is click.core.ParameterSource.COMMANDLINE:
        raise CifarzooError("--site and --no-site conflict; give one of them.")
    if quiet and verbose:
        raise CifarzooError("--quiet and --verbose conflict; give one of them.")
    if force and retry_failed:
        raise CifarzooError("--force already reruns every run; give --force or --retry-failed, not both.")
    progress = "quiet" if quiet else "plain" if verbose else progress
    from benchmark.bench import bench as run_bench
    from benchmark.bench import format_summary, parse_seeds, summary_rows

    seed_list = parse_seeds(seeds) if seeds is not None else None
    if imagenet_weights:
        os.environ["CIFARZOO_IMAGENET_WEIGHTS"] = str(imagenet_weights.resolve())

    def on_plan(plan, dataset) -> None:
        if progress == "quiet":
            return
        n_seeds = len({r.seed for r in plan.runs})
        click.echo(f"bench: {len(plan.runs)} runs ({len({r.name for r in plan.runs})} entries x {n_seeds} seeds, "
                   f"profile {profile}), {len(plan.done)} already recorded; data: {dataset.description}", err=True)
        if verbose:
            for run in plan.runs:
                click.echo(f"  {'done' if run in plan.done else 'todo'}  {run.run_id}", err=True)

    result = run_bench(entries, all_entries=all_entries, exclude=exclude, data=data, profile=profile,
                       seeds=seed_list, results=results, site=None if no_site else site, site_images=site_images,
                       device=resolve_device(device), force=force, retry_failed=retry_failed, progress=progress,
                       command=command_line(), on_plan=on_plan)
    click.echo(format_summary(summary_rows(result.records)))
    for message in result.warnings:
        click.echo(f"warning: {message}", err=True)
    if result.site is not None:
        click.echo(f"leaderboard: {result.site}")
    for run_id, why in result.outcome.elsewhere:
        click.echo(f"{run_id}: not run here, {why}", err=True)
    if result.failed:
        click.echo(f"{len(result.failed)} run(s) of the plan are recorded as failed: "
                   + ", ".join(r["run_id"] for r in result.failed) + " (rerun them with --retry-failed)", err=True)
        raise SystemExit(1)
