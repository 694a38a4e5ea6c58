"""Entries promoted from sweeps by earlier versions: one JSON file each under $CIFARZOO_HOME/promoted/,
still registered after the built-in entries. New promotions are entry files (zoo.entryfiles, TOML).

A file that cannot be used (unreadable, an unknown architecture, a name the zoo already has) is left
out with a warning naming it, so one bad file never takes the whole zoo down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from zoo.entry import Entry, Reported
from zoo.recipe import Recipe

FORMAT = 1


def promoted_dir() -> Path:
    """Where promoted entries live: $CIFARZOO_HOME/promoted (not created here)."""
    from zoo.files import home_dir

    return home_dir("promoted")


def entry_from_json(data: dict[str, Any]) -> Entry:
    """The Entry a promoted file describes (unknown keys, from a newer cifarzoo, are ignored)."""
    raw = dict(data["entry"])
    known = {f.name for f in fields(Entry)}
    raw = {k: v for k, v in raw.items() if k in known}
    raw["recipe"] = Recipe.from_dict(raw["recipe"])
    reported = raw.get("reported") or {}
    raw["reported"] = Reported(**{k: v for k, v in reported.items() if k in {f.name for f in fields(Reported)}})
    return Entry(**raw)


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
            logging.getLogger(__name__).warning("promoted entry %s is left out: %s; fix or delete the file.", path, err)
            continue
        names.append(entry.name)
    return names
