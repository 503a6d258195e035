"""Deployments: a real Prefect server on loopback, `concner deploy`, `concner serve`, and a triggered
run that lands in the store; the prefect.yaml alternative; the no-server message."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from concner.tasks.engine.registry import STAGES
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO

DEMO = REPO / "configs" / "demo.yaml"
# The smallest demo that still runs every stage: ~30 s of pipeline on a small CPU machine.
SMALL = ["--set", "train.epochs=1", "--set", "distill.epochs=1", "--set", "ingest.sample_size=60",
         "--set", "ingest.max_unlabeled=60", "--set", "train.min_selection_f1=null"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def background(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A child in its own process group, stopped with everything it started when the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                    break


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def wait_healthy(api: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"prefect server exited:\n{tail(log)}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{tail(log)}")


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_deploy_then_serve_runs_a_triggered_deployment_into_the_store(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "2",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "3",
           "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    store = tmp_path / "store"
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    with background(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    env, server_log) as server:
        wait_healthy(api, server, server_log)

        deployed = run(["concner", "deploy", str(DEMO), "--cron", "0 3 * * 1", "--name", "deploy-test",
                        "--store", str(store), *SMALL], env)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert "registered concner-pipeline/deploy-test" in deployed.stdout

        listed = run(["concner", "deployments"], env)
        assert listed.returncode == 0, listed.stderr[-3000:]
        row = next(line for line in listed.stdout.splitlines() if "concner-pipeline/deploy-test" in line)
        assert "0 3 * * 1" in row and str(store) in row
        next_day = re.search(r"(\d{4}-\d\d-\d\d) 03:00 UTC", row)
        assert next_day and dt.date.fromisoformat(next_day.group(1)).weekday() == 0, row  # a Monday

        # The server's scheduler turns the schedule into scheduled runs (it did not with
        # SQLAlchemy 2.1, hence the pin in pyproject.toml).
        deadline = time.time() + 90
        while "not yet scheduled" in row and time.time() < deadline:
            time.sleep(3)
            listed = run(["concner", "deployments"], env)
            row = next(line for line in listed.stdout.splitlines() if "concner-pipeline/deploy-test" in line)
        assert "not yet scheduled" not in row and next_day.group(0) in row, row

        with background(["concner", "serve"], env, serve_log) as serve:
            triggered = run(["prefect", "deployment", "run", "concner-pipeline/deploy-test", "--watch",
                             "--watch-interval", "2", "--watch-timeout", "300"], env, timeout=330)
            assert serve.poll() is None, tail(serve_log)
            assert triggered.returncode == 0, triggered.stdout[-2000:] + tail(serve_log)

    runs = ArtifactStore(store).list_runs()
    assert len(runs) == 1, runs
    record = runs[0]
    assert record["status"] == "completed"
    assert list(record["stages"]) == [s.name for s in STAGES]
    assert record["config"]["train"]["epochs"] == 1 and record["config"]["ingest"]["sample_size"] == 60
    for name, info in record["stages"].items():
        assert ArtifactStore(store).exists(name, info["key"]), name
    assert set(record["scores"]["evaluate"]) == {"teacher/target_dev", "teacher/target_test",
                                                 "student/target_dev", "student/target_test"}


def test_deployment_commands_need_a_prefect_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # a fresh profile: no API URL configured
    result = run(["concner", "deploy", str(DEMO), "--cron", "0 3 * * 1"], env)
    assert result.returncode == 2
    assert "PREFECT_API_URL" in result.stderr and "Traceback" not in result.stderr


def test_prefect_yaml_deployments_load_and_their_configs_validate():
    """Every deployment in prefect.yaml: its entrypoint is a flow, and the parameters of each schedule
    (over the deployment's defaults) are accepted by that flow and name a valid config."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    from concner.tasks.engine.config_loading import load_config

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert flow.name == "concner-pipeline-from-config"
        assert deployment["work_pool"]["name"]
        for schedule in [{"parameters": {}}, *deployment["schedules"]]:
            if "cron" in schedule:
                Cron(schedule["cron"], timezone=schedule.get("timezone"))
            params = flow.validate_parameters({**deployment["parameters"], **schedule["parameters"]})
            # the worker's working directory is the repository root (pull step)
            config = load_config(REPO / params["config_path"], params["overrides"] or [])
            assert config.name
