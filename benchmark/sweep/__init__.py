"""Hyperparameter sweeps on Optuna: grid or random search over recipe fields and architecture arguments,
each trial a normal run with a normal record, selected on validation accuracy only.

    space   -- NAME=SPEC parsing, type coercion, presets of the reports' grids
    study   -- storage, study, objective, the resumable multi-worker loop
    report  -- trials ranked for `cifarzoo sweep show`
    promote -- the best trial as a registered entry
"""

from benchmark.sweep.promote import Promotion, promote
from benchmark.sweep.report import TrialRow, best_row, format_rows, study_rows
from benchmark.sweep.space import PRESETS, Param, Preset, get_preset, grid_size, parse_param, parse_params
from benchmark.sweep.study import (
    DEFAULT_MAX_TRIALS,
    Sweep,
    SweepResult,
    best_val_acc,
    default_storage,
    define_sweep,
    load_study,
    open_storage,
    run_sweep,
)

__all__ = [
    "DEFAULT_MAX_TRIALS", "PRESETS", "Param", "Preset", "Promotion", "Sweep", "SweepResult", "TrialRow", "best_row",
    "best_val_acc", "default_storage", "define_sweep", "format_rows", "get_preset", "grid_size", "load_study",
    "open_storage", "parse_param", "parse_params", "promote", "run_sweep", "study_rows",
]
