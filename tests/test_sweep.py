"""`cifarzoo sweep`: SPECs and bad input (no training), then a 2x2 grid on synthetic data with the smoke profile:
one run per grid point, selection on validation accuracy, resume after --n-trials and after Ctrl-C, two worker
processes on one SQLite study, pruning, the study page, and promotion into an entry that `cifarzoo bench` runs."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from helpers import cifarzoo

import zoo
from benchmark import runner
from benchmark import sweep as sw
from benchmark.data import load_dataset
from benchmark.records import read_record
from benchmark.runner import RunContext
from benchmark.sweep import study as study_mod
from zoo.errors import CifarzooError

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "tinyvgg-norm"
GRID = ["hidden=4,8", "batch_size=16,32"]
POINTS = {(4, 16), (4, 32), (8, 16), (8, 32)}


def cifarzoo_main(monkeypatch, capsys, *args):
    """Run the CLI in this process; returns (exit code, stdout, stderr)."""
    from cifarzoo.cli import main

    monkeypatch.setattr(sys, "argv", ["cifarzoo", *args])
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def records_in(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}


def points(study, state="complete"):
    return [(r.params["hidden"], r.params["batch_size"]) for r in sw.study_rows(study) if r.state == state]


# ----------------------------------------------------------------------------- SPECs (no training)


def test_lists_are_coerced_to_the_field_types():
    entry = zoo.get_entry(ENTRY)
    assert sw.parse_param("batch_size=32,64", entry).values == (32, 64)
    assert sw.parse_param("batch-size=32,64", entry).name == "batch_size"
    assert sw.parse_param("lr=1e-3,0.01", entry).values == (0.001, 0.01)
    assert sw.parse_param("ema_decay=none,0.99", entry).values == (None, 0.99)
    assert sw.parse_param("channels_last=true,false", entry).values == (True, False)
    assert sw.parse_param("optimizer=sgd,adamw", entry).values == ("sgd", "adamw")
    hidden = sw.parse_param("hidden=32,64,128", entry)
    assert (hidden.target, hidden.values) == ("arch", (32, 64, 128))
    assert all(type(v) is int for v in hidden.values)


def test_ranges():
    lr = sw.parse_param("lr=loguniform:1e-4:1e-2", zoo.get_entry(ENTRY))
    assert (lr.kind, lr.low, lr.high, lr.spec) == ("loguniform", 1e-4, 1e-2, "loguniform:0.0001:0.01")
    layers = sw.parse_param("layers=int:1:4", zoo.get_entry("gru-norm"))
    assert (layers.target, layers.kind, layers.low, layers.high) == ("arch", "int", 1, 4)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(CifarzooError) as err:
        sw.parse_param("hiden=8,16", zoo.get_entry(ENTRY))
    message = str(err.value)
    assert "unknown parameter 'hiden'" in message
    assert "batch_size" in message and "weight_decay" in message and "hidden" in message
    assert "num_classes" not in message and "early_stopping" not in message


@pytest.mark.parametrize("text, words", [
    ("lr", "NAME=SPEC"),
    ("lr=", "empty SPEC"),
    ("lr=loguniform:1e-2", "not a SPEC"),
    ("lr=gauss:0:1", "not a SPEC"),
    ("lr=uniform:1:0", "LO must be below HI"),
    ("lr=loguniform:0:1", "LO > 0"),
    ("lr=uniform:a:b", "must be numbers"),
    ("batch_size=uniform:8:64", "use int:LO:HI"),
    ("batch_size=32,abc", "'abc' is not an integer"),
    ("batch_size=32,32", "lists a value twice"),
    ("optimizer=adam,rmsprop", "optimizer must be one of"),
    ("optimizer=int:1:3", "cannot be a range"),
    ("augment=norm,nosuchpolicy", "unknown policy nosuchpolicy"),
    ("early_stopping=none", "unknown parameter"),
    ("num_classes=10", "unknown parameter"),
])
def test_malformed_specs_are_one_clear_sentence(text, words):
    with pytest.raises(CifarzooError, match=words):
        sw.parse_param(text, zoo.get_entry(ENTRY))


def test_grid_needs_lists_and_respects_the_trial_limit():
    with pytest.raises(CifarzooError, match="--grid needs lists.*--random N"):
        sw.define_sweep(ENTRY, ["lr=loguniform:1e-4:1e-2"], grid=True)
    with pytest.raises(CifarzooError, match="give --grid or --random N, not both"):
        sw.define_sweep(ENTRY, ["lr=1e-3,1e-2"], grid=True, random=3)
    big = ["hidden=4,8,16", "batch_size=16,32,64", "lr=1e-3,1e-2,1e-1", "weight_decay=0,1e-4,1e-3"]
    with pytest.raises(CifarzooError, match=r"81 points \(3 x 3 x 3 x 3\), more than --max-trials 50.*--yes"):
        sw.define_sweep(ENTRY, big)
    assert sw.define_sweep(ENTRY, big, yes=True).n == 81
    with pytest.raises(CifarzooError, match="--random 60 asks for 60 trials"):
        sw.define_sweep(ENTRY, ["lr=loguniform:1e-4:1e-2"], random=60)
    random = sw.define_sweep(ENTRY, ["lr=loguniform:1e-4:1e-2"], random=5)
    assert (random.mode, random.n, random.study) == ("random", 5, f"{ENTRY}-random")


def test_presets_are_report_000s_grids():
    expected = {  # report 000, section 4.4: the grids as the report states them
        "report000-tinyvgg": {"hidden": (32, 64, 128), "batch_size": (32, 64, 128)},
        "report000-resnet12": {"hidden": (32, 64, 128), "batch_size": (32, 64, 128)},
        "report000-gru": {"hidden": (32, 64, 128), "layers": (1, 2, 3, 4), "batch_size": (32, 64, 128)},
        "report000-vit": {"embed_dim": (32, 64, 128), "depth": (4, 6, 8), "mlp_dim": (128, 256, 512),
                          "batch_size": (32, 64, 128)},
        "report000-mixer": {"embed_dim": (64, 128), "depth": (4, 6, 8), "token_dim": (64, 128),
                            "channel_dim": (64, 128), "batch_size": (32, 64, 128)},
    }
    assert set(sw.PRESETS) == set(expected)
    sizes = {}
    for name, grid in expected.items():
        plan = sw.define_sweep(None, [], preset=name, yes=True)
        assert {p.name: p.values for p in plan.params} == grid
        assert all(p.target == ("recipe" if p.name == "batch_size" else "arch") for p in plan.params)
        assert (plan.mode, plan.study) == ("grid", name)
        sizes[name] = plan.n
    assert sizes == {"report000-tinyvgg": 9, "report000-resnet12": 9, "report000-gru": 36, "report000-vit": 81,
                     "report000-mixer": 72}
    narrowed = sw.define_sweep("tinyvgg-aug", ["hidden=64,128"], preset="report000-tinyvgg")
    assert {p.name: p.values for p in narrowed.params} == {"hidden": (64, 128), "batch_size": (32, 64, 128)}
    with pytest.raises(CifarzooError, match="tunes architecture tinyvgg"):
        sw.define_sweep("gru-norm", [], preset="report000-tinyvgg")


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-folder/deeper/sweeps.db", "nosuchdialect://x/y",
                                 "postgresql://user:s3cret@127.0.0.1:9/db"])
def test_storage_that_cannot_be_opened(url):
    with pytest.raises(CifarzooError) as err:
        sw.open_storage(url)
    assert "cannot open the sweep storage" in str(err.value) and "s3cret" not in str(err.value)


def test_cli_bad_input_exits_2_with_one_sentence(monkeypatch, capsys, tmp_path):
    code, _, err = cifarzoo_main(monkeypatch, capsys, "sweep", ENTRY, "--param", "hiden=4,8", "--data", "synthetic",
                                 "--results", str(tmp_path))
    assert code == 2 and err.startswith("error: unknown parameter 'hiden'") and "Traceback" not in err
    code, _, err = cifarzoo_main(monkeypatch, capsys, "sweep", "run", ENTRY, "--param", "hidden=4,8", "--storage",
                                 "sqlite:////nonexistent-folder/x.db", "--data", "synthetic",
                                 "--results", str(tmp_path))
    assert code == 2 and "cannot open the sweep storage sqlite:////nonexistent-folder/x.db" in err
    code, _, err = cifarzoo_main(monkeypatch, capsys, "sweep", "show", "nothing", "--results", str(tmp_path / "none"))
    assert code == 2 and "no sweep storage at" in err


# ----------------------------------------------------------------------------- a 2x2 grid, run for real


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The 2x2 grid, run in three goes: --n-trials 2; a go stopped by Ctrl-C in its first run; a resume."""
    out = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFARZOO_HOME", str(out / "home"))
        results = out / "results"
        data = load_dataset("synthetic")
        plan = sw.define_sweep(ENTRY, GRID, study="grid22")
        ctx = RunContext(results, data, "cpu", "pytest", "quiet")
        url = sw.default_storage(results)
        results.mkdir()
        lines: list[str] = []
        first = sw.run_sweep(plan, url, data, ctx, n_trials=2, echo=lines.append)
        before = {k: (r["started_at"], (results / f"{k}.json").stat().st_mtime_ns)
                  for k, r in records_in(results).items()}

        def ctrl_c(*args):
            raise KeyboardInterrupt

        with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(runner, "export_and_check", ctrl_c)  # Ctrl-C after training, its weights saved
            sw.run_sweep(plan, url, data, ctx, echo=lines.append)
        after_interrupt = len(records_in(results))
        resumed = sw.run_sweep(plan, url, data, ctx, echo=lines.append)
        again = sw.run_sweep(plan, url, data, ctx, echo=lines.append)
        yield SimpleNamespace(out=out, results=results, url=url, data=data, ctx=ctx, plan=plan, first=first,
                              before=before, after_interrupt=after_interrupt, resumed=resumed, again=again,
                              lines=lines, home=out / "home", study=sw.load_study("grid22", sw.open_storage(url)))


