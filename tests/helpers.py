"""Small helpers shared by the tests (imported as `helpers`, like `record_factory`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def stop_after(epoch: int) -> Callable[[dict[str, Any]], None]:
    """An `on_epoch` hook that kills the fit after `epoch`, as a Ctrl-C would (its checkpoint is written)."""

    def hook(row: dict[str, Any]) -> None:
        if row["epoch"] >= epoch:
            raise KeyboardInterrupt(f"stopped after epoch {row['epoch']} by the test")

    return hook
