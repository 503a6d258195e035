"""`python -m concner.flows.server_watchdog PARENT SERVER`: stop process SERVER once PARENT is gone.

Started by flows/temporary_server.py beside Prefect's temporary server. It imports nothing heavy
and polls: Linux's parent-death signal follows the thread that started a child, not the process.
After a normal exit Prefect has stopped the server itself, and the watchdog finds nothing to do;
the server's start time is compared first, so that a pid reused meanwhile is never signalled.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5


def start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat) where there is a /proc; "" where there
    is none but the process exists; None when it does not exist."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self").exists():
        try:
            return stat.read_text().rpartition(")")[2].split()[19]
        except (OSError, IndexError):
            return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return ""


def watch(parent: int, server: int) -> None:
    started = start_time(server)
    while os.getppid() == parent:
        time.sleep(POLL_S)
    deadline = time.monotonic() + 10
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        if started is None or start_time(server) != started:
            return
        os.kill(server, sig)
        while time.monotonic() < deadline and start_time(server) == started:
            time.sleep(0.1)
        deadline = time.monotonic() + 5


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
