"""A sweep on Optuna: the study (storage, definition, sampler, pruner), the objective that makes each trial
a normal run with a normal record, and the loop that hands out grid points so that none runs twice.

Selection uses validation accuracy only: a trial's value is the best `val_acc` of its run's history.
The test accuracy is stored beside it (a user attribute) to be shown, never compared.

Several workers (processes or machines) may run the same command against one storage: Optuna's
GridSampler gives trial k grid point k, so the first pass over the grid has no repeats; a trial whose
worker was killed keeps beating no heartbeat and is failed after GRACE_S, and any worker then enqueues
the grid points that no finished or running trial holds. A trial that still meets a finished or
earlier-started trial with the same parameters (a race) is pruned as a duplicate without training.

Trial states kept in the study: complete (value = best val acc), pruned (by the pruner, or a
duplicate: user attribute `duplicate_of`), failed with a record (the run failed: counts as done), and
failed without a record (interrupted: its grid point is run again on resume). A started trial names its
worker (user attribute `worker`, host:pid), so `sweep show` says where a running or interrupted one was.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import socket
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

import zoo
from benchmark.data import Dataset
from benchmark.records import read_record, record_path, run_id
from benchmark.runner import Run, RunContext, RunStopped, execute, prepare
from benchmark.sweep.space import Param, get_preset, grid_size, parse_params, split_params
from zoo.errors import CifarzooError, one_line

HEARTBEAT_S = 10  # a running trial writes a heartbeat this often ...
GRACE_S = 60  # ... and one silent this long (its worker was killed) is failed, and its grid point rerun
DEFAULT_MAX_TRIALS = 50
PRUNED = "pruned by the sweep"  # reason prefix of a pruned trial's record
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DEFINITION_KEYS = ("entry", "mode", "params", "profile", "seed", "data_fingerprint")


class TrialFailed(Exception):
    """The trial's run failed (its record says why); the sweep goes on."""


@dataclass(frozen=True)
class Sweep:
    """What one `cifarzoo sweep` command searches, and under which budget."""
    study: str
    entry: str
    params: tuple[Param, ...]
    mode: str  # "grid" or "random"
    n: int  # grid points, or --random N
    profile: str = "smoke"
    seed: int = 0  # the runs' seed (split, init, batches) and the sampler's

    @property
    def names(self) -> list[str]:
        return sorted(p.name for p in self.params)

    def grid(self) -> list[tuple[Any, ...]]:
        """Every grid point, as values in `names` order."""
        by_name = {p.name: p.values for p in self.params}
        return list(itertools.product(*(by_name[n] for n in self.names)))

    def definition(self, data: Dataset) -> dict[str, Any]:
        """What makes a study this sweep (stored in the study; a rerun must match it to resume)."""
        return {"entry": self.entry, "architecture": zoo.get_entry(self.entry).architecture, "mode": self.mode,
                "n": self.n, "params": {p.name: {"target": p.target, "spec": p.spec} for p in self.params},
                "profile": self.profile, "seed": self.seed, "data_fingerprint": data.fingerprint,
                "data_source": data.source}


