"""Past one machine, tested with the engines themselves: a real local Ray cluster (2 CPUs) runs a bench whose
records match the local executor's, a killed worker is retried and resumes; shards of one plan give one
bench's records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cifarzoo

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--data", "synthetic", "--profile", "smoke", "--no-site", "--progress", "quiet"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "CIFARZOO_HOME": str(home), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def by_run(folder: Path) -> dict[str, dict]:
    return {r["run_id"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


def same_results(a: dict, b: dict) -> bool:
    """Metrics, history and outcome: what must not depend on where a run ran (timings and paths do)."""
    def strip(r: dict) -> tuple:
        return ([{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in r["history"]],
                r["test"], r["training"], r["fast_path"]["precision"], r["fast_path"]["channels_last"])
    return strip(a) == strip(b)


@pytest.fixture(scope="module")
def local_records(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("local")
    done = cifarzoo("bench", "cnn3-basic", "mlp-s-norm", "--seeds", "0,1", *SMOKE, "--threads", "1", "--results",
                    str(out), env=env)
    assert done.returncode == 0, done.stderr
    return by_run(out)


@pytest.mark.ray
def test_a_ray_bench_gives_the_local_executors_records(tmp_path, env, local_records):
    pytest.importorskip("ray")
    out = cifarzoo("bench", "cnn3-basic", "mlp-s-norm", "--seeds", "0,1", *SMOKE, "--threads", "1", "--results",
                   str(tmp_path / "r"), "--executor", "ray", env=env)
    assert out.returncode == 0, out.stderr
    ray_records = by_run(tmp_path / "r")
    assert sorted(ray_records) == sorted(local_records)
    for rid, record in ray_records.items():
        assert same_results(record, local_records[rid]), rid
        weights = Path(env["CIFARZOO_HOME"]) / "weights" / record["weights"]["file"]
        assert weights.is_file()  # the worker's weights travelled back as bytes to the driver's store
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").glob("*.json")}
    again = cifarzoo("bench", "cnn3-basic", "mlp-s-norm", "--seeds", "0,1", *SMOKE, "--results", str(tmp_path / "r"),
                     "--executor", "ray", env=env)
    assert again.returncode == 0  # the same planner: nothing rerun
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").glob("*.json")} == before


@pytest.mark.ray
def test_a_killed_ray_worker_is_retried_and_resumes_from_its_checkpoint(tmp_path, env):
    pytest.importorskip("ray")
    args = ["bench", "cnn3-basic", "--data", "synthetic", "--profile", "quick", "--no-site", "--progress", "quiet",
            "--threads", "1"]
    straight = cifarzoo(*args, "--results", str(tmp_path / "local"), env=env)
    assert straight.returncode == 0, straight.stderr
    results = tmp_path / "r"
    driver = subprocess.Popen([sys.executable, "-m", "cifarzoo", *args, "--results", str(results), "--executor",
                               "ray"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list((results / ".checkpoints").glob("*.ckpt")):
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-f", "ray::_work"], capture_output=True, text=True).stdout.split()
    assert workers, "no Ray worker was running the task"
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)  # a worker lost mid-run, after its first epoch's checkpoint
    _, err = driver.communicate(timeout=900)
    assert driver.returncode == 0, err
    [resumed], [plain] = by_run(results).values(), by_run(tmp_path / "local").values()
    assert resumed["status"] == "ok" and same_results(resumed, plain)


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch):
    from benchmark.distributed import RayExecutor
    from zoo.errors import CifarzooError

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(CifarzooError, match=r"--executor ray needs Ray: pip install 'cifarzoo\[ray\]'"):
        RayExecutor()


def test_shards_of_one_plan_give_one_benchs_records(tmp_path, env, local_records):
    results = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-m", "cifarzoo", "bench", "cnn3-basic", "mlp-s-norm", "--seeds", "0,1",
                               *SMOKE[:-1], "plain", "--threads", "1", "--results", str(results), "--shard", f"{k}/3"],
                              cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2, 3)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    planned = [int(err.split(" runs (")[0].rsplit(" ", 1)[-1]) for _, err in outs]
    assert sorted(planned) == [1, 1, 2] and sum(planned) == 4  # disjoint slices covering the plan
    shards = by_run(results)
    assert sorted(shards) == sorted(local_records)
    assert all(same_results(shards[rid], local_records[rid]) for rid in shards)
    site = cifarzoo("leaderboard", "build", "--results", str(results), "--out", str(tmp_path / "site"), env=env)
    assert site.returncode == 0 and "from 4 records" in site.stdout


@pytest.mark.parametrize("text", ["0/3", "4/3", "two/3", "3"])
def test_a_bad_shard_is_one_sentence(tmp_path, env, text):
    out = cifarzoo("bench", "cnn3-basic", *SMOKE, "--shard", text, "--results", str(tmp_path / "r"), env=env)
    assert out.returncode == 2 and "--shard" in out.stderr and "Traceback" not in out.stderr
