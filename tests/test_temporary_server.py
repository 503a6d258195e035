"""Prefect's temporary server, used when no PREFECT_API_URL is set (flows/temporary_server.py):
the run is recorded in it, it ends with the run, and one that cannot start is one message."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_trust import DEMO, SMALL, _concner, _env, _running, _server_children


def _task_run_states(db: Path, flow_run_id: str) -> list[str]:
    with sqlite3.connect(db) as con:
        return [row[0] for row in con.execute("select state_type from task_run where flow_run_id = ?", (flow_run_id,))]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the server process")
def test_a_run_on_prefects_temporary_server_is_recorded_there_and_stops_it(tmp_path):
    env = _env(tmp_path, None)  # no server: a temporary one, as a user without `prefect server start` has
    store = tmp_path / "store"
    proc = subprocess.Popen(_concner("run", DEMO, "--store", store, "--until", "translate", *SMALL), env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "Starting temporary server" in out + err  # Prefect's own, with its pointer to `prefect server start`
    assert "Traceback" not in out + err
    assert _server_children(proc.pid) == []
    record = json.loads(next((store / "runs").glob("*.json")).read_text())
    assert record["status"] == "completed"
    flow_runs = sqlite3.connect(Path(env["PREFECT_HOME"]) / "prefect.db").execute(
        "select id from flow_run").fetchall()
    assert (record["prefect_flow_run_id"],) in flow_runs  # the run is in Prefect's database


def test_a_server_that_cannot_start_is_one_message_exit_1(tmp_path):
    env = {**_env(tmp_path, None), "PREFECT_API_DATABASE_CONNECTION_URL":
           f"sqlite+aiosqlite:///{tmp_path}/missing/dir/prefect.db",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "3"}
    proc = subprocess.run(_concner("run", DEMO, "--store", tmp_path / "store", *SMALL), env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the temporary Prefect server did not start" in errors[0], proc.stderr[-3000:]
    assert "prefect server start" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store" / "stages").exists()  # nothing ran


def test_the_watchdog_stops_the_server_once_its_parent_is_gone(tmp_path):
    """flows/server_watchdog.py on its own: a parent that exits, a 'server' that must stop."""
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-m', 'concner.flows.server_watchdog', str(__import__('os').getpid()), "
        f"'{server.pid}'])\n"
        "time.sleep(1)\n")])
    assert parent.wait(timeout=60) == 0
    assert server.wait(timeout=30) != 0  # signalled, not its own end
    assert _running([server.pid]) == []


def test_the_watchdog_leaves_a_process_that_is_not_the_server_alone(tmp_path):
    """The server's pid, reused by another process after the server ended, is not signalled."""
    from concner.flows.server_watchdog import start_time

    own = start_time(subprocess.os.getpid())
    assert own is not None
    assert start_time(2**22 + 7) is None  # no such process