def define_sweep(entry: str | None, param_texts: list[str], *, study: str | None = None, preset: str | None = None,
                 grid: bool = False, random: int | None = None, profile: str = "smoke", seed: int = 0,
                 max_trials: int = DEFAULT_MAX_TRIALS, yes: bool = False) -> Sweep:
    """Check a sweep's arguments and return it (every user mistake is a CifarzooError)."""
    chosen = get_preset(preset) if preset else None
    if chosen:
        entry = entry or chosen.entry
        base = zoo.get_entry(chosen.entry)
        arch = zoo.get_entry(entry).architecture
        if arch != base.architecture:
            raise CifarzooError(f"preset {preset} tunes architecture {base.architecture}, but {entry} is a {arch}; "
                                f"name a {base.architecture} entry or leave ENTRY out.")
        if random is not None:
            raise CifarzooError(f"preset {preset} is a grid ({chosen.where}); leave out --random.")
        grid = True
    if not entry:
        raise CifarzooError("name the ENTRY to tune (e.g. tinyvgg-norm), or give --preset.")
    base_entry = zoo.get_entry(entry)
    if getattr(base_entry.recipe, "val_fraction", 0.2) == 0:
        raise CifarzooError(f"{entry} trains on the whole train split without a validation split, so a sweep has "
                            "nothing to select on; sweep an entry whose recipe keeps a validation split.")
    texts = list(chosen.params) if chosen else []
    given = {t.split("=", 1)[0].strip().replace("-", "_") for t in param_texts}
    texts = [t for t in texts if t.split("=", 1)[0] not in given] + list(param_texts)  # --param overrides
    if not texts:
        raise CifarzooError("give at least one --param NAME=SPEC (e.g. --param lr=1e-3,1e-2), or a --preset.")
    params = tuple(parse_params(texts, base_entry))
    if grid and random is not None:
        raise CifarzooError("give --grid or --random N, not both.")
    if random is None:
        mode, n = "grid", grid_size(list(params))
    else:
        if random < 1:
            raise CifarzooError(f"--random needs a positive number of trials, not {random}.")
        mode, n = "random", random
    if n > max_trials and not yes:
        what = (f"the grid has {n} points ({' x '.join(str(len(p.values)) for p in params)})" if mode == "grid"
                else f"--random {n} asks for {n} trials")
        raise CifarzooError(f"{what}, more than --max-trials {max_trials}; pass --yes to run them all, or "
                            "shrink the search.")
    name = study or preset or f"{entry}-{mode}"
    if not STUDY_NAME.match(name):
        raise CifarzooError(f"study name '{name}' may hold only letters, digits, '.', '_' and '-' (starting with "
                            "a letter or digit, at most 100 characters); pick another --study.")
    return Sweep(name, entry, params, mode, n, profile, seed)


# ----------------------------------------------------------------------------- storage and study


def default_storage(results: Any) -> str:
    """SQLite in the results folder: `sqlite:///<results>/sweeps.db`."""
    from pathlib import Path

    return f"sqlite:///{(Path(results) / 'sweeps.db').resolve()}"


def open_storage(url: str, grace_s: float | None = None) -> Any:
    """An Optuna RDB storage with heartbeats (a trial silent for `grace_s` seconds is taken over); a URL that
    cannot be opened is a CifarzooError."""
    grace_s = GRACE_S if grace_s is None else grace_s
    _quiet_optuna()
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # workers wait for the lock
    for attempt in range(4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable enough
                return optuna.storages.RDBStorage(url, engine_kwargs=engine,
                                                  heartbeat_interval=min(HEARTBEAT_S, max(1, int(grace_s / 3))),
                                                  grace_period=int(grace_s))
        except Exception as err:
            # workers starting together race to create the tables: the loser finds them on a retry
            if attempt < 3 and any(w in str(err) for w in ("UNIQUE constraint", "already exists", "locked")):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise CifarzooError(f"cannot open the sweep storage {masked(url)} ({one_line(err, name=False)}); "
                                "pass --storage with a database URL Optuna accepts, e.g. sqlite:///results/sweeps.db."
                                ) from None
    raise AssertionError("unreachable")


def masked(url: str) -> str:
    """The URL with any password hidden (it is printed and stored)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def load_study(name: str, storage: Any) -> Any:
    """An existing study, or a CifarzooError naming the studies the storage holds."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise CifarzooError(f"no study '{name}' in {masked(storage.url)}; studies there: "
                            f"{', '.join(names) or '(none)'}.") from None


