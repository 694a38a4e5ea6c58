"""Entries promoted from sweeps (`cifarzoo sweep show STUDY --promote`): one JSON file each under
$CIFARZOO_HOME/promoted/ (default ~/.cache/cifarzoo/promoted/), registered after the built-in entries,
so every later process (`cifarzoo bench`, `zoo.load`) knows them.

A file that cannot be used (unreadable, an unknown architecture, a name the zoo already has) is left
out with a warning naming it, so one bad file never takes the whole zoo down.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from zoo.entry import Entry, Reported
from zoo.errors import CifarzooError
from zoo.recipe import Recipe

FORMAT = 1


def promoted_dir() -> Path:
    """Where promoted entries live: $CIFARZOO_HOME/promoted (not created here)."""
    from zoo.files import home_dir

    return home_dir("promoted")


def entry_to_json(entry: Entry, provenance: dict[str, Any]) -> dict[str, Any]:
    """The file's content: the entry, and where it was promoted from (study, trial, storage...)."""
    return {"format": FORMAT, "entry": entry.to_dict(), "provenance": provenance}


def entry_from_json(data: dict[str, Any]) -> Entry:
    """The Entry a promoted file describes (unknown keys, from a newer cifarzoo, are ignored)."""
    raw = dict(data["entry"])
    known = {f.name for f in fields(Entry)}
    raw = {k: v for k, v in raw.items() if k in known}
    raw["recipe"] = Recipe.from_dict(raw["recipe"])
    reported = raw.get("reported") or {}
    raw["reported"] = Reported(**{k: v for k, v in reported.items() if k in {f.name for f in fields(Reported)}})
    return Entry(**raw)


def save_promoted(entry: Entry, provenance: dict[str, Any], *, force: bool = False) -> Path:
    """Write `entry` as a promoted file (atomically); an existing different file is kept unless `force`."""
    path = promoted_dir() / f"{entry.name}.json"
    content = json.dumps(entry_to_json(entry, provenance), indent=1, sort_keys=True) + "\n"
    if path.exists() and not force:
        try:
            same = json.loads(path.read_text())["entry"] == json.loads(content)["entry"]
        except (OSError, ValueError, KeyError):
            same = False
        if same:
            return path
        raise CifarzooError(f"a promoted entry '{entry.name}' already exists ({path}) with another configuration; "
                            "pass --force to replace it, or give --promote another name.")
    from zoo.files import write_atomic

    return write_atomic(path, content)


def register_promoted(folder: Path | None = None) -> list[str]:
    """Register every promoted entry under `folder` (default: promoted_dir()); returns their names."""
    from zoo.registry import list_models, register_entry

    folder = folder or promoted_dir()
    names = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = entry_from_json(json.loads(path.read_text()))
            if entry.name in list_models():
                raise ValueError(f"the zoo already has an entry '{entry.name}'")
            register_entry(entry)
        except (OSError, ValueError, KeyError, TypeError) as err:
            warnings.warn(f"promoted entry {path} is left out: {err}; fix or delete the file.", stacklevel=2)
            continue
        names.append(entry.name)
    return names
