"""Small helpers shared by the tests (imported as `helpers`, like `record_factory`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any


def stop_after(epoch: int) -> Callable[[dict[str, Any]], None]:
    """An `on_epoch` hook that kills the fit after `epoch`, as a Ctrl-C would (its checkpoint is written)."""

    def hook(row: dict[str, Any]) -> None:
        if row["epoch"] >= epoch:
            raise KeyboardInterrupt(f"stopped after epoch {row['epoch']} by the test")

    return hook



def assert_resumes_bit_identically(run: Callable[..., Any], tmp_path: Path) -> Any:
    """`run(**fit_kwargs)` trains from scratch; run it through, then again killed after epoch 2 and resumed from its
    checkpoint (the global seed moved in between): the resumed run's losses and weights must be the uninterrupted
    run's, bit for bit. Returns the uninterrupted run's result."""
    import pytest
    import torch

    full = run(checkpoint=tmp_path / "full.ckpt")
    ckpt = tmp_path / "killed.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=ckpt, on_epoch=stop_after(2))
    torch.manual_seed(123)
    resumed = run(checkpoint=ckpt)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    return full

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPORTER_ENV = {"CIFARZOO_ONNX_EXPORTER": ""}  # an env update for the product's own exporter order (conftest)
REAL_ZIP = (ROOT / ".." / "shared" / "datasets" / "cifar10-jpeg.zip").resolve()  # the real-data tests' copy


# The CLI processes the tests start are forked from one server per pytest worker that has imported torch,
# torch._dynamo, ONNX, timm and the product once (multiprocessing's forkserver, its preload): a new interpreter
# pays 2-4 s of imports on a 2-core VM (torch 1.7 s, torch._dynamo 1.2 s more once an optimizer is built), and
# the suite starts about fifty of them. Each call is still a new process: the server runs no tensor op (no
# OpenMP pool, no registered entries, no $CIFARZOO_HOME read) and the child takes the call's environment, cwd
# and `python -m cifarzoo` argv before the CLI runs. CIFARZOO_TEST_EXEC=1 starts a new interpreter instead.
PRELOAD = ["torch", "torch._dynamo", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript", "zoo.entries",
           "benchmark.runner", "benchmark.train", "benchmark.onnx_export", "benchmark.timing", "benchmark.bench",
           "leaderboard.build", "cifarzoo.cli"]


def cifarzoo(*args: str, env: dict | None = None, cwd=ROOT, check: bool = False, timeout: float = 900):
    """Run the CLI in a new process (as a user would); `check`: fail the test with its output unless it exits 0."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "cifarzoo", *args]
    env = dict(os.environ if env is None else env)
    if env.get("CIFARZOO_TEST_EXEC"):
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    else:
        proc = _forked(command, env, str(cwd), timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"cifarzoo {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _forked(command: list[str], env: dict, cwd: str, timeout: float):
    """`subprocess.run(command, capture_output=True, text=True)`, the process forked from the preloaded server."""
    import os
    import subprocess
    import tempfile

    server, installed_path = _server()
    with tempfile.TemporaryDirectory(prefix="cifarzoo-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        # a new interpreter's sys.path: the cwd (python -m), $PYTHONPATH, then the installation's own
        path = [cwd, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), *installed_path]
        child = server.Process(target=_run_cli, args=(command[3:], env, cwd, path, str(out), str(err)))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(command, timeout, _text(out), _text(err))
        return subprocess.CompletedProcess(command, child.exitcode, _text(out), _text(err))


@functools.cache
def _server():
    """This worker's forkserver context (started on its first Process) and a new interpreter's sys.path."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context, _interpreter_path()


def _text(path: Path) -> str:  # a child that died before it ran the CLI wrote nothing
    return path.read_text() if path.exists() else ""


def _interpreter_path() -> list[str]:
    """sys.path of a new interpreter after its first entry, without $PYTHONPATH and what pytest inserts."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"], env=env,
                           cwd="/", capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)


def _run_cli(args: list[str], env: dict, cwd: str, path: list[str], out: str, err: str) -> None:
    """In the forked child: become `python -m cifarzoo ARGS` run in `cwd` with `env`, output to the two files
    (at the descriptors, so that what C libraries print is caught too), and exit with its status."""
    import atexit
    import os
    import runpy
    import sys
    import traceback

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, file in ((1, out), (2, err)):
        target = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115  (the process's own streams)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.argv = ["cifarzoo", *args]
    sys.path[:] = path
    code: int | str | None = 0
    try:
        runpy.run_module("cifarzoo", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
    except BaseException:  # as the interpreter would: the traceback on stderr, status 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # what the interpreter runs at exit (multiprocessing's children skip it)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