def open_study(sweep: Sweep, storage: Any, data: Dataset, pruner: Any = None) -> Any:
    """Create the sweep's study or load it to resume; a study made by different arguments is an error."""
    if sweep.mode == "grid":
        space = {p.name: list(p.values) for p in sweep.params}
        sampler: Any = _GridSampler(space, seed=sweep.seed)
    else:
        sampler = TrialSeededRandomSampler(sweep.seed)
    if pruner is None:  # early epochs are noisy: never prune before epoch 3, nor before 5 trials finished
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    study = optuna.create_study(study_name=sweep.study, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    wanted = sweep.definition(data)
    stored = study.user_attrs.get("cifarzoo")
    if stored is None and study.get_trials(deepcopy=False):
        raise CifarzooError(f"study '{sweep.study}' in {masked(storage.url)} was not made by cifarzoo sweep; "
                            "pick another --study.")
    if stored is not None:
        diffs = [k for k in DEFINITION_KEYS if stored.get(k) != wanted[k]]
        if diffs:
            raise CifarzooError(
                f"study '{sweep.study}' was made by another sweep (it differs in {', '.join(diffs)}: "
                f"{'; '.join(f'{k} {stored.get(k)} there, {wanted[k]} here' for k in diffs)}); rerun its own "
                "command to resume it, or pick a new --study.")
    if stored != wanted:
        study.set_user_attr("cifarzoo", wanted)  # first worker, or --random N raised to run more trials
    return study


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its own stopping rule: `run_sweep` decides when the grid is done (and
    Optuna's rule reads a grid id that the re-enqueued points of an interrupted sweep do not have)."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


class TrialSeededRandomSampler(optuna.samplers.BaseSampler):
    """Random search whose draw for trial n depends only on (seed, n, parameter): a resumed sweep, or one
    split over workers, draws the same points as one uninterrupted run (Optuna's RandomSampler restarts
    its sequence in every process)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        seed = zlib.crc32(f"{self.seed}/{trial.number}/{name}".encode())
        return optuna.samplers.RandomSampler(seed=seed).sample_independent(study, trial, name, distribution)


# ----------------------------------------------------------------------------- trials


def trial_run(sweep: Sweep, data: Dataset, number: int, values: dict[str, Any]) -> Run:
    """The run of one trial: the entry with the trial's recipe and architecture values."""
    recipe, arch = split_params(values, {p.name: p.target for p in sweep.params})
    run = prepare(sweep.entry, sweep.seed, sweep.profile, data, recipe_overrides=recipe, arch_overrides=arch,
                  sweep={"study": sweep.study, "trial": number, "params": values})
    # the study is part of the run id: studies never share records, and a trial rerun in its own study
    # (after an interruption) finds its checkpoint and its record again
    rid = run_id(run.entry.name, run.recipe.to_dict(), run.arch_kwargs, run.seed, run.profile.name,
                 f"{data.fingerprint}|study={sweep.study}")
    return dataclasses.replace(run, run_id=rid)


def best_val_acc(record: dict[str, Any]) -> float | None:
    """The selection number: the best validation accuracy over the run's epochs (never the test split)."""
    from benchmark.summary import best_val_accuracy

    return best_val_accuracy(record.get("history"))


def _objective(sweep: Sweep, data: Dataset, ctx: RunContext, prune: bool, grid: list | None) -> Callable:

    def objective(trial: Any) -> float:
        values = {p.name: p.suggest(trial) for p in sweep.params}
        twin = _duplicate_of(trial, values, sweep.names, grid)
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin)
            raise optuna.TrialPruned(f"same parameters as trial {twin}")
        run = trial_run(sweep, data, trial.number, values)
        trial.set_user_attr("run_id", run.run_id)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who runs it (`sweep show`)
        path = record_path(ctx.results, run.run_id)
        if path.exists() and not ctx.force:  # written by this study before (same run after an interruption)
            record = read_record(path)
            trial.set_user_attr("reused_record", True)
        else:
            try:
                record = execute(run, dataclasses.replace(ctx, on_epoch=_reporter(trial, prune)))
            except CifarzooError:
                if not path.exists():
                    raise
                record = read_record(path)  # a worker ran the same run (a profile-capped twin) and wrote it first
        if record["status"] == "skipped":
            (ctx.checkpoints / f"{run.run_id}.ckpt").unlink(missing_ok=True)  # a pruned run is never resumed
        return _value(trial, record)

    return objective


def _reporter(trial: Any, prune: bool) -> Callable[[dict[str, Any]], None]:
    """The per-epoch hook: report val acc to the pruner, stop the run when it says so."""
    rows: list[dict[str, Any]] = []

    def on_epoch(row: dict[str, Any]) -> None:
        rows.append(row)
        acc = row.get("val_acc")
        if acc is None:
            return
        trial.report(acc, step=row["epoch"])
        if prune and trial.should_prune():
            pruner = type(trial.study.pruner).__name__
            raise RunStopped(f"{PRUNED}'s {pruner} after epoch {row['epoch']} (val acc {acc:.4f}).", rows)

    return on_epoch


def _value(trial: Any, record: dict[str, Any]) -> float:

    val = best_val_acc(record)
    test = (record.get("test") or {}).get("accuracy")
    trial.set_user_attr("status", record["status"])
    trial.set_user_attr("val_acc", val)
    trial.set_user_attr("test_acc", test)
    trial.set_user_attr("reason", record["reason"])
    if record["status"] == "ok" and val is not None:
        return val
    if record["status"] == "skipped" and (record["reason"] or "").startswith(PRUNED):
        raise optuna.TrialPruned(record["reason"])
    raise TrialFailed(record["reason"] or "the run recorded no validation accuracy")


def _point(trial: Any, names: list[str], grid: list | None) -> tuple[Any, ...] | None:
    """A trial's parameter values in `names` order: from its params, its enqueued values, or its grid id."""
    for params in (trial.params, trial.system_attrs.get("fixed_params") or {}):
        if all(n in params for n in names):
            return tuple(params[n] for n in names)
    grid_id = trial.system_attrs.get("grid_id")
    return grid[grid_id] if grid is not None and grid_id is not None and grid_id < len(grid) else None


def settled(trial: Any) -> bool:
    """Done for good: complete, pruned by the pruner, or failed with a record (not interrupted, not a copy)."""
    if "duplicate_of" in trial.user_attrs:
        return False
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "status" in trial.user_attrs)


