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
@click.pass_context
def bench(ctx: click.Context, entries: tuple[str, ...], all_entries: bool, exclude: tuple[str, ...], data: str,
          profile: str, seeds: str | None, results: Path, site: Path, no_site: bool, site_images: bool,
          imagenet_weights: Path | None, device: str, progress: str, quiet: bool, verbose: bool, force: bool) -> None:
    """Train, evaluate, export and time ENTRIES (names or globs), then build the leaderboard."""
    if no_site and ctx.get_parameter_source("site") is click.core.ParameterSource.COMMANDLINE:
        raise CifarzooError("--site and --no-site conflict; give one of them.")
    if quiet and verbose:
        raise CifarzooError("--quiet and --verbose conflict; give one of them.")
    progress = "quiet" if quiet else "plain" if verbose else progress
    from benchmark.bench import (
        LocalExecutor,
        collect,
        format_summary,
        make_plan,
        parse_seeds,
        resolve_entries,
        summary_rows,
    )
    from benchmark.data import load_dataset
    from benchmark.profiles import get_profile
    from benchmark.records import check_results_dir
    from benchmark.runner import RunContext

    names = resolve_entries(list(entries), all_entries, list(exclude))
    seed_list = parse_seeds(seeds) if seeds is not None else list(get_profile(profile).seeds)
    if imagenet_weights:
        os.environ["CIFARZOO_IMAGENET_WEIGHTS"] = str(imagenet_weights.resolve())
    check_results_dir(results)
    dataset = load_dataset(data)
    run_ctx = RunContext(results, dataset, resolve_device(device), command_line(), progress, force)
    plan = make_plan(names, seed_list, profile, dataset, run_ctx)
    quiet = progress == "quiet"
    if not quiet:
        click.echo(f"bench: {len(plan.runs)} runs ({len(names)} entries x {len(seed_list)} seeds, profile {profile}), "
                   f"{len(plan.done)} already recorded; data: {dataset.description}", err=True)
    if verbose:
        for run in plan.runs:
            click.echo(f"  {'done' if run in plan.done else 'todo'}  {run.run_id}", err=True)
    new = LocalExecutor().run(plan, run_ctx)
    records = collect(plan, run_ctx)
    click.echo(format_summary(summary_rows(records)))
    if not no_site:
        from leaderboard.build import build_site

        report = build_site(results, site, data_source=dataset if site_images else None,
                            warn=lambda msg: click.echo(f"warning: {msg}", err=True))
        click.echo(f"leaderboard: {report.index}")
    failed = [r for r in new if r["status"] == "failed"]
    if failed:
        click.echo(f"{len(failed)} run(s) failed: " + ", ".join(r["run_id"] for r in failed), err=True)
        raise SystemExit(1)
