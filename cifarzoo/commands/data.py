"""`cifarzoo data info`: what a data source holds (counts, classes, mean/std, fingerprint)."""

from __future__ import annotations

import json
from typing import Any

import click

from cifarzoo.commands._options import data_option


@click.group()
def data() -> None:
    """Inspect data sources."""


@data.command()
@data_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(data: str, as_json: bool) -> None:
    """Show a source's description, counts per split and class, train mean/std and fingerprint."""
    summary = summarize(data)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"source       {summary['source']}")
    click.echo(f"description  {summary['description']}")
    click.echo(f"lossy        {'yes (JPEG)' if summary['lossy'] else 'no'}")
    click.echo(f"fingerprint  {summary['fingerprint']}")
    click.echo(f"images       {summary['n_train']:,} train, {summary['n_test']:,} test, "
               f"{len(summary['classes'])} classes")
    click.echo(f"mean (train) {' '.join(f'{v:.4f}' for v in summary['mean'])}")
    click.echo(f"std  (train) {' '.join(f'{v:.4f}' for v in summary['std'])}")
    width = max(len(c) for c in summary["classes"])
    click.echo(f"\n  {'label':>5}  {'class':<{width}}  {'train':>7}  {'test':>7}")
    for label, cls in enumerate(summary["classes"]):
        train, test = summary["train_counts"][cls], summary["test_counts"][cls]
        click.echo(f"  {label:>5}  {cls:<{width}}  {train:>7,}  {test:>7,}")


def summarize(source: str) -> dict[str, Any]:
    """Everything `data info` shows, as one JSON-ready dict."""
    from benchmark.data import load_dataset
    from benchmark.splits import channel_stats

    ds = load_dataset(source)
    mean, std = channel_stats(ds.x_train)
    return {
        "source": ds.source,
        "description": ds.description,
        "lossy": ds.lossy,
        "fingerprint": ds.fingerprint,
        "classes": ds.classes,
        "n_train": len(ds.y_train),
        "n_test": len(ds.y_test),
        "train_counts": dict(zip(ds.classes, ds.class_counts("train"))),
        "test_counts": dict(zip(ds.classes, ds.class_counts("test"))),
        "mean": mean,
        "std": std,
    }
