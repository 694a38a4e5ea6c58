"""What a sweep searches: parameters (recipe fields or architecture arguments), their SPECs, and presets.

SPEC forms (`--param NAME=SPEC`):

    32,64,128            a list: every value for --grid, one of them per trial for --random
    uniform:LO:HI        a float drawn uniformly               (--random only)
    loguniform:LO:HI     a float drawn uniformly in log space  (--random only)
    int:LO:HI            an integer, both ends included        (--random only)

NAME is any `Recipe` field (except the nested `early_stopping`) or any argument of the entry's
architecture builder; `recipe.NAME` / `arch.NAME` pick one where both have the name. Values are
coerced to the field's type (the builder's annotation, or its default's type), so `batch_size=32,64`
gives ints and `lr=1e-3` a float.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from zoo.entry import Entry
from zoo.errors import CifarzooError
from zoo.recipe import RECIPE_FIELDS, Recipe

RANGE_KINDS = ("uniform", "loguniform", "int")
# early_stopping is nested (register a recipe to vary it); val_fraction changes the split that selects the
# trials, so their validation accuracies would not be comparable
UNSWEPT_RECIPE = ("early_stopping", "val_fraction")
UNSWEPT_ARCH = ("num_classes",)  # CIFAR-10 has ten, always


@dataclass(frozen=True)
class Param:
    """One swept parameter: where it goes (recipe or architecture), and its list or range."""

    name: str
    target: str  # "recipe" or "arch"
    kind: str  # "list" or one of RANGE_KINDS
    values: tuple[Any, ...] = ()  # kind "list": the values, coerced
    low: float | int | None = None  # ranges: both ends included
    high: float | int | None = None

    @property
    def spec(self) -> str:
        """The SPEC text this parameter stands for (canonical, stored in the study)."""
        if self.kind == "list":
            return ",".join(_text(v) for v in self.values)
        return f"{self.kind}:{_text(self.low)}:{_text(self.high)}"

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial."""
        if self.kind == "list":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.kind == "loguniform")


