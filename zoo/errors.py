"""The one exception type for mistakes a user can make (bad path, unknown name, corrupt file).

The CLI turns it into a one-sentence message and exit code 2; programming errors stay ordinary
exceptions with tracebacks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some libraries put into their messages


class CifarzooError(Exception):
    """A user-facing error: its message is one sentence naming the problem and the fix."""

    exit_code = 2


def unknown_name(kind: str, name: str, known: Iterable[str]) -> CifarzooError:
    """Build the 'unknown X' error, listing the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = ", ".join(close) if close else ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return CifarzooError(f"unknown {kind} '{name}'; closest names: {hint}.")


def one_line(err: BaseException, *, root: bool = False, name: bool = True, limit: int = 300) -> str:
    """An exception as one short line: "Type: first line of the message". `root`: of its innermost cause
    (an exporter's outer errors are generic advice); `name=False` leaves the type out."""
    if root:
        for _ in range(10):
            inner = err.__cause__ or err.__context__
            if inner is None:
                break
            err = inner
    lines = [ln.strip() for ln in _ANSI.sub("", str(err)).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if not name:
        return (text or type(err).__name__)[:limit]
    return (f"{type(err).__name__}: {text}" if text else type(err).__name__)[:limit]
