"""Entry files: a user's entries as TOML, so they outlive the process.

Every `*.toml` under `$CIFARZOO_HOME/entries/` (and under each `--entries DIR`) is registered beside the
built-in entries, so `cifarzoo list`, `info`, `train`, `bench` and `zoo.load` all know it. Promoted sweep
trials are written in the same format. The format is checked against `entry.schema.json` (shipped beside
this module; `python -m zoo.entryfiles` regenerates it from the Recipe dataclass), then by the Recipe's
own rules; a bad file is one sentence naming the file and the field.

    name = "mynet-aug"                    # lower case letters, digits, '.', '_', '-'
    architecture = "models/mynet.py:build"  # a registered name, file.py:function, module:function, timm:NAME
    recipe_from = "tinyvgg-aug"            # optional: start from this entry's recipe ...
    description = "..."                    # optional, with family, kind, classes
    [arch_kwargs]                          # the function's keyword arguments
    width = 64
    [recipe]                               # ... and change these fields (zoo.recipe.Recipe, with units)
    lr = 0.0005
    [recipe.early_stopping]
    monitor = "val_loss"
    patience = 5
    [provenance]                           # where it comes from: report, report_model, and anything else
    report = "mine"
    [reported]                             # numbers to compare with: accuracy (0..1), loss, where, note
    accuracy = 0.81

Entry files name code (file.py:function, module:function): they are the user's own configuration, like a
script. Records, sidecars and checkpoints never are.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from zoo.entry import Entry, Reported
from zoo.errors import CifarzooError
from zoo.recipe import Recipe

log = logging.getLogger(__name__)
SCHEMA_FILE = Path(__file__).with_name("entry.schema.json")
FORMAT = 1


def entry_schema() -> dict[str, Any]:
    """The entry-file JSON Schema, its recipe part generated from the Recipe dataclass (pydantic)."""
    from pydantic import TypeAdapter

    recipe = TypeAdapter(Recipe).json_schema(ref_template="#/$defs/{model}")
    defs = recipe.pop("$defs", {})
    for part in [recipe, *defs.values()]:
        part["additionalProperties"] = False
        part.pop("required", None)  # every recipe field has a default
    name = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,79}$"}
    text = {"type": "string"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"cifarzoo entry file, format {FORMAT}",
        "type": "object", "required": ["name", "architecture"], "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT}, "name": name, "architecture": {"type": "string", "minLength": 1},
            "recipe_from": name, "arch_kwargs": {"type": "object"}, "recipe": {"$ref": "#/$defs/Recipe"},
            "family": text, "kind": text, "description": text, "pretrained": text,
            "classes": {"type": "array", "items": text, "minItems": 2},
            "provenance": {"type": "object", "properties": {"report": text, "report_model": text}},
            "reported": {"type": "object", "additionalProperties": False, "properties": {
                "accuracy": {"type": "number", "minimum": 0, "maximum": 1}, "loss": {"type": "number"},
                "where": text, "note": text}},
        },
        "$defs": {**defs, "Recipe": recipe},
    }


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def parse_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table, or one sentence saying why it is not one."""
    tomllib = _tomllib()
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise CifarzooError(f"cannot read {path} ({err.strerror}); check the path.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CifarzooError(f"{path} is not valid TOML ({err}); fix the file.") from None


def _first_error(validator: Any, data: Any) -> str | None:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    error = errors[0]
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    field = ".".join(str(p) for p in error.absolute_path) or "the file"
    return f"{field}: {error.message[:200]}"


def check_recipe_table(table: Any, path: Path) -> None:
    """One sentence naming the file and the field when a recipe table does not fit Recipe's fields."""
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_FILE.read_text())
    problem = _first_error(Draft202012Validator({"$ref": "#/$defs/Recipe", "$defs": schema["$defs"]}), table)
    if problem:
        raise CifarzooError(f"recipe file {path}: {problem}; the fields are zoo.recipe.Recipe's.")


