"""What a stage is: its name, code version, upstream stages, parameters and compute function.

Adding a stage to the DAG means writing one module that defines a `StageSpec` and listing it in
`concner.tasks.registry.STAGES`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concner.tasks.config import RunConfig


@dataclass
class StageContext:
    """What a compute function gets: its parameters, its inputs' folders, and where to write."""

    config: RunConfig
    params: dict[str, Any]
    inputs: dict[str, Path]  # upstream stage name -> artifact folder
    out: Path  # temporary folder, published atomically when compute returns
    metrics: dict[str, Any]  # goes into manifest.json
    store_root: Path | None = None  # for shared caches such as tiny models built from the run's data
    log: logging.Logger | logging.LoggerAdapter = field(default_factory=lambda: logging.getLogger("concner"))


@dataclass(frozen=True)
class StageSpec:
    name: str
    version: str  # bump when the stage's code changes its output: invalidates cached artifacts
    inputs: tuple[str, ...]
    params: Callable[[RunConfig], dict[str, Any]]  # the stage's own parameters: they enter the key
    compute: Callable[[StageContext], None]
    headline: Callable[[dict[str, Any]], str] = lambda metrics: ""  # key figure for summary tables
    description: str = ""
