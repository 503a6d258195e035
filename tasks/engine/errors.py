"""Errors that are the user's to fix: the CLI prints them without a traceback and exits 2."""

from __future__ import annotations

from pathlib import Path

# Messages and exit codes: they change no result, so stage keys leave this module out (tasks/engine/keys.py).
ENGINE_ONLY = True


class UserError(Exception):
    """Bad input, bad config or an unusable model reference: message only, exit code 2."""

    exit_code = 2


class InputFileError(UserError):
    """A problem at a known place in an input file."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
