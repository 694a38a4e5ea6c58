"""Sweeps on a real PostgreSQL server: a throwaway cluster under a temp dir (Debian's initdb + pg_ctl), two
`cifarzoo sweep` worker processes sharing one study, every grid point run exactly once, and a worker killed
mid-trial taken over by a later worker once its heartbeat lapses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRID = ["hidden=4,8", "batch_size=16,32"]
pytestmark = pytest.mark.postgres


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as the postgres user Debian's package creates."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (initdb, pg_ctl) is missing; .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    base = Path(tempfile.mkdtemp(prefix="cifarzoo-pg-"))  # pytest's temp root is private to root; postgres reads this
    os.chmod(base, 0o777)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    os.chmod(sock, 0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _sweep(url: str, home: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cifarzoo", "sweep", "run", "tinyvgg-norm", *sum((["--param", p] for p in GRID), []),
            "--study", "pg-grid", "--storage", url, "--data", "synthetic", "--results", str(results), "--grace", "6",
            "--progress", "quiet", *extra]


def _kill_a_worker_mid_trial(url: str, workers: list[subprocess.Popen], timeout_s: float = 300) -> int:
    """SIGKILL the worker of a running trial, frozen first (SIGSTOP) and its trial read again, so that the kill
    lands mid-trial however fast trials finish (a smoke trial holds its checkpoint for ~30 ms). Its pid."""
    import optuna

    pids = {w.pid: w for w in workers}
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name="pg-grid", storage=url)
        except KeyError:  # not created yet
            time.sleep(0.1)
            continue
        for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
            pid = int(trial.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            if pid not in pids:
                continue
            os.kill(pid, signal.SIGSTOP)
            if study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING:
                pids[pid].send_signal(signal.SIGKILL)  # its trial keeps a RUNNING state, and no heartbeat
                pids[pid].wait()
                return pid
            os.kill(pid, signal.SIGCONT)  # it finished the trial just before it stopped
        time.sleep(0.05)
    raise AssertionError(f"no worker was seen running a trial in {timeout_s:.0f} s")


def test_two_workers_share_a_postgres_study_and_take_over_a_killed_trial(postgres, tmp_path):
    import optuna

    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path / "home")}
    results = tmp_path / "results"
    workers = [subprocess.Popen(_sweep(postgres, tmp_path / "home", results), cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    killed = _kill_a_worker_mid_trial(postgres, workers)
    (survivor,) = [w for w in workers if w.pid != killed]
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    time.sleep(7)  # past the 6 s grace: the killed worker's trial is stale now
    later = subprocess.run(_sweep(postgres, tmp_path / "home", results), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert later.returncode == 0, later.stderr
    storage = optuna.storages.RDBStorage(postgres)
    study = optuna.load_study(study_name="pg-grid", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = sorted((t.params["hidden"], t.params["batch_size"]) for t in complete)
    assert points == [(4, 16), (4, 32), (8, 16), (8, 32)]  # every grid point once
    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert sorted(r["sweep"]["trial"] for r in records) == sorted(t.number for t in complete)  # no run twice
    (lost,) = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]  # the killed one, taken over
    assert lost.user_attrs["worker"].endswith(f":{killed}") and "status" not in lost.user_attrs
    shown = subprocess.run([sys.executable, "-m", "cifarzoo", "sweep", "show", "pg-grid", "--storage", postgres,
                            "--results", str(results)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "interrupted" in shown.stdout and f":{killed})" in shown.stdout, shown.stdout + shown.stderr
