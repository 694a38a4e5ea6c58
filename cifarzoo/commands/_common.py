"""Options and helpers shared by the run-making commands (train, eval, bench, sweep)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from zoo.errors import CifarzooError

PROFILE_NAMES = ("smoke", "quick", "full")

device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to train and evaluate; auto picks cuda when present.")
results_option = click.option(
    "--results", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True,
    help="Folder of result records (one JSON per run).")
profile_option = click.option(
    "--profile", type=click.Choice(PROFILE_NAMES), default="smoke", show_default=True,
    help="Budget: smoke (seconds), quick (CPU minutes), full (the report's recipe).")
progress_option = click.option(
    "--progress", type=click.Choice(["auto", "bar", "plain", "quiet"]), default="auto", show_default=True,
    help="Progress display: bars on a terminal, plain lines otherwise.")


def resolve_device(name: str) -> str:
    """'auto' -> cuda if present else cpu; asking for an absent cuda is a user error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CifarzooError("--device cuda was asked for, but no CUDA device is present; use --device cpu.")
    return name


def command_line() -> str:
    """The command as typed, stored in every record so each number can be reproduced."""
    from zoo.files import portable_command

    argv = list(sys.argv)
    argv[0] = "cifarzoo" if argv[0].endswith(("cifarzoo", "__main__.py")) else argv[0]
    return portable_command(shlex.join(argv))  # a data file by its name, not this machine's folders