def test_grid_runs_every_point_once_and_selects_on_validation_accuracy(grid):
    study = grid.study
    assert sorted(points(study)) == sorted(POINTS)  # exactly 4 complete trials, one per grid point
    records = records_in(grid.results)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    by_point = {(r["sweep"]["params"]["hidden"], r["sweep"]["params"]["batch_size"]): r for r in records.values()}
    assert set(by_point) == POINTS
    for (hidden, batch), r in by_point.items():
        assert r["sweep"]["study"] == "grid22"
        assert r["entry"]["arch_kwargs"]["hidden"] == hidden and r["recipe"]["batch_size"] == batch
    vals = {p: sw.best_val_acc(r) for p, r in by_point.items()}
    for row in [r for r in sw.study_rows(study) if r.state == "complete"]:  # value = the record's best val acc
        point = (row.params["hidden"], row.params["batch_size"])
        assert row.val_acc == pytest.approx(vals[point])
        assert row.test_acc == pytest.approx(by_point[point]["test"]["accuracy"])
    best = sw.best_row(sw.study_rows(study))
    top = max(vals.values())
    assert best.val_acc == pytest.approx(top)
    assert vals[(best.params["hidden"], best.params["batch_size"])] == top
    assert best.number == min(r.number for r in sw.study_rows(study) if r.state == "complete" and r.val_acc == top)


