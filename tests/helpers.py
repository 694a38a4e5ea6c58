"""Small helpers shared by the tests (imported as `helpers`, like `record_factory`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def stop_after(epoch: int) -> Callable[[dict[str, Any]], None]:
    """An `on_epoch` hook that kills the fit after `epoch`, as a Ctrl-C would (its checkpoint is written)."""

    def hook(row: dict[str, Any]) -> None:
        if row["epoch"] >= epoch:
            raise KeyboardInterrupt(f"stopped after epoch {row['epoch']} by the test")

    return hook


ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPORTER_ENV = {"CIFARZOO_ONNX_EXPORTER": ""}  # an env update for the product's own exporter order (conftest)
REAL_ZIP = (ROOT / ".." / "shared" / "datasets" / "cifar10-jpeg.zip").resolve()  # the real-data tests' copy


def cifarzoo(*args: str, env: dict | None = None, cwd=ROOT, check: bool = False, timeout: float = 900):
    """Run the CLI in a new process (as a user would); `check`: fail the test with its output unless it exits 0."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "cifarzoo", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"cifarzoo {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
