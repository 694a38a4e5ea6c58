"""Every test session gets its own CIFARZOO_HOME, so the user's weights store, promoted entries and
dataset cache never leak into (or get written by) the tests. The real-data tests keep their decoded
copy in CIFARZOO_TEST_HOME (see tests/test_data.py) so the 60,000 JPEGs are decoded once per machine."""

import os
import tempfile
from pathlib import Path

import pytest
from helpers import REAL_ZIP


def pytest_configure(config):
    if "CIFARZOO_HOME" not in os.environ or not os.environ.get("CIFARZOO_KEEP_HOME"):
        os.environ["CIFARZOO_HOME"] = tempfile.mkdtemp(prefix="cifarzoo-test-home-")
    # ONNX by TorchScript first (benchmark.onnx_export): dynamo's cold export is ~7 s more per process, and ~90
    # exports made it a quarter of the suite; test_onnx.py and the whole-zoo bench keep the default
    # (helpers.DEFAULT_EXPORTER_ENV)
    os.environ.setdefault("CIFARZOO_ONNX_EXPORTER", "torchscript")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:  # pytest -n N: share the cores instead of oversubscribing them (here and in the CLI
        # processes the tests start), since two OpenMP pools on one core slow tensor ops many times over
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


# The files that take longest, started first: with `-n auto --dist loadfile --no-loadscope-reorder` each
# worker takes whole files in this order, so the longest do not start last and leave the other core idle
# (pytest --durations shows the times; README, Development).
SLOW_FIRST = ["test_bench.py", "test_zoo_weights.py", "test_scale.py", "test_plan_and_timings.py",
              "test_hostile_input.py", "test_byo.py", "test_fastpath.py", "test_sweep.py", "test_postgres_sweep.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture
def one_thread():
    """One intra-op thread for tensor-op tests: on a small shared CPU, oversubscribed OpenMP threads
    make tensor ops ~5x slower. Restores the previous count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_home() -> Path:
    """A persistent CIFARZOO_HOME, so the 60k-image decode happens once per machine, not per run."""
    return Path(os.environ.get("CIFARZOO_TEST_HOME") or Path.home() / ".cache" / "cifarzoo-test")


@pytest.fixture(scope="session")
def real(real_home):
    """The JPEG copy of CIFAR-10 (`realdata` tests): skipped only when the file is absent."""
    from benchmark.data import load_dataset

    if not REAL_ZIP.exists():
        pytest.skip(f"{REAL_ZIP} is missing")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFARZOO_HOME", str(real_home))
        return load_dataset(str(REAL_ZIP))
