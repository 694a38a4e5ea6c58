"""`--promote`: the best trial of a study becomes a registered entry that `cifarzoo bench` can run.

The entry is the swept entry with the best trial's values (recipe fields and architecture arguments),
named `<architecture>-<study>` (or just the study's name if it starts with the architecture) unless a
name is given, with provenance "cifarzoo sweep" and a description naming the study and trial. It is
written by `zoo.promoted` under $CIFARZOO_HOME/promoted/, which the zoo registers in every later process.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zoo
from benchmark.sweep.report import best_row, study_rows
from benchmark.sweep.space import split_params
from benchmark.sweep.study import load_study, masked, open_storage
from zoo.entry import Entry, Reported
from zoo.errors import CifarzooError

ENTRY_NAME = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,79}$")
KIND = "tuned"  # not "norm"/"aug": the site pairs those per architecture, a tuned copy would double the pairs


@dataclass(frozen=True)
class Promotion:
    entry: Entry
    path: Path
    trial: int
    val_acc: float


def promote(study_name: str, storage_url: str, name: str | None = None, *, force: bool = False) -> Promotion:
    """Register the best trial of `study_name` as a new entry; returns it and the file it lives in."""
    from zoo.entryfiles import entries_dir, save_entry_file

    study = load_study(study_name, open_storage(storage_url))
    definition = study.user_attrs.get("cifarzoo")
    if not definition:
        raise CifarzooError(f"study '{study_name}' was not made by cifarzoo sweep, so it has no entry to promote.")
    best = best_row(study_rows(study))
    if best is None:
        raise CifarzooError(f"study '{study_name}' has no complete trial yet; run (or resume) the sweep first.")
    base = zoo.get_entry(definition["entry"])
    arch = base.architecture
    default = study_name if study_name.lower().startswith(f"{arch}-") else f"{arch}-{study_name}"
    new_name = (name or default).lower()
    if not ENTRY_NAME.match(new_name):
        raise CifarzooError(f"'{new_name}' is not a usable entry name (lower-case letters, digits, '.', '+', '_' "
                            "and '-'); give --promote a name such as tinyvgg-tuned.")
    if new_name in zoo.list_models() and not (entries_dir() / f"{new_name}.toml").exists():
        raise CifarzooError(f"the zoo already has an entry '{new_name}'; give --promote another name.")
    targets = {n: d["target"] for n, d in definition["params"].items()}
    recipe, arch = split_params(best.params, targets)
    arch_kwargs = {**base.arch_kwargs, **arch}
    specs = ", ".join(f"{n} {d['spec']}" for n, d in definition["params"].items())
    test = f", test accuracy {best.test_acc:.4f}" if best.test_acc is not None else ""
    entry = Entry(
        name=new_name, architecture=base.architecture, recipe=base.recipe.replace(**recipe), report="cifarzoo sweep",
        report_model=f"{base.report_model}, tuned by sweep {study_name}", family=base.family, kind=KIND,
        arch_kwargs=arch_kwargs, reported=Reported(where=f"cifarzoo sweep {study_name}, trial {best.number}"),
        pretrained=base.pretrained, num_params=base.num_params if not arch else _count_params(base, arch_kwargs),
        description=(f"{base.name} with the best trial (#{best.number}: "
                     f"{', '.join(f'{k}={v}' for k, v in best.params.items())}; validation accuracy "
                     f"{best.val_acc:.4f}{test}) of sweep study '{study_name}' ({definition['mode']} over {specs}; "
                     f"profile {definition['profile']}, data {definition['data_source']}), selected on validation "
                     "accuracy only."))
    provenance = {"study": study_name, "storage": masked(storage_url), "trial": best.number, "params": best.params,
                  "val_acc": best.val_acc, "test_acc": best.test_acc, "run_id": best.run_id, "sweep": definition,
                  "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    path = save_entry_file(entry, provenance, force=force)  # registered by every process started from now on
    return Promotion(entry, path, best.number, best.val_acc)


def _count_params(base: Entry, arch_kwargs: dict[str, Any]) -> int:
    from zoo.hub import count_params

    return count_params(base, arch_kwargs)