def test_interrupted_sweep_resumes_without_repeating_finished_trials(grid):
    assert grid.first.ran == 2 and grid.first.pending == 2
    assert grid.after_interrupt == 2  # Ctrl-C left no record for the interrupted trial
    rows = sw.study_rows(grid.study)
    interrupted = [r for r in rows if r.state == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].number == 2
    assert grid.resumed.ran == 2 and grid.resumed.pending == 0  # the untried point, then the interrupted one
    after = {k: (r["started_at"], (grid.results / f"{k}.json").stat().st_mtime_ns)
             for k, r in records_in(grid.results).items()}
    assert all(after[k] == v for k, v in grid.before.items())  # the first two runs were not run again
    assert grid.again.ran == 0 and len(grid.study.trials) == 5  # a finished sweep starts nothing
    assert sum("val acc" in line for line in grid.lines) == 4 and sum("interrupted" in line for line in grid.lines) == 0


def test_trial_weights_never_stand_in_for_the_entry(grid):
    from zoo.weights import find_best, list_runs

    # every trial stored its weights, under the entry it tunes (the trial interrupted after saving them, and
    # run again, has two attempts' files) ...
    assert len({meta["run_id"] for _, meta in list_runs(ENTRY)}) == 4
    assert find_best(ENTRY) is None  # ... but zoo.load(ENTRY) never picks one (other configs, test-selected)


