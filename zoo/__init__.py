"""The cifarzoo model zoo: every architecture and recipe from the reference reports.

    >>> import zoo
    >>> zoo.list_models("resnet12*")
    ['resnet12-aug', 'resnet12-norm']
    >>> model = zoo.load("resnet12-aug")          # trained weights, eval mode, with .cifarzoo metadata

Model files register themselves on import; importing them pulls in torch, so that happens on the
first call here rather than at `import zoo` (the CLI's --help stays instant).
"""

from __future__ import annotations

from typing import Any

from zoo.entry import Entry, Reported
from zoo.errors import CifarzooError
from zoo.recipe import EarlyStopping, Recipe

__all__ = [
    "CifarzooError", "EarlyStopping", "Entry", "Recipe", "Reported",
    "add_entries", "create", "get_entry", "get_weights", "info", "list_architectures", "list_models", "load",
]

_loaded = False


def _ensure_registered() -> None:
    global _loaded
    if not _loaded:
        import zoo.entries  # noqa: F401  (imports every model file, then registers the entries)
        from zoo.entryfiles import entries_dir, register_folder
        from zoo.promoted import register_promoted

        _loaded = True  # before the user's entries: a bad file warns once, it does not retry every call
        register_folder(entries_dir(), strict=False)  # the user's entry files ($CIFARZOO_HOME/entries/*.toml)
        register_promoted()  # entries promoted by older versions ($CIFARZOO_HOME/promoted/*.json)


def add_entries(folder: str) -> list[str]:
    """Register every entry file (*.toml) in `folder` for this process; a bad file is one clear error."""
    _ensure_registered()
    from pathlib import Path

    from zoo.entryfiles import register_folder

    return register_folder(Path(folder).expanduser())


def list_models(pattern: str | None = None) -> list[str]:
    """Entry names, sorted; `pattern` is a glob such as ``"*-aug"``."""
    _ensure_registered()
    from zoo import registry

    return registry.list_models(pattern)


def list_architectures(pattern: str | None = None) -> list[str]:
    """Architecture names, sorted; `pattern` is a glob."""
    _ensure_registered()
    from zoo import registry

    return registry.list_architectures(pattern)


def get_entry(name: str) -> Entry:
    """The registered entry `name` (CifarzooError with the closest names if unknown)."""
    _ensure_registered()
    from zoo import registry

    return registry.get_entry(name)


def create(architecture: str, **kwargs: Any) -> Any:
    """An untrained network of `architecture` (an architecture name, not an entry name)."""
    _ensure_registered()
    from zoo import registry

    return registry.create(architecture, **kwargs)


def info(entry: str) -> dict[str, Any]:
    """Metadata of an entry: architecture, recipe, report, parameters, stored weights."""
    _ensure_registered()
    from zoo.hub import entry_info

    return entry_info(entry)


def load(entry: str, weights: Any = None) -> Any:
    """A trained network for `entry` in eval mode, with `.cifarzoo` metadata.

    `weights`: None (the weights the package publishes for the entry, else the best local run), "published",
    "local", a record from `get_weights`, or the path of a .safetensors file.
    """
    _ensure_registered()
    from zoo.hub import load as _load

    return _load(entry, weights)


def get_weights(entry: str) -> Any:
    """The weights the package publishes for `entry` (records with `.DEFAULT`; empty if none)."""
    _ensure_registered()
    get_entry(entry)  # an unknown name fails in one sentence
    from zoo.published import get_weights as _get

    return _get(entry)
