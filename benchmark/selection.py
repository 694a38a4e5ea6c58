"""What a bench runs, from the command's words: entry names and globs, and seeds.

Kept apart from the engine: `cifarzoo bench` checks these before importing `benchmark.bench` (the data,
training, ONNX and tracking modules), so a mistyped name, seed list or shard is answered sooner: 3.3 s instead
of 4.8-5.0 s on a 2-core Zen 1 VM. The rest is the registry's own torch import (`zoo.entries` imports every
model module).
"""

from __future__ import annotations

import fnmatch

import zoo
from zoo.errors import CifarzooError


def resolve_entries(patterns: list[str], all_entries: bool, exclude: list[str]) -> list[str]:
    """Entry names matching the globs (or all), minus the excluded ones; a glob matching nothing is an error."""
    known = zoo.list_models()
    if all_entries and patterns:
        raise CifarzooError("give entry names/globs or --all, not both.")
    if not all_entries and not patterns:
        raise CifarzooError("name the entries to bench (names or globs such as 'resnet*'), or pass --all.")
    chosen: list[str] = list(known) if all_entries else []
    for pattern in patterns:
        matched = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise CifarzooError(f"'{pattern}' matches no entry; available: {', '.join(known)}.")
        chosen += [n for n in matched if n not in chosen]
    return [n for n in chosen if not any(fnmatch.fnmatchcase(n, g) for g in exclude)]


MAX_SEED = 2**31 - 1  # seeds feed torch generators and run ids; larger ones are typos, not experiments


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CifarzooError(f"--seeds must be comma-separated integers such as 0,1,2, not '{text}'.") from None
    if not seeds:
        raise CifarzooError("--seeds is empty; give at least one seed, e.g. --seeds 0.")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise CifarzooError(f"seed {bad[0]} is out of range; seeds are integers from 0 to {MAX_SEED}.")
    return list(dict.fromkeys(seeds))
