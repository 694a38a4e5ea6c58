"""`cifarzoo train ENTRY` and `cifarzoo eval ENTRY`."""

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


@click.command()
@click.argument("entry")
@data_option
@profile_option
@click.option("--seed", type=int, default=0, show_default=True,
              help="Fixes initialisation, split, batches and augmentation.")
@results_option
@device_option
@progress_option
@click.option("--force", is_flag=True, help="Replace an existing record of the same run.")
def train(entry: str, data: str, profile: str, seed: int, results: Path, device: str, progress: str,
          force: bool) -> None:
    """Train ENTRY, evaluate it on the test split, write its record and weights."""
    from benchmark.data import load_dataset
    from benchmark.records import check_results_dir, record_path
    from benchmark.runner import RunContext, execute, prepare

    check_results_dir(results)
    dataset = load_dataset(data)
    run = prepare(entry, seed, profile, dataset)
    path = record_path(results, run.run_id)
    if path.exists() and not force:
        click.echo(f"{run.run_id}: already recorded in {path} (use --force to run again).")
        return
    ctx = RunContext(results, dataset, resolve_device(device), command_line(), progress, force)
    record = execute(run, ctx)
    click.echo(f"record: {path}")
    if record["status"] != "ok":
        click.echo(f"{record['status']}: {record['reason']}", err=True)
        raise SystemExit(1)
    test = record["test"]
    click.echo(f"{entry} ({profile}, seed {seed}): test accuracy {100 * test['accuracy']:.2f}%, "
               f"loss {test['loss']:.3f}, epochs {record['training']['epochs_run']}, "
               f"train {record['durations']['train_s']:.1f}s; weights {record['weights']['file']}")


@click.command("eval")
@click.argument("entry")
@data_option
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="A .safetensors file "
              "(default: the best stored run of ENTRY).")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def eval_cmd(entry: str, data: str, weights: Path | None, device: str, as_json: bool) -> None:
    """Evaluate ENTRY's stored weights on the whole test split and print the metrics."""
    import zoo
    from benchmark.evaluate import evaluate_model

    model = zoo.load(entry, str(weights) if weights else None)
    from benchmark.data import load_dataset

    report = evaluate_model(model, load_dataset(data), resolve_device(device))
    if as_json:
        click.echo(json.dumps(report))
        return
    classes = report["classes"]
    click.echo(f"{entry}: test accuracy {100 * report['accuracy']:.2f}%  loss {report['loss']:.4f}  "
               f"macro AUC {report['roc_auc']['macro']:.4f}  ECE {report['ece']:.4f}  ({report['n_test']} images)")
    pc = report["per_class"]
    click.echo(f"{'class':<12} {'precision':>9} {'recall':>7} {'f1':>6}")
    for i, name in enumerate(classes):
        click.echo(f"{name:<12} {pc['precision'][i]:>9.3f} {pc['recall'][i]:>7.3f} {pc['f1'][i]:>6.3f}")
