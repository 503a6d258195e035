"""Progress of long loops: a rich bar on a terminal, a line every 30 s in a log (not a terminal),
nothing when no description is given (tests, library callers)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# What a user sees while a loop runs: stage keys leave this module out (tasks/engine/keys.py).
ENGINE_ONLY = True

# seconds between progress lines when output goes to a file or a pipe (scheduled runs, CI logs)
LOG_INTERVAL_ENV = "CONCNER_PROGRESS_INTERVAL"


@contextmanager
def progress_bar(description: str | None, total: int) -> Iterator[Callable[..., None]]:
    """Yield advance(n=1, **fields); `status` is shown after the bar (e.g. live loss terms)."""
    if not description:
        yield lambda n=1, **fields: None
        return
    if not Console(stderr=True).is_terminal:
        with progress_lines(description, total, float(os.environ.get(LOG_INTERVAL_ENV, "30"))) as advance:
            yield advance
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields) -> None:
            progress.update(task, advance=n, **fields)

        yield advance


@contextmanager
def progress_lines(description: str, total: int, interval: float) -> Iterator[Callable[..., None]]:
    """One line on stderr at most every `interval` seconds, and one at the end: done/total, rate, ETA."""
    started = last = time.monotonic()
    done = 0
    status = ""

    def line() -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", ETA {int((total - done) / rate)} s" if rate > 0 and done < total else ""
        print(f"{description}: {done}/{total} ({rate:.2f}/s, {int(elapsed)} s{eta}) {status}".rstrip(),
              file=sys.stderr, flush=True)

    def advance(n: int = 1, **fields) -> None:
        nonlocal done, last, status
        done += n
        status = str(fields.get("status", status))
        if time.monotonic() - last >= interval:
            last = time.monotonic()
            line()

    yield advance
    line()
