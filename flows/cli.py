"""The `concner` command line: `main()`, and the commands registered in order (flows/commands_*.py)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

# importing a command module registers its commands: in this order in `concner --help`
from concner.flows import commands_run  # noqa: F401
from concner.flows import commands_inspect  # noqa: F401
from concner.flows import commands_schedule  # noqa: F401
from concner.flows.cli_common import app, err_console, signals_received
from concner.tasks.engine.errors import UserError


# after a signal, the longest the interpreter's exit may take before the signal's own default
# action ends the process (see end_by_signal_after)
EXIT_GRACE_S = 15.0


def end_by_signal_after(seconds: float, signum: int) -> None:
    """Let the signal's default action end this process if its exit has not ended `seconds` after
    it began.

    At exit, Prefect's log and event services hand their last items to the API, and wait for
    that without a limit. After a SIGTERM that lands during a flow that wait sometimes never
    returns (tests/test_faults.py's SIGTERM test saw it), and a process told to terminate would
    outlive the signal. The run's record is written by then, and the watchdog stops a temporary
    server whose process is gone. The wait starts when the main thread ends (the interpreter's
    exit), not now: `main()` called inside a longer-lived process (the tests) must not end it."""
    signal.signal(signum, signal.SIG_DFL)

    def end() -> None:
        threading.main_thread().join()  # returns once the interpreter's exit has begun
        time.sleep(seconds)
        os.kill(os.getpid(), signum)

    # a daemon thread runs on while the exit waits for Prefect's threads
    threading.Thread(target=end, name="concner-exit-after-signal", daemon=True).start()


def main() -> None:
    signals_received.clear()
    if not sys.stderr.isatty():
        # transformers draws its "Loading weights" / "Writing model shards" bars with carriage
        # returns; in a log file or pipe they splice into the log lines. The setting is read when
        # transformers is first imported, so it must be in place before any stage loads a model.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except (KeyboardInterrupt, SystemExit) as err:
        if signals_received and not (isinstance(err, SystemExit) and err.code in (0, None)):
            end_by_signal_after(EXIT_GRACE_S, signals_received[0])
            sys.exit(128 + signals_received[0])
        raise
    except UserError as err:
        err_console.print(f"error: {err}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except OSError as err:
        # A path the user chose cannot be written or read (a read-only or missing --store folder, a
        # full disk): one message, not a traceback. Other OSErrors (no file name) are bugs: re-raised.
        import errno

        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        if err.filename is None and not full:
            raise
        if full:
            hint = "free some space, or give another --store"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
            hint = "check that the folder exists and is writable, or give another --store"
        else:
            hint = "check the path"
        where = f"{err.filename}: " if err.filename else ""
        if err.filename2:
            where = f"{err.filename} -> {err.filename2}: "
        err_console.print(f"error: {where}{err.strerror or err} ({hint})", style="red", highlight=False,
                          markup=False, soft_wrap=True)
        sys.exit(UserError.exit_code)


if __name__ == "__main__":
    main()
