"""Prefect's temporary server, ended with the concner process that uses it.

With PREFECT_API_URL set (a server from `prefect server start`, or Prefect Cloud) runs go there and
nothing here is done. Without it, Prefect starts a temporary server for the process the first
time a flow needs its API and stops it when the process exits. A process killed with SIGKILL (or
by the kernel when memory runs out) never gets to that exit, and the server would run on, alone.
`end_with_this_process()` starts that same server a moment earlier, through Prefect's own
`SubprocessASGIServer` (the instance Prefect's client then finds running and uses), and a small
watchdog process (flows/server_watchdog.py) that stops it once this process is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys

from concner.tasks.engine.errors import UserError


class ServerStartError(UserError):
    """The temporary server did not come up: one message, exit 1 (not the user's input)."""

    exit_code = 1


def end_with_this_process() -> int | None:
    """Start Prefect's temporary server now, watched; its pid, or None where Prefect would start
    none (an API URL is configured, or temporary servers are turned off)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # Prefect's client asks for the same instance
    if not server.running:
        try:
            server.start()
        except RuntimeError as err:
            raise ServerStartError(f"the temporary Prefect server did not start: {err} (or run one with "
                                   "`prefect server start` and set PREFECT_API_URL)") from None
    pid = server.server_process.pid
    subprocess.Popen([sys.executable, "-m", "concner.flows.server_watchdog", str(os.getpid()), str(pid)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)  # a Ctrl-C in the terminal is not for it
    return pid
