"""`cifarzoo publish ENTRY...`: ship an entry's best-on-validation full run inside the package (maintainers)."""

from __future__ import annotations

from pathlib import Path

import click

from cifarzoo.commands._common import results_option
from cifarzoo.commands._options import data_option


@click.command()
@click.argument("entries", nargs=-1, required=True)
@data_option
@results_option
@click.option("--fp32", "fp32_only", is_flag=True, help="Store float32 even where float16 keeps the test accuracy.")
def publish(entries: tuple[str, ...], data: str, results: Path, fp32_only: bool) -> None:
    """Publish ENTRIES' weights into zoo/published_weights (seed chosen on validation; float16 when harmless)."""
    import zoo
    from benchmark.data import load_dataset
    from benchmark.publish import publish as publish_entry

    for name in entries:
        zoo.get_entry(name)  # unknown names fail before the data is loaded
    dataset = load_dataset(data)
    for name in entries:
        w = publish_entry(name, results, dataset, allow_fp16=not fp32_only)
        m = w.metrics
        sd = f" ± {100 * m['test_accuracy_sd']:.2f}" if m["test_accuracy_sd"] is not None else ""
        click.echo(f"{name}: {w.file} ({w.dtype}, {w.path.stat().st_size / 1e6:.1f} MB), seed {w.seed} of "
                   f"{len(w.seeds)}; test accuracy {100 * m['test_accuracy']:.2f} % (seeds: "
                   f"{100 * m['test_accuracy_mean']:.2f}{sd}); {w.note}")