def interrupted(trial: Any) -> bool:
    """Failed without a record: its worker was stopped (Ctrl-C) or killed (heartbeat lapsed)."""
    return trial.state == TrialState.FAIL and "status" not in trial.user_attrs


def _duplicate_of(trial: Any, values: dict[str, Any], names: list[str], grid: list | None) -> int | None:
    """The number of a settled trial, or one started before this one, with the same values (else None)."""
    key = tuple(values[n] for n in names)
    me = (trial.datetime_start, trial.number)
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == trial.number or _point(other, names, grid) != key:
            continue
        if settled(other):
            return other.number
        if other.state == TrialState.RUNNING and "duplicate_of" not in other.user_attrs and \
                (other.datetime_start, other.number) < me:
            return other.number
    return None


# ----------------------------------------------------------------------------- the loop


@dataclass
class SweepResult:
    study: Any
    ran: int  # trials this process started
    pending: int  # grid points (or random trials) still to run, held by other workers, or left by --n-trials


def run_sweep(sweep: Sweep, storage: Any, data: Dataset, ctx: RunContext, *, n_trials: int | None = None,
              prune: bool = True, pruner: Any = None, echo: Callable[[str], None] = print) -> SweepResult:
    """Run (or resume, or help with) the sweep until every grid point / random trial is done or taken by
    another worker; `storage` is a URL or an opened storage; `n_trials` caps the trials this process starts."""
    storage = open_storage(storage) if isinstance(storage, str) else storage
    study = open_study(sweep, storage, data, pruner)
    grid = _sampler_grid(study.sampler) if sweep.mode == "grid" else None
    for note in _profile_notes(sweep):
        echo(note)
    objective = _objective(sweep, data, ctx, prune, grid)
    ran, finished = 0, []
    while n_trials is None or ran < n_trials:
        _fail_stale(study)
        if not _more_to_run(study, sweep, grid):
            break
        t0 = time.perf_counter()
        finished.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental/heartbeat warnings are not the user's business
            study.optimize(objective, n_trials=1, catch=(TrialFailed,),
                           callbacks=[lambda _study, trial: finished.append(trial)])
        ran += 1
        for trial in finished:
            echo(trial_line(trial, sweep, time.perf_counter() - t0))
    _fail_stale(study)
    return SweepResult(study, ran, _pending(study, sweep))


