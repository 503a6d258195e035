"""One finished demo run, shared by every test that only reads it (inspect, predict, report, ...).

A demo run costs 1-2 minutes on a small CPU machine, so it is built once per test session.
conftest.py registers the `demo_run` fixture for every module:

    def test_something(demo_run):
        demo_run.stage_dir("distill") / "model"

Modules must not import the fixture themselves: pytest would register it again for that module
and build a second store. Readers must not change the store (no --force, no further runs into
it): tests that do need their own store (see tests/test_demo_dag.py).
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from concner.tasks.engine.store import ArtifactStore

# Two teacher epochs test the mechanics, not learning: the tiny random encoder then scores below the
# teacher guard's floor, so the guard is off here (tests/test_recipe.py tests the guard itself).
FAST = ("--set", "train.epochs=2", "--set", "distill.epochs=1", "--set", "train.min_selection_f1=null")
FAST_OVERRIDES = [value for value in FAST if value != "--set"]  # as load_config takes them


def demo_config():
    """The config of the shared demo run, as its stages saw it."""
    from concner.tasks.engine.bundled import config_path
    from concner.tasks.engine.config_loading import load_config

    return load_config(config_path("demo"), FAST_OVERRIDES)


@dataclass(frozen=True)
class DemoRun:
    store: Path
    record: dict  # runs/<run-id>.json of the finished run

    def stage_dir(self, stage: str) -> Path:
        return ArtifactStore(self.store).stage_dir(stage, self.record["stages"][stage]["key"])

    def manifest(self, stage: str) -> dict:
        manifest = ArtifactStore(self.store).manifest(stage, self.record["stages"][stage]["key"])
        assert manifest is not None, stage
        return manifest


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `concner ARGS...` in-process; (exit code, stdout, stderr).

    The same as conftest's `cli` fixture, as a plain function: session-scoped fixtures cannot use
    that function-scoped fixture, and commands that need no Prefect server (predict) can run
    without starting one.
    """
    from concner.flows import cli as cli_module

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["concner", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli_module.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def demo_run(prefect_server, tmp_path_factory) -> DemoRun:
    """The demo DAG (2 teacher epochs, 1 student epoch) run once into a session-wide store."""
    store = tmp_path_factory.mktemp("shared-demo-store")
    code, _, err = run_cli("demo", "--store", store, *FAST)
    assert code == 0, err[-3000:]
    record = ArtifactStore(store).list_runs()[-1]
    assert record["status"] == "completed", record
    return DemoRun(store, record)
