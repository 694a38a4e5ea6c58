"""`cifarzoo verify [ENTRY...]`: do the published weights score what their records state, on this data?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cifarzoo.commands._common import device_option, resolve_device
from cifarzoo.commands._options import data_option

if TYPE_CHECKING:
    from benchmark.verify import Check


@click.command()
@click.argument("entries", nargs=-1)
@data_option
@click.option("--full", is_flag=True, help="Score the whole test split, not the file's two check blocks "
              "(1,000 images drawn from its sha256).")
@click.option("--record", is_flag=True, help="Maintainers: with --full, write the block counts into the package's "
              "manifest for records that state none and whose accuracy was reproduced exactly.")
@device_option
def verify(entries: tuple[str, ...], data: str, full: bool, record: bool, device: str) -> None:
    """Score the DEFAULT published weights of ENTRIES (default: every entry that publishes some) on the test
    split of --data, and compare with their records; exit 1 when any differs."""
    import zoo
    from benchmark.data import load_dataset
    from benchmark.verify import record_blocks
    from benchmark.verify import verify as check_record
    from zoo.errors import CifarzooError
    from zoo.published import read_manifest

    if record and not full:
        raise CifarzooError("--record writes what a full check measured: add --full.")
    for name in entries:
        zoo.get_entry(name)  # an unknown name fails in one sentence before anything loads
    records = [zoo.get_weights(name).DEFAULT for name in entries] if entries else [
        w for w in read_manifest() if w.default]
    for name, w in zip(entries, records):
        if w is None:
            raise CifarzooError(f"cifarzoo publishes no weights for '{name}'; `cifarzoo list` shows which do.")
    dataset, failed = load_dataset(data), 0
    for w in records:
        check = check_record(w, dataset, full=full, device=resolve_device(device))
        click.echo(_line(check))
        failed += not check.ok
        if record and check.stated is None:
            record_blocks(check, w)
            click.echo(f"{w.entry}: block counts recorded in {w.path.with_name('weights.json')}")
    if failed:
        raise SystemExit(1)


def _line(check: Check) -> str:
    verdict = "as published" if check.ok else "DIFFERENT from the record"
    got = sum(check.measured.values())
    stated = "no block counts stated" if check.stated is None else f"stated {sum(check.stated.values()):,}"
    whole = "" if check.accuracy is None else (f"; test accuracy {100 * check.accuracy:.2f} % "
                                                f"(stated {100 * check.stated_accuracy:.2f} %)")
    return (f"{check.entry}: {got:,} of {check.images:,} test images correct in blocks "
            f"{_blocks(check.measured)} ({stated}){whole}: {verdict}")


def _blocks(measured: dict[int, int]) -> str:
    keys = sorted(measured)
    return f"{keys[0]}-{keys[-1]}" if len(keys) > 2 and keys == list(range(keys[0], keys[-1] + 1)) else \
        ", ".join(map(str, keys))
