"""Registries of architectures (builder functions) and entries (architecture + recipe).

Both refuse duplicate names. Unknown names fail with one sentence listing the closest names.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar

from zoo.entry import Entry
from zoo.errors import CifarzooError, unknown_name

# entry and architecture names: they become file and page names, so no separators, no leading dot
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_ARCHITECTURES: dict[str, Callable[..., Any]] = {}
_ENTRIES: dict[str, Entry] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register_model(name: str | None = None) -> Callable[[F], F]:
    """Decorator registering an architecture builder under `name` (default: the function name)."""

    def wrap(fn: F) -> F:
        key = name or fn.__name__.replace("_", "-")
        if key in _ARCHITECTURES:
            raise ValueError(f"architecture '{key}' is already registered")
        _ARCHITECTURES[key] = fn
        return fn

    return wrap


def valid_name(name: Any) -> bool:
    """Does `name` follow the zoo's name grammar (lower case letters, digits, '.', '_', '-'; no '/')?"""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None and ".." not in name


def register_entry(entry: Entry, *, replace: bool = False) -> Entry:
    """Add an entry; its name must follow the grammar and be new (or `replace` an entry of the user's), and
    its architecture must exist."""
    if not valid_name(entry.name):
        raise ValueError(f"entry name '{entry.name}' is not valid: use lower-case letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
    if entry.name in _ENTRIES and not (replace and _ENTRIES[entry.name].report == "user"):
        raise ValueError(f"entry '{entry.name}' is already registered")
    if entry.architecture not in _ARCHITECTURES:
        raise ValueError(f"entry '{entry.name}' names unknown architecture '{entry.architecture}'")
    _ENTRIES[entry.name] = entry
    return entry


def list_architectures(pattern: str | None = None) -> list[str]:
    """Registered architecture names, sorted, optionally filtered by a glob."""
    return _match(_ARCHITECTURES, pattern)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered entry names, sorted, optionally filtered by a glob (e.g. ``"resnet*"``)."""
    return _match(_ENTRIES, pattern)


def _match(names: dict[str, Any], pattern: str | None) -> list[str]:
    return sorted(n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern))


def get_entry(name: str) -> Entry:
    """The entry called `name`, or a CifarzooError naming the closest entries."""
    try:
        return _ENTRIES[name]
    except KeyError:
        raise unknown_name("entry", name, _ENTRIES) from None


def get_builder(architecture: str) -> Callable[..., Any]:
    try:
        return _ARCHITECTURES[architecture]
    except KeyError:
        raise unknown_name("architecture", architecture, _ARCHITECTURES) from None


def create(architecture: str, **kwargs: Any) -> Any:
    """Build an untrained network; unknown keyword arguments are a user error, not a TypeError."""
    builder = get_builder(architecture)
    params = inspect.signature(builder).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    bad = [k for k in kwargs if k not in params]
    if bad and not accepts_any:
        valid = ", ".join(n for n, p in params.items() if p.kind is not p.VAR_KEYWORD)
        raise CifarzooError(
            f"architecture '{architecture}' takes no argument(s) {', '.join(bad)}; valid: {valid}."
        )
    return builder(**kwargs)


def architecture_arguments(architecture: str) -> dict[str, Any]:
    """The builder's keyword arguments and their defaults (used by sweeps to validate names)."""
    params = inspect.signature(get_builder(architecture)).parameters
    return {k: p.default for k, p in params.items() if p.kind is not p.VAR_KEYWORD}
