"""The temporary Prefect server, tied to the life of the concner process that started it.

Prefect starts its temporary server as `python -m uvicorn ...` and stops it from an atexit hook,
which never runs when concner is killed (kill -9, SIGTERM with the default handler): the server
then outlives it. `tie_temporary_server_to_this_process()` makes Prefect start this module
instead, which runs the same uvicorn command plus a watchdog thread that exits as soon as its
parent process is gone (Linux parent-death signals follow the parent *thread*, and Prefect may
start the server from a worker thread, so the parent pid is polled instead).
"""

from __future__ import annotations

import os
import sys
import threading
import time

PARENT_ENV = "CONCNER_SERVER_PARENT_PID"


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)  # the parent is gone: nothing will ever call this server again


def tie_temporary_server_to_this_process() -> None:
    """Make Prefect's temporary server (started later, if at all) exit with this process."""
    import subprocess

    from prefect.server.api import server

    original = server.SubprocessASGIServer._run_uvicorn_command
    if getattr(original, "_concner", False):
        return

    def run_tied(self):
        popen = subprocess.Popen

        def tied_popen(args, **kwargs):
            args = list(args)
            if args[1:3] == ["-m", "uvicorn"]:
                args[1:3] = ["-m", "concner.flows.server_child"]
                kwargs["env"] = {**kwargs.get("env", os.environ), PARENT_ENV: str(os.getpid())}
            return popen(args, **kwargs)

        server.subprocess.Popen = tied_popen  # only for this one call
        try:
            return original(self)
        finally:
            server.subprocess.Popen = popen

    run_tied._concner = True  # type: ignore[attr-defined]
    server.SubprocessASGIServer._run_uvicorn_command = run_tied


def main() -> None:
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if parent:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    from uvicorn.main import main as uvicorn_main

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn_main()


if __name__ == "__main__":
    main()
