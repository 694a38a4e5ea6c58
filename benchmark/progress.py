"""Progress reporting: tqdm bars on a terminal, plain log lines elsewhere (CI, pipes), or nothing."""

from __future__ import annotations

import sys
import time
from typing import Any

MODES = ("auto", "bar", "plain", "quiet")


def _resolve(mode: str) -> str:
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    return mode


class Progress:
    """A counted task (epochs of a run, runs of a bench) shown as a bar or as log lines."""

    def __init__(self, total: int, desc: str, mode: str = "auto", position: int = 0, leave: bool = True):
        self.mode = _resolve(mode)
        self.total, self.desc, self.done = total, desc, 0
        self.start = time.perf_counter()
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, position=position, leave=leave, dynamic_ncols=True)

    def update(self, n: int = 1, **fields: Any) -> None:
        """Advance by n and show `fields` (e.g. loss=0.52, val_acc=0.81)."""
        self.done += n
        text = "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(n)
        elif self.mode == "plain":
            elapsed = time.perf_counter() - self.start
            left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            print(f"{self.desc} {self.done}/{self.total}  {text}  elapsed {elapsed:.0f}s  left ~{left:.0f}s",
                  file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        """A message that does not break the bar."""
        if self.mode == "quiet":
            return
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
