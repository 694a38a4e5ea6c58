"""`cifarzoo bench`: the whole zoo (or a selection) in one resumable command."""

from __future__ import annotations

import json
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
@click.option("--model", "model_spec", metavar="SPEC", help="Your own model: path/to/file.py:function, "
              "package.module:function (a function returning an nn.Module for 32x32x3 images and 10 classes) or "
              "timm:NAME; saved as an entry file in $CIFARZOO_HOME/entries/ and benched like any entry.")
@click.option("--name", "model_name", metavar="NAME", help="With --model: the entry's name [default: from SPEC].")
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --model: a recipe TOML (Recipe fields) [default: Adam 1e-3, batch 128, 30 epochs, basic "
              "augmentation, early stopping on validation loss].")
@click.option("--recipe-from", metavar="ENTRY", help="With --model: start from this entry's recipe.")
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
@click.option("--plan", "plan_only", is_flag=True, help="Print the planned runs and what each will cost on this "
              "machine (a few timed steps per network, cached), then stop.")
@click.option("--time-budget", type=click.FloatRange(min=1), metavar="SECONDS", help="Stop starting runs once "
              "this long has passed; a run that would end past it pauses after an epoch (checkpointed: the next "
              "bench resumes it). What was not run is listed.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one run after another here; ray: each run a Ray task (pip install 'cifarzoo[ray]').")
@click.option("--address", metavar="ADDRESS", help="With --executor ray: a running cluster (e.g. 10.0.0.5:6379 or "
              "'auto'); default: a local cluster started for this command.")
@click.option("--threads", type=click.IntRange(1, 256), help="Torch threads per run (Ray: the CPUs each task asks "
              "for) [default: local torch's count, Ray 1].")
@click.option("--shard", metavar="K/N", help="Run only the K-th of N disjoint slices of the plan (SLURM arrays, "
              "Kubernetes indexed jobs); N shards on one results folder give the records of one bench.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (for CI).")
@click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Also write each run's curves and test metrics as TensorBoard event files under DIR.")
@click.option("--mlflow", "mlflow_on", is_flag=True, help="Also log each run to MLflow (params, curves, test "
              "metrics, the record as an artifact); a local store in RESULTS/ unless --mlflow-uri.")
@click.option("--mlflow-uri", metavar="URI", help="MLflow tracking URI (implies --mlflow), e.g. http://host:5000.")
@click.option("--fail-under", type=click.FloatRange(0, 100), metavar="PERCENT", help="Exit 3 when an entry's "
              "mean test accuracy is below PERCENT.")
@click.option("--retry-failed", is_flag=True, help="Run again the runs recorded as failed (their old record is "
              "kept in RESULTS/.failed/).")
@click.pass_context
def bench(ctx: click.Context, entries: tuple[str, ...], all_entries: bool, exclude: tuple[str, ...], data: str,
          model_spec: str | None, model_name: str | None, recipe_file: Path | None, recipe_from: str | None,
          profile: str, seeds: str | None, results: Path, site: Path, no_site: bool, site_images: bool,
          imagenet_weights: Path | None, device: str, progress: str, quiet: bool, verbose: bool, force: bool,
          plan_only: bool, time_budget: float | None, executor: str, address: str | None, threads: int | None,
          shard: str | None, as_json: bool, tensorboard: Path | None, mlflow_on: bool,
          mlflow_uri: str | None, fail_under: float | None, retry_failed: bool) -> None:
    """Train, evaluate, export and time ENTRIES (names or globs), then build the leaderboard.

    Exit codes: 0 every planned run is recorded ok or skipped; 1 some run of the plan is recorded as failed
    (now or earlier); 2 a mistake in the command or its input (one sentence says which); 3 an entry's mean
    test accuracy is below --fail-under; 4 the time budget left runs undone (rerun to go on).
    """
    if no_site and ctx.get_parameter_source("site") is click.core.ParameterSource.COMMANDLINE:
        raise CifarzooError("--site and --no-site conflict; give one of them.")
    if quiet and verbose:
        raise CifarzooError("--quiet and --verbose conflict; give one of them.")
    if force and retry_failed:
        raise CifarzooError("--force already reruns every run; give --force or --retry-failed, not both.")
    progress = "quiet" if quiet else "plain" if verbose else progress
    if model_spec:
        entries = (*entries, _user_entry(model_spec, model_name, recipe_file, recipe_from, force))
    elif model_name or recipe_file or recipe_from:
        raise CifarzooError("--name, --recipe and --recipe-from go with --model; name registered entries directly.")
    from benchmark.distributed import parse_shard
    from benchmark.fastpath import environment_override
    from benchmark.selection import parse_seeds, resolve_entries

    # the command's own mistakes first, before the engine's imports (benchmark.selection)
    environment_override()
    resolve_entries(list(entries), all_entries, list(exclude))
    seed_list = parse_seeds(seeds) if seeds is not None else None
    shard_range = parse_shard(shard) if shard else None
    if address and executor != "ray":
        raise CifarzooError("--address is a Ray cluster's; give --executor ray with it.")
    from benchmark.bench import bench as run_bench
    from benchmark.bench import estimates, planned

    options = dict(all_entries=all_entries, exclude=exclude, data=data, profile=profile, seeds=seed_list,
                   results=results, device=_plan_device(device) if plan_only else resolve_device(device),
                   force=force, retry_failed=retry_failed, progress="quiet" if as_json else progress,
                   command=command_line(), time_budget=time_budget, imagenet_weights=imagenet_weights,
                   shard=shard_range)
    trackers = dict(tensorboard=tensorboard, mlflow=mlflow_uri or mlflow_on)
    if plan_only:
        from benchmark.estimate import format_plan

        plan, run_ctx = planned(entries, **options)
        rows = estimates(plan, run_ctx)
        if as_json:
            click.echo(json.dumps(plan_json(rows, run_ctx.device, profile), indent=1))
            return
        click.echo(f"plan: {len(plan.runs)} runs, profile {profile}, on {run_ctx.device}; data: "
                   f"{run_ctx.data.description}", err=True)
        click.echo(format_plan(rows))
        return

    def on_plan(plan, dataset) -> None:
        if progress != "quiet" and not as_json:
            _print_plan(plan, dataset, profile, verbose)

    result = run_bench(entries, site=None if no_site else site, site_images=site_images, on_plan=on_plan,
                       executor=executor, address=address, threads=threads, **options, **trackers)
    below = result.below(fail_under / 100) if fail_under is not None else []
    if as_json:
        click.echo(json.dumps(summary_json(result, below), indent=1))
    else:
        _print_outcome(result, below, fail_under)
    if result.failed:
        raise SystemExit(1)
    if below:
        raise SystemExit(3)
    if result.outcome.paused or result.outcome.not_started:
        raise SystemExit(4)


