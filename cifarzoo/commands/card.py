"""`cifarzoo card ENTRY`: a Hugging Face model card (README.md with model-index metadata) beside a copy of the
weights, for users who publish them."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("entry")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("cards"), show_default=True,
              help="The card goes to OUT/ENTRY/ (README.md, model.safetensors, config.json).")
@click.option("--weights", help="'published', 'local' or a .safetensors file [default: published, else local].")
def card(entry: str, out: Path, weights: str | None) -> None:
    """Write ENTRY's model card with its test accuracy, data copy and recipe, beside its weights."""
    from benchmark.card import write_card

    folder = write_card(entry, out / entry, weights)
    click.echo(f"wrote {folder / 'README.md'}, model.safetensors and config.json in {folder}/")