def test_a_changed_sweep_cannot_reuse_the_study(grid):
    changed = sw.define_sweep(ENTRY, ["hidden=4,16", "batch_size=16,32"], study="grid22")
    with pytest.raises(CifarzooError, match="made by another sweep.*params"):
        sw.run_sweep(changed, grid.url, grid.data, grid.ctx)


def test_show_ranks_by_validation_accuracy(grid, monkeypatch, capsys):
    code, out, _ = cifarzoo_main(monkeypatch, capsys, "sweep", "show", "grid22", "--results", str(grid.results))
    assert code == 0
    table = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [int(t[0]) for t in table] == [1, 2, 3, 4]
    vals = [float(t[5]) for t in table]
    assert vals == sorted(vals, reverse=True)
    best = sw.best_row(sw.study_rows(grid.study))
    assert int(table[0][1]) == best.number and f"best: trial {best.number}" in out
    code, _, err = cifarzoo_main(monkeypatch, capsys, "sweep", "show", "nosuch", "--results", str(grid.results))
    assert code == 2 and "no study 'nosuch'" in err and "grid22" in err


def test_study_page_on_the_site(grid):
    from leaderboard.build import build_site

    report = build_site(grid.results, grid.out / "site")
    assert [p.name for p in report.studies] == ["grid22.html"]
    html = report.studies[0].read_text()
    table = html[html.index('id="trials-table"'):]
    assert table[:table.index("</table>")].count("<tr") == 1 + 4  # header + one row per trial
    best = sw.best_row(sw.study_rows(grid.study))
    assert f"#{best.number}" in html and best.run_id in html
    assert "sweeps/grid22.html" in report.index.read_text()
    rows = json.loads((grid.out / "site" / "leaderboard.json").read_text())
    assert rows == []  # trials of a sweep are not leaderboard rows of the entry they tune


