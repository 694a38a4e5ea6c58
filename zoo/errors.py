"""The one exception type for mistakes a user can make (bad path, unknown name, corrupt file).

The CLI turns it into a one-sentence message and exit code 2; programming errors stay ordinary
exceptions with tracebacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CifarzooError(Exception):
    """A user-facing error: its message is one sentence naming the problem and the fix."""

    exit_code = 2


def unknown_name(kind: str, name: str, known: Iterable[str]) -> CifarzooError:
    """Build the 'unknown X' error, listing the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = ", ".join(close) if close else ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return CifarzooError(f"unknown {kind} '{name}'; closest names: {hint}.")
