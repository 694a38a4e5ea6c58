"""Every test session gets its own CIFARZOO_HOME, so the user's weights store, promoted entries and
dataset cache never leak into (or get written by) the tests. The real-data tests keep their decoded
copy in CIFARZOO_TEST_HOME (see tests/test_data.py) so the 60,000 JPEGs are decoded once per machine."""

import os
import tempfile


def pytest_configure(config):
    if "CIFARZOO_HOME" not in os.environ or not os.environ.get("CIFARZOO_KEEP_HOME"):
        os.environ["CIFARZOO_HOME"] = tempfile.mkdtemp(prefix="cifarzoo-test-home-")