def test_promote_registers_an_entry_that_bench_runs(grid, monkeypatch, capsys):
    monkeypatch.setenv("CIFARZOO_HOME", str(grid.home))
    code, out, err = cifarzoo_main(monkeypatch, capsys, "sweep", "show", "grid22", "--results", str(grid.results),
                                   "--promote")
    assert code == 0, err
    best = sw.best_row(sw.study_rows(grid.study))
    name = "tinyvgg-grid22"
    assert f"as entry {name}" in out
    from zoo.entryfiles import parse_toml

    saved = parse_toml(grid.home / "entries" / f"{name}.toml")  # the same format as a user's entry file
    assert saved["provenance"]["study"] == "grid22" and saved["provenance"]["trial"] == best.number
    assert saved["provenance"]["report"] == "cifarzoo sweep" and "grid22" in saved["description"]
    assert saved["arch_kwargs"]["hidden"] == best.params["hidden"]
    assert saved["recipe"]["batch_size"] == best.params["batch_size"]
    # a new process (bench) knows the entry, and runs it with the best configuration
    env = {**os.environ, "CIFARZOO_HOME": str(grid.home)}
    bench_results = grid.out / "bench"
    proc = cifarzoo("bench", name, "--data", "synthetic", "--results", str(bench_results), "--no-site", "--progress",
                    "quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = records_in(bench_results).values()
    assert record["status"] == "ok" and record["entry"]["name"] == name and record["sweep"] is None
    assert record["entry"]["arch_kwargs"]["hidden"] == best.params["hidden"]
    assert record["recipe"]["batch_size"] == best.params["batch_size"]
    assert record["recipe"]["lr"] == zoo.get_entry(ENTRY).recipe.lr  # the rest is the swept entry's recipe


# ----------------------------------------------------------------------------- workers and pruning


def test_two_workers_share_one_sqlite_study(tmp_path):
    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-m", "cifarzoo", "sweep", ENTRY, *sum((["--param", p] for p in GRID), []), "--study",
            "shared", "--data", "synthetic", "--results", str(tmp_path / "results"), "--progress", "quiet"]
    workers = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = sw.load_study("shared", sw.open_storage(sw.default_storage(tmp_path / "results")))
    assert sorted(points(study)) == sorted(POINTS)  # 4 distinct complete trials ...
    assert [r.state for r in sw.study_rows(study)].count("complete") == 4
    records = records_in(tmp_path / "results")
    assert len(records) == 4  # ... and 4 runs: none ran twice
    assert {r["sweep"]["trial"] for r in records.values()} == {r.number for r in sw.study_rows(study)
                                                                if r.state == "complete"}


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_pruned_trial_is_recorded_and_not_resumed(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path / "home"))
    data = load_dataset("synthetic")
    plan = sw.define_sweep(ENTRY, ["hidden=4", "batch_size=64"], study="pruned")
    ctx = RunContext(tmp_path / "results", data, "cpu", "pytest", "quiet")
    (tmp_path / "results").mkdir()
    result = sw.run_sweep(plan, sw.default_storage(tmp_path / "results"), data, ctx, pruner=AlwaysPrune())
    (row,) = sw.study_rows(result.study)
    assert row.state == "pruned" and result.pending == 0
    record = read_record(tmp_path / "results" / f"{row.run_id}.json")
    assert record["status"] == "skipped"
    assert record["reason"].startswith("pruned by the sweep's AlwaysPrune after epoch 1")
    assert [h["epoch"] for h in record["history"]] == [1] and record["test"] is None
    assert not list((tmp_path / "results" / ".checkpoints").glob("*.ckpt"))


# ----------------------------------------------------------------------------- the loop, with runs faked (fast)


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """run_sweep with `execute` replaced by a record whose val acc is a function of the values (no training)."""
    calls = []

    def execute(run, ctx):
        calls.append(run)
        acc = run.arch_kwargs["hidden"] / 100 + run.recipe.lr
        return {"status": "ok", "reason": None, "history": [{"epoch": 1, "val_acc": acc}], "test": {"accuracy": 0.5}}

    monkeypatch.setattr(study_mod, "execute", execute)
    data = SimpleNamespace(fingerprint="f" * 16, source="fake", classes=list(zoo.get_entry(ENTRY).classes))
    ctx = RunContext(tmp_path, data, "cpu", "pytest", "quiet")
    storage = sw.open_storage(f"sqlite:///{tmp_path / 'sweeps.db'}")
    return SimpleNamespace(calls=calls, data=data, ctx=ctx, storage=storage)


