"""The temporary Prefect server that a run starts while it imports and plans (flows/temporary_server.py):
used only where Prefect would start one itself, and the run is fully recorded in Prefect."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from concner.flows.temporary_server import configured_elsewhere
from tests.test_trust import DEMO, SMALL, _concner, _env, _server_children


def _home_with_db(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "prefect.db").write_bytes(b"")
    return {"PREFECT_HOME": str(home)}


def test_early_server_only_where_prefect_would_start_a_temporary_one(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = _home_with_db(tmp_path)
    assert not configured_elsewhere(env, cwd)
    assert configured_elsewhere({**env, "PREFECT_API_URL": "http://127.0.0.1:4200/api"}, cwd)
    assert configured_elsewhere({**env, "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"}, cwd)
    assert configured_elsewhere({"PREFECT_HOME": str(tmp_path / "fresh")}, cwd)  # no database yet
    profiles = Path(env["PREFECT_HOME"]) / "profiles.toml"
    profiles.write_text('active = "ephemeral"\n[profiles.ephemeral]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"\n'
                        '[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    assert not configured_elsewhere(env, cwd)  # the active profile allows a temporary server, names none
    assert configured_elsewhere({**env, "PREFECT_PROFILE": "local"}, cwd)  # this one names a server
    profiles.write_text('[profiles.ephemeral]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "false"\n')
    assert configured_elsewhere(env, cwd)  # Prefect is to refuse, with its own message
    profiles.write_text('active = "mine"\n[profiles.mine]\nPREFECT_LOGGING_LEVEL = "INFO"\n')
    assert not configured_elsewhere(env, cwd)
    (cwd / ".env").write_text("PREFECT_API_URL=http://10.0.0.5:4200/api\n")
    assert configured_elsewhere(env, cwd)
    (cwd / ".env").unlink()
    (cwd / "prefect.toml").write_text('[api]\nurl = "http://10.0.0.5:4200/api"\n')
    assert configured_elsewhere(env, cwd)


def _task_run_states(db: Path, flow_run_id: str) -> list[str]:
    with sqlite3.connect(db) as con:
        return [row[0] for row in con.execute("select state_type from task_run where flow_run_id = ?", (flow_run_id,))]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the server process")
def test_a_rerun_on_the_early_server_is_recorded_whole_in_prefect(tmp_path):
    env = _env(tmp_path, None)  # no server: a temporary one, as a user without `prefect server start` has
    store = tmp_path / "store"
    cmd = _concner("run", DEMO, "--store", store, *SMALL)
    first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Starting temporary server" in first.stdout + first.stderr  # no database yet: Prefect's own start
    record = json.loads(next((store / "runs").glob("*.json")).read_text())
    states = _task_run_states(Path(env["PREFECT_HOME"]) / "prefect.db", record["prefect_flow_run_id"])
    assert states == ["COMPLETED"] * len(record["stages"])  # recorded whole before Prefect stopped its server

    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "Starting temporary server" not in out + err  # concner's early start served it
    assert "Traceback" not in out + err and "View at" not in out + err  # no server noise, no link to a UI not served
    assert _server_children(proc.pid) == []  # stopped with the run
    runs = sorted((store / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(runs[-1].read_text())
    assert record["status"] == "completed" and all(s["status"] == "reused" for s in record["stages"].values())
    states = _task_run_states(Path(env["PREFECT_HOME"]) / "prefect.db", record["prefect_flow_run_id"])
    assert states == ["COMPLETED"] * len(record["stages"])  # every stage's task run, none left running


def test_a_server_that_cannot_start_is_one_message_naming_its_kept_log(monkeypatch, tmp_path):
    from concner.flows.temporary_server import ServerStartError, TemporaryServer

    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{tmp_path}/missing/dir/prefect.db")
    server = TemporaryServer()
    with pytest.raises(ServerStartError, match="exited with status 3 before it was ready; its log: ") as caught:
        server.wait_ready(120)
    server.stop()
    assert caught.value.exit_code == 1  # not the user's input
    assert server.log.exists() and "unable to open database file" in server.log.read_text()
    server.log.unlink()


_LATE_HANDLER = """
import atexit, os
from pathlib import Path
from concner.flows import cli
run = cli.main
def main():
    # an exit handler registered while the command runs (as Prefect's and the temporary server's are)
    atexit.register(lambda: Path(os.environ["MARKER"]).write_text("ran"))
    run()
cli.main = main
cli.entry()
"""


@pytest.mark.parametrize("args, status", [(["--help"], 0), (["demo", "--set", "train.epochs=0"], 2),
                                          (["no-such-command"], 2)])
def test_the_concner_command_ends_with_its_status_whole_output_and_every_exit_handler(tmp_path, args, status):
    """`concner` (cli.entry) ends the process itself after the last exit handler, skipping the
    interpreter's teardown: the exit status, buffered output and other exit handlers must survive."""
    marker = tmp_path / "handler-ran"
    proc = subprocess.run([sys.executable, "-c", _LATE_HANDLER, *args], env={**_env(tmp_path, None), "MARKER": str(marker)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == status, proc.stderr[-2000:]
    assert marker.read_text() == "ran"
    if status == 0:
        assert proc.stdout.rstrip().endswith("╯")  # the whole help, its last box closed, through a pipe
        assert "predict" in proc.stdout
    else:
        assert ("train.epochs" in proc.stderr) if "demo" in args else ("No such command" in proc.stderr)
