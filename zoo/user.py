"""Users' own architectures: `file.py:function`, `package.module:function` or `timm:NAME`.

A spec names a function that returns an `nn.Module` taking (N, 3, 32, 32) images and giving (N, 10) logits;
its keyword arguments are the entry's `arch_kwargs`. `timm:NAME` builds timm's architecture untrained with
`num_classes=10` (and `img_size=32` where the architecture takes one). The spec itself becomes the
architecture's registered name, so records say which code built the network.

This runs the user's code: only code a user names on the command line or in an entry file of their own.
Records, sidecars and checkpoints never name code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError, one_line
from zoo.recipe import EarlyStopping, Recipe

TIMM = "timm:"
# the recipe a user model gets without --recipe or --recipe-from: a plain, safe CIFAR-10 baseline
DEFAULT_RECIPE = Recipe(optimizer="adam", lr=1e-3, batch_size=128, max_epochs=30, augment="basic",
                        normalize="dataset", early_stopping=EarlyStopping(monitor="val_loss", patience=5))
_RESOLVED: dict[str, str] = {}  # spec -> what it was resolved to (a file path or module), to refuse clashes


def is_spec(name: str) -> bool:
    """Does `name` name user code (rather than a registered architecture)?"""
    return name.startswith(TIMM) or ":" in name


def resolve_architecture(spec: str, base: Path | None = None) -> str:
    """The registered architecture name for `spec`, registering its builder on first use. `base`: the folder
    a relative `file.py` is relative to (an entry file's own folder)."""
    from zoo import registry

    if not is_spec(spec):
        registry.get_builder(spec)  # a registered name, or one sentence with the closest ones
        return spec
    builder, target = _timm(spec[len(TIMM):]) if spec.startswith(TIMM) else _function(spec, base)
    if spec in _RESOLVED:
        if _RESOLVED[spec] != target:
            raise CifarzooError(f"architecture '{spec}' already names {_RESOLVED[spec]}, not {target}; give the "
                                "file a distinct name.")
        return spec
    registry.register_model(spec)(builder)
    _RESOLVED[spec] = target
    return spec


def _function(spec: str, base: Path | None) -> tuple[Callable[..., Any], str]:
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise CifarzooError(f"'{spec}' is not a model spec; use path/to/file.py:function, package.module:function "
                            "or timm:NAME.")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        path = path if path.is_absolute() or base is None else base / path
        if not path.is_file():
            raise CifarzooError(f"model file {path} (from '{spec}') does not exist; check the path.")
        module, target = _load_file(path), str(path.resolve())
    else:
        try:
            module, target = importlib.import_module(where), where
        except Exception as err:  # the user's module may fail in any way while importing
            raise CifarzooError(f"cannot import module '{where}' (from '{spec}'): {one_line(err)}.") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise CifarzooError(f"{where} has no function '{name}' (from '{spec}'); name a function that returns "
                            "an nn.Module.")
    return fn, f"{target}:{name}"


def _load_file(path: Path) -> Any:
    module_name = f"cifarzoo_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise CifarzooError(f"model file {path} failed while loading: {one_line(err)}.") from None
    return module


def _timm(name: str) -> tuple[Callable[..., Any], str]:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:6]}*")[:5]
        raise CifarzooError(f"timm has no architecture '{name}'" + (f"; close: {', '.join(close)}" if close else "")
                            + "; `python -c \"import timm; print(timm.list_models())\"` lists them.")

    def build(**kwargs: Any) -> Any:
        kwargs = {"num_classes": 10, **kwargs}
        try:  # transformers take the image size; convolutional nets do not
            return timm.create_model(name, pretrained=False, img_size=32, **kwargs)
        except TypeError:
            return timm.create_model(name, pretrained=False, **kwargs)

    build.__name__ = f"timm_{name}"
    return build, f"timm {name}"


def check_builds(architecture: str, arch_kwargs: dict[str, Any], input_size: int = 32) -> int:
    """Build the network once on a dummy batch: (2, 10) logits or one sentence; returns its parameter count."""
    import torch

    from zoo.registry import create

    try:
        model = create(architecture, **arch_kwargs).eval()
        with torch.no_grad():
            out = model(torch.zeros(2, 3, input_size, input_size))
    except CifarzooError:
        raise
    except Exception as err:
        raise CifarzooError(f"'{architecture}' did not build and run on a (2, 3, {input_size}, {input_size}) batch: "
                            f"{one_line(err)}.") from None
    if not isinstance(model, torch.nn.Module) or not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 10):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CifarzooError(f"'{architecture}' must return an nn.Module giving (N, 10) logits for (N, 3, {input_size}, "
                            f"{input_size}) images; it gave {shape}.")
    from zoo.hub import num_parameters

    return num_parameters(model)


def default_name(spec: str) -> str:
    """An entry name for a model spec: timm:resnet18 -> timm-resnet18, nets/mynet.py:build -> mynet-build."""
    import re

    if spec.startswith(TIMM):
        raw = f"timm-{spec[len(TIMM):]}"
    else:
        where, _, fn = spec.rpartition(":")
        stem = Path(where).stem if where.endswith(".py") else where.rsplit(".", 1)[-1]
        raw = f"{stem}-{fn}"
    return re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-.")[:80] or "user-model"


def read_recipe_file(path: Path) -> Recipe:
    """A recipe TOML (Recipe fields at the top level or under [recipe]) over DEFAULT_RECIPE, or one sentence."""
    from zoo.entryfiles import check_recipe_table, parse_toml

    data = parse_toml(path)
    table = data.get("recipe", data)
    check_recipe_table(table, path)
    try:
        return DEFAULT_RECIPE.replace(**table)
    except (TypeError, ValueError) as err:
        raise CifarzooError(f"recipe file {path}: {err}.") from None


def user_entry(spec: str, *, name: str | None = None, recipe: Recipe | None = None,
               arch_kwargs: dict[str, Any] | None = None) -> Any:
    """An Entry for a user's model spec (its network built once to check it gives (N, 10) logits)."""
    from zoo.entry import Entry
    from zoo.registry import valid_name

    name = name or default_name(spec)
    where, _, fn = spec.rpartition(":")
    if where.endswith(".py") and not Path(where).expanduser().is_absolute():  # the entry file must find it later
        spec = f"{Path(where).expanduser().resolve()}:{fn}"
    if not valid_name(name):
        raise CifarzooError(f"'{name}' is not a valid entry name; use lower-case letters, digits, '.', '_', '-'.")
    architecture = resolve_architecture(spec)
    recipe = recipe or DEFAULT_RECIPE
    params = check_builds(architecture, dict(arch_kwargs or {}), recipe.input_size)
    return Entry(name=name, architecture=architecture, recipe=recipe, report="user", report_model=spec,
                 family="user", kind="user", arch_kwargs=dict(arch_kwargs or {}), num_params=params,
                 description=f"The user's model {spec}, benchmarked by cifarzoo.")
