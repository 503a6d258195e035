"""The temporary Prefect server, started by a run command before it imports Prefect.

Without PREFECT_API_URL, Prefect starts a temporary server the first time a flow needs its API:
after concner has imported Prefect, planned the run and found every stage reusable, so a rerun
that computes nothing waits for the server's whole start (seconds) on top of its own imports, and
the client first imports the server's whole web app (FastAPI and every route) only to find the
class that starts it. `start_early()` starts the same server process (Prefect's uvicorn command,
through `server_child`, so it dies with this process) once the config and inputs are checked and
before concner imports Prefect and plans; `TemporaryServer.api()` waits for it when the flow is
about to run and points Prefect at it.

It falls back to Prefect's own behaviour (returns None, or stops the early server) whenever
another server may be configured: PREFECT_API_URL in the environment, in the active profile, in
./prefect.toml, ./.env or ./pyproject.toml, or in the settings Prefect ends up with.
`CONCNER_EARLY_SERVER=0` turns it off.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from concner.flows.server_child import PARENT_ENV
from concner.tasks.errors import UserError

SWITCH = "CONCNER_EARLY_SERVER"


class ServerStartError(UserError):
    """The temporary server did not come up: one message naming its log, exit 1 (not bad input)."""

    exit_code = 1


PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind


def _profile_sets_api(env: dict[str, str]) -> bool:
    """Whether the active Prefect profile may set an API URL (or forbid a temporary server)."""
    home = Path(env.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    if not path.exists():
        return False
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # unreadable: let Prefect decide (and report it)
    active = env.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = data.get("profiles", {}).get(active, {})
    return bool(profile.get("PREFECT_API_URL")) or _false(profile.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"))


def _false(value) -> bool:
    return str(value).lower() in {"0", "false", "no", "off"} if value is not None else False


def _files_may_set_api(cwd: Path) -> bool:
    """Prefect 3 also reads settings from these files in the working folder."""
    for name, marker in (("prefect.toml", ""), (".env", "PREFECT_"), ("pyproject.toml", "tool.prefect")):
        path = cwd / name
        try:
            if path.is_file() and marker in path.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            return True
    return False


def configured_elsewhere(env: dict[str, str], cwd: Path) -> bool:
    """Whether Prefect's settings may name a server (or forbid a temporary one), or the
    temporary server would first have to create its database; Prefect then decides, as usual."""
    if env.get("PREFECT_API_URL"):
        return True
    if _false(env.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")):
        return True
    home = Path(env.get("PREFECT_HOME", "~/.prefect")).expanduser()
    if not env.get("PREFECT_API_DATABASE_CONNECTION_URL") and not (home / "prefect.db").exists():
        # the first start creates the database (migrations, ~17 s here): little to gain, and a run
        # that stops early (a bad config) must not cut it short
        return True
    return _profile_sets_api(env) or _files_may_set_api(cwd)


def may_start(env: dict[str, str] | None = None, cwd: Path | None = None) -> bool:
    """True when Prefect itself would start a temporary server for this process."""
    env = dict(os.environ) if env is None else env
    if env.get(SWITCH, "1") == "0":
        return False
    if "prefect" in sys.modules:  # settings already loaded (a test harness, a library caller): leave it to Prefect
        return False
    return not configured_elsewhere(env, cwd or Path.cwd())


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryServer:
    """A Prefect API server process on 127.0.0.1, started now, used and stopped later."""

    def __init__(self) -> None:
        # its output (including the tracebacks Prefect's services print when stopped mid-flush)
        # goes to a file, kept and named when the server fails
        self.log = Path(tempfile.mkstemp(prefix="concner-prefect-server-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.ready = False
        self.failed = False  # then the log stays, for the error that names it
        self._launch()
        atexit.register(self.stop)

    def _launch(self) -> None:
        self.port = _free_port()
        prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent  # no import of prefect itself
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1", PARENT_ENV: str(os.getpid())}
        with self.log.open("ab") as out:
            # the same command Prefect's SubprocessASGIServer runs
            self.process = subprocess.Popen(
                [sys.executable, "-m", "concner.flows.server_child", "--app-dir", str(prefect_dir.parent),
                 "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        relaunches = 0
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code == PORT_IN_USE and relaunches < 2:  # the port may have been taken between our check and its bind
                relaunches += 1  # (uvicorn also exits 3 when the app fails to start: hence the limit)
                self._launch()
                continue
            if code is not None:
                self.failed = True
                raise ServerStartError(f"the temporary Prefect server exited with status {code} before it was "
                                       f"ready; its log: {self.log}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=1) as response:
                    if response.status == 200:
                        self.ready = True
                        # the server answers its first API call ~0.4 s late (it sets up on first use):
                        # made now, that overlaps with this process's own preparations for the flow
                        threading.Thread(target=self._first_call, daemon=True).start()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.failed = True
        self.stop()
        raise ServerStartError(f"the temporary Prefect server did not answer within {timeout:.0f} s "
                               f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); its log: {self.log}")

    @contextlib.contextmanager
    def api(self, warm: Sequence[str] = (), settings: Mapping | None = None) -> Iterator[RecordedRuns | None]:
        """Prefect talks to this server inside the block; Prefect's own choice wins when its
        settings name another server (then this one is stopped and the block gets None).

        `warm`: modules the block will import; `settings`: more Prefect settings for the block.
        Both are done while the server is still starting, when this process would otherwise only
        wait (a rerun that reuses every stage spends most of its time waiting for the server;
        each change of Prefect's settings takes ~0.1 s).

        The block gets a RecordedRuns: the flow runs named there are waited for, at the end, until
        the server has recorded all their task runs (it records them from events, asynchronously:
        stopping it earlier loses the last ones, as Prefect's own temporary server does)."""
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

        if get_current_settings().api.url:
            self.stop()
            yield None
            return
        port = self.port
        # no UI here (as on Prefect's own temporary server): no "View at" link to a page that is not served
        with temporary_settings({PREFECT_API_URL: self.api_url, PREFECT_UI_URL: "", **(settings or {})}):
            self.warm_up(warm)
            self.wait_ready(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")))
            relaunched = self.port != port  # its first port was taken meanwhile
            previous = os.environ.get("PREFECT_API_URL")
            os.environ["PREFECT_API_URL"] = self.api_url  # processes started inside (Dask workers) inherit it
            runs = RecordedRuns(self.api_url)
            try:
                with temporary_settings({PREFECT_API_URL: self.api_url}) if relaunched else contextlib.nullcontext():
                    yield runs
            finally:
                runs.wait()
                if previous is None:
                    os.environ.pop("PREFECT_API_URL", None)
                else:
                    os.environ["PREFECT_API_URL"] = previous

    def _first_call(self) -> None:
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(f"{self.api_url}/admin/version", timeout=10).close()

    def warm_up(self, modules: Sequence[str]) -> None:
        for name in modules:
            if self.process is None or self.process.poll() is not None:
                return  # the server failed: wait_ready reports it, no reason to delay that
            with contextlib.suppress(ImportError):  # only a head start: the flow imports what it needs
                importlib.import_module(name)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:  # one still starting finishes its start-up (database migrations) before it exits
                process.wait(timeout=5 if self.ready else 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self.failed:
            self.log.unlink(missing_ok=True)


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


class RecordedRuns:
    """Flow runs whose task runs the server must have recorded before it stops."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.expected: dict[str, int] = {}  # flow run id -> task runs it made

    def add(self, record: dict) -> None:
        """A concner run record: one Prefect task run per stage entry (a sweep's members are all
        tasks of the sweep's flow run)."""
        flow_run = record.get("prefect_flow_run_id")
        if flow_run:
            self.expected[flow_run] = self.expected.get(flow_run, 0) + len(record.get("stages", {}))

    def _recorded(self) -> bool:
        body = json.dumps({"flow_runs": {"id": {"any_": list(self.expected)}}, "limit": 200}).encode()
        request = urllib.request.Request(f"{self.api_url}/task_runs/filter", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=2) as response:
            task_runs = json.loads(response.read())
        done: dict[str, int] = {}
        for run in task_runs:
            if run.get("state_type") in TERMINAL:
                done[run["flow_run_id"]] = done.get(run["flow_run_id"], 0) + 1
        return all(done.get(run, 0) >= count for run, count in self.expected.items())

    def wait(self, timeout: float = 5.0) -> bool:
        """Send what this process still holds for the server, then wait for the records."""
        _drain_prefect_clients()
        deadline = time.monotonic() + timeout
        while self.expected and time.monotonic() < deadline:
            try:
                if self._recorded():
                    return True
            except (urllib.error.URLError, OSError, ValueError):
                return False  # the server is gone or answers oddly: nothing to wait for
            time.sleep(0.05)
        return not self.expected


@contextlib.contextmanager
def prefect_started_server_runs() -> Iterator[RecordedRuns]:
    """The same wait for the temporary server Prefect starts itself (a first run, which creates
    the database; CONCNER_EARLY_SERVER=0): its exit handler stops it as soon as the process ends,
    which lost task runs still in flight when the machine was loaded."""
    runs = RecordedRuns("")
    try:
        yield runs
    finally:
        if "prefect.server.api.server" in sys.modules:  # imported by Prefect's client to start one
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()  # the one Prefect's client started (an instance per port)
            if server.running:
                runs.api_url = server.api_url
                runs.wait()


def _drain_prefect_clients() -> None:
    """Send what Prefect's background workers still hold (task-run events, logs) while the
    server is up: Prefect does this at interpreter exit, after this server would be gone."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)


def start_early() -> TemporaryServer | None:
    """Start the temporary server now if Prefect would start one later; None otherwise."""
    if not may_start() or importlib.util.find_spec("prefect") is None:
        return None
    return TemporaryServer()