def _sampler_grid(sampler: Any) -> list | None:
    # GridSampler shuffles its grid by the seed and gives trial k point k; its list maps a just-started
    # trial's grid id to values before the trial has suggested them (None on an Optuna without it)
    grid = getattr(sampler, "_all_grids", None)
    return [tuple(p) for p in grid] if grid is not None else None


def _more_to_run(study: Any, sweep: Sweep, grid: list | None) -> bool:
    """Whether to start another trial; in grid mode, enqueue the points nobody holds (after the first pass)."""
    trials = study.get_trials(deepcopy=False)
    if sweep.mode == "random":
        return sum(not interrupted(t) for t in trials) < sweep.n
    if len(trials) < sweep.n:
        return True  # first pass: GridSampler gives trial k grid point k, no two workers share one
    names = sweep.names
    held = {_point(t, names, grid) for t in trials if settled(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)}
    todo = [p for p in sweep.grid() if p not in held]
    for point in todo:  # interrupted points: run them again
        study.enqueue_trial(dict(zip(names, point)))
    return bool(todo) or any(t.state == TrialState.WAITING for t in trials)


def _pending(study: Any, sweep: Sweep) -> int:
    trials = study.get_trials(deepcopy=False)
    if sweep.mode == "random":
        return max(sweep.n - sum(settled(t) or "duplicate_of" in t.user_attrs for t in trials), 0)
    done = {_point(t, sweep.names, None) for t in trials if settled(t)}
    return sum(p not in done for p in sweep.grid())


def trial_line(trial: Any, sweep: Sweep, seconds: float) -> str:
    """One line per finished trial, as the sweep prints it."""
    params = " ".join(f"{n}={trial.params.get(n, '?')}" for n in sweep.names)
    attrs = trial.user_attrs
    if "duplicate_of" in attrs:
        outcome = f"skipped, same parameters as trial {attrs['duplicate_of']}"
    elif attrs.get("status") == "ok":
        outcome = f"val acc {attrs['val_acc']:.4f}" + (f" (test {attrs['test_acc']:.4f})" if attrs.get("test_acc")
                                                       is not None else "")
    elif "status" in attrs:
        outcome = f"{'pruned' if trial.state == TrialState.PRUNED else 'failed'}: {attrs.get('reason')}"
    else:
        outcome = "interrupted"
    return f"trial {trial.number} [{params}]: {outcome}  ({seconds:.0f}s)"


def _profile_notes(sweep: Sweep) -> list[str]:
    """Where the profile overrides a swept recipe value (smoke caps batch_size at 64): say so up front."""
    from benchmark.profiles import get_profile

    entry, profile = zoo.get_entry(sweep.entry), get_profile(sweep.profile)
    notes = []
    for p in sweep.params:
        if p.target != "recipe" or p.kind != "list":
            continue
        capped = {v: getattr(profile.apply(entry.recipe.replace(**{p.name: v})), p.name) for v in p.values}
        changed = {v: c for v, c in capped.items() if v != c}
        if changed:
            notes.append(f"note: profile {profile.name} runs {p.name} " + ", ".join(f"{v} as {c}" for v, c in
                         changed.items()) + "; such trials repeat another's run and share its record.")
    return notes


def _fail_stale(study: Any) -> None:

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


def _quiet_optuna() -> None:

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep prints its own line per trial