def _text(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# ----------------------------------------------------------------------------- names and types


def sweepable(entry: Entry) -> dict[str, dict[str, tuple[type, ...]]]:
    """{"recipe": {field: types}, "arch": {argument: types}}: every name a sweep may set for `entry`."""
    from zoo import registry

    hints = typing.get_type_hints(Recipe)
    recipe = {n: _types(hints[n], None) for n in RECIPE_FIELDS if n not in UNSWEPT_RECIPE}
    builder = registry.get_builder(entry.architecture)
    try:
        arch_hints = typing.get_type_hints(builder)
    except Exception:  # an annotation that cannot be resolved at run time: fall back to the defaults
        arch_hints = {}
    arch = {n: _types(arch_hints.get(n), default) for n, default in
            registry.architecture_arguments(entry.architecture).items() if n not in UNSWEPT_ARCH}
    return {"recipe": recipe, "arch": arch}


def _types(hint: Any, default: Any) -> tuple[type, ...]:
    """The types a value may take, from a type hint (`float | None` -> (float, NoneType)) or a default."""
    if hint is not None:
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            return tuple(typing.get_args(hint))
        if isinstance(hint, type):
            return (hint,)
    if default is not None and default is not inspect.Parameter.empty:
        return (type(default),)
    return ()  # unknown: parse the text as int, float, bool, none or string


def resolve_name(name: str, names: dict[str, dict[str, tuple[type, ...]]], entry: Entry) -> tuple[str, str]:
    """(target, name) for a parameter name as typed (`-` may stand for `_`; `recipe.`/`arch.` qualify)."""
    raw = name
    name = name.strip().replace("-", "_")
    target = None
    if "." in name:
        target, name = name.split(".", 1)
        if target not in names:
            raise CifarzooError(f"parameter '{raw}': the prefix must be 'recipe.' or 'arch.'.")
    found = [t for t in (target,) if t and name in names[t]] if target else [t for t in names if name in names[t]]
    if not found:
        raise CifarzooError(
            f"unknown parameter '{raw}' for {entry.name}; valid recipe fields: {', '.join(names['recipe'])}; "
            f"valid arguments of architecture {entry.architecture}: {', '.join(names['arch']) or '(none)'}.")
    if len(found) > 1:
        raise CifarzooError(f"parameter '{raw}' is both a recipe field and an argument of {entry.architecture}; "
                            f"write recipe.{name} or arch.{name}.")
    return found[0], name


# ----------------------------------------------------------------------------- SPECs


def parse_param(text: str, entry: Entry, names: dict[str, dict[str, tuple[type, ...]]] | None = None) -> Param:
    """`NAME=SPEC` -> Param, with values coerced and checked (a CifarzooError says what is wrong)."""
    names = names or sweepable(entry)
    if "=" not in text:
        raise CifarzooError(f"--param '{text}' needs the form NAME=SPEC, e.g. lr=loguniform:1e-4:1e-2 or "
                            "batch_size=32,64,128.")
    raw_name, spec = (part.strip() for part in text.split("=", 1))
    target, name = resolve_name(raw_name, names, entry)
    allowed = names[target][name]
    if not spec:
        raise CifarzooError(f"--param {raw_name} has an empty SPEC; give a list such as 32,64 or a range "
                            "such as uniform:0:0.5.")
    if ":" in spec:
        param = _parse_range(name, target, spec, allowed)
    else:
        values = tuple(_coerce(name, item.strip(), allowed) for item in spec.split(","))
        if len(set(map(repr, values))) != len(values):
            raise CifarzooError(f"--param {name}={spec} lists a value twice; give each value once.")
        param = Param(name, target, "list", values)
    if target == "recipe":
        _check_recipe_values(param, entry)
    return param


def _parse_range(name: str, target: str, spec: str, allowed: tuple[type, ...]) -> Param:
    kind, *ends = spec.split(":")
    if kind not in RANGE_KINDS or len(ends) != 2:
        raise CifarzooError(f"--param {name}={spec} is not a SPEC; ranges are "
                            f"{', '.join(k + ':LO:HI' for k in RANGE_KINDS)} (or give a list such as 1,2,3).")
    numeric = {int, float} & set(allowed) or not allowed
    if not numeric:
        raise CifarzooError(f"{name} takes {_type_names(allowed)} values, so it cannot be a range; give a list.")
    if kind != "int" and allowed and float not in allowed:
        raise CifarzooError(f"{name} is an integer; use int:LO:HI (or a list) instead of {kind}.")
    try:
        low, high = (int(e) if kind == "int" else float(e) for e in ends)
    except ValueError:
        what = "integers" if kind == "int" else "numbers"
        raise CifarzooError(f"--param {name}={spec}: LO and HI must be {what}.") from None
    if not low < high:
        raise CifarzooError(f"--param {name}={spec}: LO must be below HI.")
    if kind == "loguniform" and low <= 0:
        raise CifarzooError(f"--param {name}={spec}: loguniform needs LO > 0.")
    return Param(name, target, kind, (), low, high)


def _coerce(name: str, text: str, allowed: tuple[type, ...]) -> Any:
    """One list item, as the field's type ('none' for an optional field)."""
    if text.lower() in ("none", "null") and (type(None) in allowed or not allowed):
        return None
    for kind in [t for t in allowed if t is not type(None)] or [int, float, bool, str]:
        value = _convert(text, kind)
        if value is not _NO:
            return value
    raise CifarzooError(f"--param {name}: '{text}' is not {_type_names(allowed)}.")


_NO = object()
_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _convert(text: str, kind: type) -> Any:
    if kind is bool:
        return _BOOLS.get(text.lower(), _NO)
    if kind is int:
        try:
            number = float(text)
        except ValueError:
            return _NO
        return int(number) if math.isfinite(number) and number == int(number) else _NO
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            return _NO
        return number if math.isfinite(number) else _NO
    if kind is str:
        return text if text else _NO
    return _NO


def _type_names(allowed: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "none"}
    return " or ".join(names.get(t, t.__name__) for t in allowed) or "a value"


def _check_recipe_values(param: Param, entry: Entry) -> None:
    """Values the recipe itself refuses (an unknown optimizer, an unknown augmentation policy)."""
    for value in param.values or (param.low, param.high):
        try:
            entry.recipe.replace(**{param.name: value})
        except (ValueError, TypeError) as err:
            raise CifarzooError(f"--param {param.name}: {err}.") from None
    if param.name == "augment":
        from benchmark.augment import POLICIES

        unknown = [v for v in param.values if v not in POLICIES]
        if unknown:
            raise CifarzooError(f"--param augment: unknown policy {', '.join(unknown)}; "
                                f"policies: {', '.join(POLICIES)}.")


def parse_params(texts: list[str], entry: Entry) -> list[Param]:
    """Every `--param`, in order; a name given twice is an error."""
    names = sweepable(entry)
    params: list[Param] = []
    for text in texts:
        param = parse_param(text, entry, names)
        if any(p.name == param.name for p in params):
            raise CifarzooError(f"--param {param.name} is given twice; give each parameter once.")
        params.append(param)
    return params


def grid_size(params: list[Param]) -> int:
    """Number of grid points (ranges have no grid: a CifarzooError)."""
    ranges = [p.name for p in params if p.kind != "list"]
    if ranges:
        raise CifarzooError(f"--grid needs lists, but {', '.join(ranges)} is a range; give a list such as "
                            "1e-4,1e-3,1e-2, or use --random N.")
    return math.prod(len(p.values) for p in params)


def split_params(params: dict[str, Any], targets: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(recipe overrides, architecture overrides) of one trial's values."""
    recipe = {k: v for k, v in params.items() if targets[k] == "recipe"}
    arch = {k: v for k, v in params.items() if targets[k] == "arch"}
    return recipe, arch


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A published grid: the entry it tunes, its parameters, and where the report states them."""

    entry: str
    params: tuple[str, ...]  # NAME=SPEC texts
    where: str


_BATCH = "batch_size=32,64,128"
PRESETS: dict[str, Preset] = {  # report 000 section 4.4: "hyperparameter grid with model and batch size"
    "report000-tinyvgg": Preset("tinyvgg-norm", ("hidden=32,64,128", _BATCH), "report 000, section 4.4.1"),
    "report000-resnet12": Preset("resnet12-norm", ("hidden=32,64,128", _BATCH), "report 000, section 4.4.2"),
    "report000-gru": Preset("gru-norm", ("hidden=32,64,128", "layers=1,2,3,4", _BATCH), "report 000, section 4.4.3"),
    "report000-vit": Preset("vit-norm", ("embed_dim=32,64,128", "depth=4,6,8", "mlp_dim=128,256,512", _BATCH),
                            "report 000, section 4.4.4"),
    "report000-mixer": Preset("mixer-norm", ("embed_dim=64,128", "depth=4,6,8", "token_dim=64,128",
                                             "channel_dim=64,128", _BATCH), "report 000, section 4.4.5"),
}


def get_preset(name: str) -> Preset:
    from zoo.errors import unknown_name

    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_name("preset", name, PRESETS) from None
