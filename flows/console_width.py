"""Printing a table whole when nothing will wrap it for a reader: a pipe or a log file."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.measure import Measurement


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The width `renderable` takes when nothing limits it."""
    return Measurement.get(console, console.options.update_width(1_000_000), renderable).maximum


def print_whole(console: Console, renderable: RenderableType, *, wide: bool = False) -> None:
    """On a terminal (unless `wide`) as rich fits it to the screen; otherwise at its natural width,
    so that a log keeps every run id and artifact path whole instead of cutting them with '…'."""
    if console.is_terminal and not wide:
        console.print(renderable)
        return
    # Console.print never goes past the console's width: a console as wide as the table, same stream
    Console(file=console.file, width=max(natural_width(console, renderable), 20),
            force_terminal=console.is_terminal or None, no_color=console.no_color).print(renderable)
