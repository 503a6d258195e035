"""Rich progress bars that are silent when no description is given (tests, library callers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str | None, total: int) -> Iterator[Callable[..., None]]:
    """Yield advance(n=1, **fields); `status` is shown after the bar (e.g. live loss terms)."""
    if not description:
        yield lambda n=1, **fields: None
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
