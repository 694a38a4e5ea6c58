"""Knowing the cost first (bench --plan, --time-budget), machine-readable bench output, timing records that
replace contended timings on the site, and the reproduction page."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import cifarzoo
from record_factory import make_record, write_record

from leaderboard.build import build_site
from leaderboard.repro import verdict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "CIFARZOO_HOME": str(home)}


def test_plan_prints_each_run_with_its_size_and_a_total_and_runs_nothing(tmp_path, env):
    results = tmp_path / "results"
    done = cifarzoo("bench", "cnn3-basic", "--data", "synthetic", "--profile", "smoke", "--results", str(results),
                    "--no-site", "--progress", "quiet", env=env)
    assert done.returncode == 0, done.stderr
    out = cifarzoo("bench", "cnn3-basic", "mlp-s-norm", "--seeds", "0,1", "--data", "synthetic", "--profile", "smoke",
                   "--results", str(results), "--plan", env=env)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:-1]}
    assert len(lines) == 4 and sum(v[1] == "recorded" for v in lines.values()) == 1
    todo = [v for v in lines.values() if v[1] != "recorded"]
    assert all(v[1:3] == ["2", "64"] for v in todo)  # smoke: 2 epochs of 64 training images
    assert out.stdout.splitlines()[-1].startswith("total: 3 run(s) to do, about ")
    assert len(list(results.glob("*.json"))) == 1  # a plan trains nothing


def test_a_time_budget_pauses_resumably_and_the_resumed_run_matches(tmp_path, env):
    args = ["bench", "cnn3-basic", "--data", "synthetic", "--profile", "quick", "--no-site", "--progress", "quiet"]
    straight = cifarzoo(*args, "--results", str(tmp_path / "straight"), env=env)
    assert straight.returncode == 0, straight.stderr
    # a new interpreter (its imports count against the 1 s budget, as a user's do): forked from the preloaded
    # server the quick cnn3 run can finish inside the second and nothing pauses
    paused = cifarzoo(*args, "--results", str(tmp_path / "cut"), "--time-budget", "1", "--json",
                      env={**env, "CIFARZOO_TEST_EXEC": "1"})
    assert paused.returncode == 4 and json.loads(paused.stdout)["paused"]  # exit 4: runs left undone
    assert not list((tmp_path / "cut").glob("*.json")) and list((tmp_path / "cut" / ".checkpoints").glob("*.ckpt"))
    resumed = cifarzoo(*args, "--results", str(tmp_path / "cut"), env=env)
    assert resumed.returncode == 0, resumed.stderr
    [a], [b] = ([json.loads(p.read_text()) for p in (tmp_path / d).glob("*.json")] for d in ("straight", "cut"))
    strip = [[{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in r["history"]]
             for r in (a, b)]
    assert strip[0] == strip[1] and a["test"] == b["test"]


def test_json_summary_and_fail_under(tmp_path, env):
    args = ["bench", "cnn3-basic", "--data", "synthetic", "--profile", "smoke", "--results", str(tmp_path / "r"),
            "--no-site", "--json"]
    first = cifarzoo(*args, env=env)
    summary = json.loads(first.stdout)
    [row] = summary["rows"]
    record = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert first.returncode == 0 and row["accuracy_mean"] == record["test"]["accuracy"]
    bar = 100 * record["test"]["accuracy"] + 0.01
    below = cifarzoo(*args, "--fail-under", f"{bar:.2f}", env=env)
    assert below.returncode == 3 and json.loads(below.stdout)["below_threshold"] == ["cnn3-basic"]
    assert cifarzoo(*args, "--fail-under", f"{bar - 0.02:.2f}", env=env).returncode == 0


def _timing_record(entry: str, torch_ms: float, ort_ms: float, when: str, contended: bool = False) -> dict:
    t = make_record(entry)["timing"]
    t["torch"]["batch1_ms"]["p50"], t["onnxruntime"]["batch1_ms"]["p50"] = torch_ms, ort_ms
    t["contended"], t["speedup_batch1"] = contended, torch_ms / ort_ms
    return {"timing_version": 1, "entry": entry, "arch_kwargs": {}, "input_size": 32, "run_id": "x",
            "machine": {"cpu": "Idle CPU (2 cores)", "key": "k1", "threads": 2, "device": "cpu"},
            "measured_at": when, "command": "cifarzoo time --results r", "model": {}, "timing": t}


def test_contended_timings_are_not_quoted_and_timing_records_replace_them(tmp_path):
    results = tmp_path / "results"
    busy = make_record("tinyvgg-norm")
    busy["timing"]["contended"] = True
    write_record(results, busy)
    write_record(results, make_record("tinyvgg-aug"))  # uncontended: its own numbers stand
    build_site(results, tmp_path / "site")
    board = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    rows = {r["entry"]: r for r in board}
    assert rows["tinyvgg-norm"]["timing"] == "contended" and rows["tinyvgg-norm"]["torch_ms"] is None
    own = make_record("tinyvgg-aug")["timing"]["torch"]["batch1_ms"]["p50"]
    assert rows["tinyvgg-aug"]["timing"] == "bench" and rows["tinyvgg-aug"]["torch_ms"] == own
    assert "contended" in (tmp_path / "site" / "entries" / "tinyvgg-norm--quick.html").read_text()
    timings = results / "timings"
    timings.mkdir()
    for name, data in (("a", _timing_record("tinyvgg-norm", 3.0, 1.5, "2026-01-01T00:00:00+00:00")),
                       ("b", _timing_record("tinyvgg-norm", 2.0, 0.5, "2026-02-01T00:00:00+00:00")),
                       ("c", _timing_record("tinyvgg-norm", 1.0, 1.0, "2026-03-01T00:00:00+00:00", True))):
        (timings / f"{name}.json").write_text(json.dumps(data))
    build_site(results, tmp_path / "site")
    rows = {r["entry"]: r for r in json.loads((tmp_path / "site" / "leaderboard.json").read_text())}
    row = rows["tinyvgg-norm"]  # the newest uncontended timing record (b), not the contended newer one (c)
    assert (row["torch_ms"], row["ort_ms"], row["speedup"]) == (2.0, 0.5, 4.0)
    assert row["timing"].startswith("timed 2026-02-01 on Idle CPU")


def test_retime_writes_a_timing_record_of_the_stored_weights(tmp_path, env):
    results = tmp_path / "results"
    assert cifarzoo("bench", "cnn3-basic", "--data", "synthetic", "--profile", "smoke", "--results", str(results),
                    "--no-site", "--progress", "quiet", env=env).returncode == 0
    out = cifarzoo("time", "--results", str(results), "--budget", "smoke", env=env)
    assert out.returncode == 0, out.stderr
    [path] = list((results / "timings").glob("cnn3-basic--*.json"))
    data = json.loads(path.read_text())
    record = json.loads(next(results.glob("*.json")).read_text())
    assert data["run_id"] == record["run_id"] and data["model"]["params"] == record["model"]["params"]
    assert data["timing"]["torch"]["batch1_ms"]["p50"] > 0 and isinstance(data["timing"]["contended"], bool)


@pytest.mark.parametrize(("diff", "sd", "kind"), [(-0.8, None, "ok"), (-1.5, 0.9, "ok"), (-1.5, 0.5, "below"),
                                                  (2.5, 0.2, "above"), (None, None, "none")])
def test_the_verdict_rule(diff, sd, kind):
    assert verdict(diff, sd)[0] == kind


def test_reproduction_page_sets_full_runs_against_the_reports(tmp_path):
    results = tmp_path / "results"
    for seed, acc in enumerate((0.70, 0.72, 0.71)):  # cnn004-relu: report 78.83 %
        record = make_record("cnn004-relu", seed=seed, profile="full", accuracy=acc)
        record["entry"]["report"], record["entry"]["reported"]["accuracy"] = "004", 0.7883
        write_record(results, record)
    write_record(results, make_record("tinyvgg-norm", profile="quick"))
    (results / "perf").mkdir()
    (results / "perf" / "plan.json").write_text(json.dumps({"device": "cpu", "machine": "Test CPU", "basis": "x",
                                                            "runs": [{"entry": "net003-norm", "estimate_s": 7200}]}))
    build_site(results, tmp_path / "site")
    html = (tmp_path / "site" / "reproduction.html").read_text()
    assert "below by 7.8 pts" in html  # 71.00 vs 78.83, sd 1.0 point: outside max(2 sd, 1)
    assert "~2.0 CPU h per seed" in html and "cifarzoo bench net003-norm --profile full" in html
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="reproduction.html"' in index and '<option value="full" selected>' in index
    assert "quick · 2-epoch budget" in index