def test_random_search_draws_depend_only_on_seed_and_trial_number(fake_runs):
    space = ["hidden=int:4:64", "lr=loguniform:1e-4:1e-1"]
    first = sw.run_sweep(sw.define_sweep(ENTRY, space, random=5, study="r1"), fake_runs.storage, fake_runs.data,
                         fake_runs.ctx, n_trials=3)
    assert first.ran == 3 and first.pending == 2
    resumed = sw.run_sweep(sw.define_sweep(ENTRY, space, random=7, study="r1"), fake_runs.storage, fake_runs.data,
                           fake_runs.ctx)  # resumed, with a larger N: 4 more
    assert resumed.ran == 4 and len(resumed.study.trials) == 7
    whole = sw.run_sweep(sw.define_sweep(ENTRY, space, random=7, study="r2"), fake_runs.storage, fake_runs.data,
                         fake_runs.ctx)  # the same search in one go
    drawn = [[t.params for t in s.trials] for s in (resumed.study, whole.study)]
    assert drawn[0] == drawn[1] and len({p["hidden"] for p in drawn[0]}) > 1
    assert all(4 <= p["hidden"] <= 64 and 1e-4 <= p["lr"] <= 1e-1 for p in drawn[0])
    other = sw.run_sweep(sw.define_sweep(ENTRY, space, random=2, seed=1, study="r3"), fake_runs.storage,
                         fake_runs.data, fake_runs.ctx)
    assert [t.params for t in other.study.trials] != drawn[0][:2]
    assert len(fake_runs.calls) == 3 + 4 + 7 + 2


def test_a_duplicate_grid_point_is_never_run(fake_runs):
    plan = sw.define_sweep(ENTRY, ["hidden=4,8", "lr=0.001,0.01"], study="dup")
    done = sw.run_sweep(plan, fake_runs.storage, fake_runs.data, fake_runs.ctx)
    assert done.ran == 4 and len(fake_runs.calls) == 4
    done.study.enqueue_trial({"hidden": 8, "lr": 0.01})  # as a racing second worker would
    again = sw.run_sweep(plan, fake_runs.storage, fake_runs.data, fake_runs.ctx)
    assert again.ran == 1 and len(fake_runs.calls) == 4  # the copy was not run ...
    rows = sw.study_rows(again.study)
    (copy,) = [r for r in rows if r.state == "duplicate"]
    assert copy.number == 4 and "same parameters as trial" in copy.note  # ... and is marked as a copy
    assert sw.best_row(rows).params == {"hidden": 8, "lr": 0.01}


def test_a_trial_of_a_killed_worker_is_rerun_after_its_heartbeat_lapses(fake_runs, monkeypatch):
    monkeypatch.setattr(study_mod, "GRACE_S", 1)
    storage = sw.open_storage(f"sqlite:///{fake_runs.ctx.results / 'stale.db'}")
    plan = sw.define_sweep(ENTRY, ["hidden=4,8"], study="stale")
    sw.run_sweep(plan, storage, fake_runs.data, fake_runs.ctx, n_trials=1)
    study = sw.load_study("stale", storage)
    study.enqueue_trial({"hidden": 12 - study.trials[0].params["hidden"]})  # the other grid point ...
    with pytest.warns(UserWarning, match="Heartbeat"):
        trial = study.ask()  # ... is taken by a worker that beats once and is killed
    trial.suggest_categorical("hidden", [4, 8])
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    result = sw.run_sweep(plan, storage, fake_runs.data, fake_runs.ctx)
    states = [r.state for r in sw.study_rows(result.study)]
    assert sorted(states) == ["complete", "complete", "interrupted"]
    assert sorted(r.params["hidden"] for r in sw.study_rows(result.study) if r.state == "complete") == [4, 8]
    assert {t.user_attrs["worker"] for t in result.study.trials if "run_id" in t.user_attrs} == \
        {f"{socket.gethostname()}:{os.getpid()}"}  # the trials this process ran name it
    assert result.pending == 0 and len(fake_runs.calls) == 2


def test_an_entry_without_validation_split_cannot_be_swept(monkeypatch):
    import dataclasses

    base = zoo.get_entry(ENTRY)
    no_val = dataclasses.replace(base, recipe=base.recipe.replace(early_stopping=None, val_fraction=0.0))
    monkeypatch.setattr(zoo, "get_entry", lambda name: no_val)
    with pytest.raises(CifarzooError, match="without a validation split, so a sweep has nothing to select on"):
        sw.define_sweep(ENTRY, ["lr=0.001,0.01"])
    with pytest.raises(CifarzooError, match="unknown parameter 'val_fraction'"):
        sw.parse_param("val_fraction=0.1,0.2", base)
