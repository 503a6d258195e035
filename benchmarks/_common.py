"""Helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """fn's value and its wall time in seconds."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def code_commit() -> str | None:
    """The commit the measured code came from: CONCNER_COMMIT when set (a copy made with `git
    archive`, or a copied tree whose .git is not its own), else the checkout's HEAD, marked
    "+changes" when tracked files differ from it."""
    if os.environ.get("CONCNER_COMMIT"):
        return os.environ["CONCNER_COMMIT"]
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + (" +changes" if dirty else "")


def machine_info(with_code: bool = False) -> dict:
    """What every benchmark records about the machine and library versions it ran on; with_code adds
    the commit and the CUDA device first. Only recipe.py asks for them so far: the other scripts'
    committed results (some from GPU leases that cannot be rerun at will) hold what they wrote
    without them, and a rerun of those scripts as committed must write the same fields."""
    import torch
    import transformers

    code = {"commit": code_commit(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None} if with_code else {}
    return {
        **code,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