def _user_entry(spec: str, name: str | None, recipe_file: Path | None, recipe_from: str | None, force: bool) -> str:
    """Register (and save as an entry file) the user's model; returns its entry name."""
    import zoo
    from zoo.entryfiles import entries_dir, save_entry_file
    from zoo.registry import register_entry
    from zoo.user import read_recipe_file, user_entry

    if recipe_file and recipe_from:
        raise CifarzooError("--recipe and --recipe-from conflict; give one of them.")
    recipe = read_recipe_file(recipe_file) if recipe_file else (zoo.get_entry(recipe_from).recipe if recipe_from
                                                                  else None)
    entry = user_entry(spec, name=name, recipe=recipe)
    registered = entry.name in zoo.list_models()
    if registered and not (entries_dir() / f"{entry.name}.toml").exists():
        raise CifarzooError(f"the zoo already has an entry '{entry.name}'; pass --name with another name.")
    save_entry_file(entry, {"created_by": "cifarzoo bench --model"}, force=force)  # refuses another config
    register_entry(entry, replace=registered)  # the file's entry, as just written
    return entry.name


def _print_plan(plan, dataset, profile: str, verbose: bool) -> None:
    n_seeds = len({r.seed for r in plan.runs})
    click.echo(f"bench: {len(plan.runs)} runs ({len({r.name for r in plan.runs})} entries x {n_seeds} seeds, "
               f"profile {profile}), {len(plan.done)} already recorded; data: {dataset.description}", err=True)
    if verbose:
        for run in plan.runs:
            click.echo(f"  {'done' if run in plan.done else 'todo'}  {run.run_id}", err=True)


def plan_json(rows: list, device: str, profile: str) -> dict:
    """`bench --plan --json`: the runs and their estimates; the site's reproduction page reads such files
    from RESULTS/perf/plan*.json."""
    import torch

    from benchmark.estimate import GPU_TFLOPS
    from benchmark.machine import cpu_name

    gpu = device.startswith("cuda")
    machine = (torch.cuda.get_device_name() if torch.cuda.is_available() else f"an assumed {GPU_TFLOPS:g} TFLOP/s "
               "GPU") if gpu else f"{cpu_name()}, {torch.get_num_threads()} threads"
    bases = sorted({est.basis for _, est, done in rows if not done})
    return {"device": "cuda" if gpu else "cpu", "machine": machine, "profile": profile, "basis": "; ".join(bases),
            "runs": [{"run_id": run.run_id, "entry": run.name, "seed": run.seed, "recorded": done,
                      "estimate_s": None if done else round(est.total_s, 1), "epochs": None if done else est.epochs,
                      "train_images": None if done else est.train_images} for run, est, done in rows]}


def summary_json(result, below: list[dict]) -> dict:
    """What `bench --json` prints: one row per (entry, profile), the runs not done here, the site."""
    from benchmark.bench import summary_rows

    outcome = result.outcome
    return {"rows": summary_rows(result.records), "failed": [r["run_id"] for r in result.failed],
            "below_threshold": [r["entry"] for r in below], "left_to_others": dict(outcome.elsewhere),
            "paused": outcome.paused, "not_started": outcome.not_started,
            "site": str(result.site) if result.site else None, "warnings": result.warnings}


def _print_outcome(result, below: list[dict], fail_under: float | None) -> None:
    from benchmark.bench import format_summary, summary_rows

    click.echo(format_summary(summary_rows(result.records)))
    if result.site is not None:
        click.echo(f"leaderboard: {result.site}")
    for run_id, why in result.outcome.elsewhere:
        click.echo(f"{run_id}: not run here, {why}", err=True)
    if result.outcome.paused or result.outcome.not_started:
        click.echo(f"time budget spent: {len(result.outcome.paused)} run(s) paused (resumable), "
                   f"{len(result.outcome.not_started)} not started: "
                   + ", ".join(result.outcome.paused + result.outcome.not_started), err=True)
    if result.failed:
        click.echo(f"{len(result.failed)} run(s) of the plan are recorded as failed: "
                   + ", ".join(r["run_id"] for r in result.failed) + " (rerun them with --retry-failed)", err=True)
    for row in below:
        click.echo(f"{row['entry']} ({row['profile']}): test accuracy {100 * row['accuracy_mean']:.2f}% is below "
                   f"--fail-under {fail_under:g}%", err=True)


def _plan_device(device: str) -> str:
    """A plan may be made for a GPU this machine does not have (estimated from FLOPs)."""
    return "cpu" if device == "auto" and not _has_cuda() else ("cuda" if device == "auto" else device)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