def read_entry_file(path: Path) -> Entry:
    """The Entry an entry file describes (its architecture resolved and registered), or one sentence."""
    from zoo.user import resolve_architecture

    path = Path(path)
    data = parse_toml(path)
    problem = _first_error(_validator(), data)
    if problem:
        raise CifarzooError(f"entry file {path}: {problem}; see zoo/entry.schema.json.")
    try:
        recipe = _recipe(data)
        architecture = resolve_architecture(data["architecture"], base=path.parent)
    except (ValueError, TypeError) as err:
        raise CifarzooError(f"entry file {path}: recipe: {err}.") from None
    except CifarzooError as err:
        raise CifarzooError(f"entry file {path}: architecture: {err}") from None
    provenance = data.get("provenance") or {}
    return Entry(name=data["name"], architecture=architecture, recipe=recipe,
                 report=str(provenance.get("report", "user")),
                 report_model=str(provenance.get("report_model", data["architecture"])),
                 family=data.get("family", "user"), kind=data.get("kind", "user"),
                 arch_kwargs=dict(data.get("arch_kwargs") or {}), reported=Reported(**(data.get("reported") or {})),
                 description=data.get("description", ""), pretrained=data.get("pretrained"),
                 **({"classes": tuple(data["classes"])} if data.get("classes") else {}))


def _recipe(data: dict[str, Any]) -> Recipe:
    if data.get("recipe_from"):
        from zoo.registry import get_entry

        base = get_entry(data["recipe_from"]).recipe
    else:
        from zoo.user import DEFAULT_RECIPE

        base = DEFAULT_RECIPE
    return base.replace(**(data.get("recipe") or {}))


def entry_to_toml(entry: Entry, provenance: dict[str, Any] | None = None) -> str:
    """An entry as an entry file (the whole recipe written out, so the file stands on its own)."""
    import tomli_w

    recipe = {k: v for k, v in entry.recipe.to_dict().items() if v is not None}
    if entry.recipe.early_stopping is not None:
        recipe["early_stopping"] = {k: v for k, v in recipe["early_stopping"].items() if v is not None}
    reported = {k: v for k, v in (("accuracy", entry.reported.accuracy), ("loss", entry.reported.loss),
                                  ("where", entry.reported.where), ("note", entry.reported.note)) if v}
    data: dict[str, Any] = {"format": FORMAT, "name": entry.name, "architecture": entry.architecture,
                            "family": entry.family, "kind": entry.kind, "description": entry.description,
                            "pretrained": entry.pretrained,
                            "arch_kwargs": dict(entry.arch_kwargs), "recipe": recipe,
                            "provenance": {"report": entry.report, "report_model": entry.report_model,
                                           **(provenance or {})}}
    if reported:
        data["reported"] = reported
    return tomli_w.dumps(_plain(data))


def _plain(value: Any) -> Any:
    """TOML has no null and no tuples: drop None, make tuples lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def entries_dir() -> Path:
    from zoo.files import home_dir

    return home_dir("entries")


def save_entry_file(entry: Entry, provenance: dict[str, Any] | None = None, *, folder: Path | None = None,
                    force: bool = False) -> Path:
    """Write `entry` to <folder or $CIFARZOO_HOME/entries>/<name>.toml; an existing different one is kept
    unless `force`."""
    from zoo.files import write_atomic

    path = (folder or entries_dir()) / f"{entry.name}.toml"
    text = entry_to_toml(entry, provenance)
    if path.exists() and not force:
        try:
            same = _comparable(parse_toml(path)) == _comparable(parse_toml_text(text))
        except CifarzooError:
            same = False
        if same:
            return path
        raise CifarzooError(f"an entry file {path} already exists with another configuration; pass --force to "
                            "replace it, or choose another name.")
    return write_atomic(path, text)


def parse_toml_text(text: str) -> dict[str, Any]:
    return _tomllib().loads(text)


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "provenance"}


def register_folder(folder: Path, *, strict: bool = True) -> list[str]:
    """Register every entry file in `folder`; returns their names. A bad file is a CifarzooError when
    `strict`, else a logged warning (so one broken file in the home folder does not take the zoo down)."""
    from zoo.registry import list_models, register_entry

    names = []
    for path in sorted(Path(folder).glob("*.toml")) if Path(folder).is_dir() else []:
        try:
            entry = read_entry_file(path)
            if entry.name in list_models():
                raise CifarzooError(f"entry file {path}: name: the zoo already has an entry '{entry.name}'; "
                                    "rename it.")
            register_entry(entry)
        except CifarzooError as err:
            if strict:
                raise
            log.warning("%s (left out)", err)
            continue
        names.append(entry.name)
    return names


if __name__ == "__main__":  # regenerate entry.schema.json after changing the Recipe dataclass
    SCHEMA_FILE.write_text(json.dumps(entry_schema(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_FILE}")
