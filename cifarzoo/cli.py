"""The click entry point. Commands live one per module in `cifarzoo.commands` and are imported
only when invoked, so `cifarzoo --help` stays instant (no torch import)."""

from __future__ import annotations

import importlib
import logging
import sys

import click

# command name -> (module in cifarzoo.commands, attribute, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("data", "data", "Inspect a data source (counts, classes, mean/std, fingerprint)."),
    "list": ("zoo_cmds", "list_cmd", "List the registered entries."),
    "info": ("zoo_cmds", "info", "Show one entry: architecture, recipe, report, parameters."),
    "train": ("train", "train", "Train one entry and write its result record and weights."),
    "eval": ("train", "eval_cmd", "Evaluate an entry's stored weights on the test split."),
    "predict": ("predict", "predict", "Classify image files with an entry's trained weights."),
    "export": ("inference", "export", "Export an entry to ONNX and check parity with PyTorch."),
    "time": ("inference", "time_cmd", "Time inference in PyTorch and ONNX Runtime."),
    "bench": ("bench", "bench", "Train, evaluate, export and time many entries; build the site."),
    "leaderboard": ("leaderboard", "leaderboard", "Build or serve the static leaderboard site."),
    "sweep": ("sweep", "sweep", "Hyperparameter search (grid or random) on Optuna."),
    "card": ("card", "card", "Write a Hugging Face model card beside an entry's weights."),
    "publish": ("publish", "publish", "Ship an entry's best full run inside the package (maintainers)."),
    "verify": ("verify", "verify", "Check that published weights score what their records state, on your data."),
    "doctor": ("doctor", "doctor", "Show the machine and the precision/layout cifarzoo trains in here."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"cifarzoo.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cifarzoo")
@click.option("--entries", "entry_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A folder of entry files (*.toml) to register for this command (repeatable); "
                   "$CIFARZOO_HOME/entries/ is always read.")
def cli(entry_dirs: tuple[str, ...]) -> None:
    """cifarzoo: the CIFAR-10 model zoo, benchmark runner and leaderboard."""
    if entry_dirs:
        import zoo

        for folder in entry_dirs:
            zoo.add_entries(folder)


class _Lower(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main() -> None:
    """Run the CLI, turning user errors into one sentence and exit code 2; warnings anyone logs (a skipped
    record, a discarded checkpoint) are printed to stderr as "warning: ..." lines."""
    from zoo.errors import CifarzooError

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lower())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        cli.main(standalone_mode=False)
    except CifarzooError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
