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
