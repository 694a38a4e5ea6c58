"""Jinja filters: how numbers look on the site. Missing values (None, NaN) show as an em dash."""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Undefined

DASH = "—"
MINUS = "−"  # U+2212: a real minus sign lines up with "+" in tabular figures


def missing(value: Any) -> bool:
    """None, NaN, pandas' NA or a key the record lacks (jinja Undefined)."""
    if value is None or isinstance(value, Undefined):
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):  # pd.NA refuses bool()
        return True


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage number, without the sign: 0.8457 -> "84.57"."""
    return DASH if missing(value) else f"{float(value) * 100:.{digits}f}"


def pm(mean: Any, std: Any, digits: int = 2) -> str:
    """Mean ± sample std of fractions, as percentages; one seed has no std ("—")."""
    if missing(mean):
        return DASH
    return f"{pct(mean, digits)} ± {pct(std, digits)}"


def signed(value: Any, digits: int = 2) -> str:
    """+1.23 / −1.23 (points)."""
    if missing(value):
        return DASH
    text = f"{float(value):+.{digits}f}"
    return text.replace("-", MINUS)


def num(value: Any, digits: int = 3) -> str:
    """A plain number with `digits` decimals."""
    return DASH if missing(value) else f"{float(value):.{digits}f}"


def sig(value: Any, digits: int = 3) -> str:
    """A number to `digits` significant figures: 0.7453 -> "0.745", 12.41 -> "12.4"."""
    if missing(value):
        return DASH
    value = float(value)
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def count(value: Any) -> str:
    """1186762 -> "1.19 M"; 14241144000 -> "14.2 G"."""
    if missing(value):
        return DASH
    value = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{sig(value / size)} {unit}"
    return f"{value:.0f}"


def times(value: Any) -> str:
    """A speed-up factor: 2.336 -> "2.34×"."""
    return DASH if missing(value) else f"{float(value):.2f}×"


def duration(seconds: Any) -> str:
    """52.3 -> "52 s"; 204 -> "3.4 min"; 5400 -> "1.5 h"."""
    if missing(seconds):
        return DASH
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def sort_key(value: Any) -> str:
    """The data-sort attribute of a table cell: the raw number, or "" for missing (sorted last)."""
    if missing(value):
        return ""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, bool):
        return str(int(value))
    return repr(float(value))


FILTERS = {"pct": pct, "pm": pm, "signed": signed, "num": num, "sig": sig, "count": count, "times": times,
           "duration": duration, "sort_key": sort_key}
