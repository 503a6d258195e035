"""What a stage is: its name, code version, upstream stages, parameters, outputs and compute function.

Adding a stage to the DAG means writing one module under tasks/stages/ that defines a `StageSpec`
(with its `view`, which gives it a terminal view, a Prefect UI artifact and a report section)
and listing it in `concner.tasks.engine.registry.STAGES`; a new kind of output file also gets its
entry in the catalog, `tasks/engine/artifacts.py`.
"""

from __future__ import annotations

import logging
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concner.tasks.engine.artifact_kinds import Artifact
from concner.tasks.engine.config import RunConfig
from concner.tasks.presentation.summary import StageView


@dataclass
class StageContext:
    """What a compute function gets: its parameters, its inputs' folders, and where to write."""

    config: RunConfig
    params: dict[str, Any]
    seed: int  # for every random draw of the stage (see derive_seed)
    inputs: dict[str, Path]  # upstream stage name -> artifact folder
    out: Path  # temporary folder, published atomically when compute returns
    metrics: dict[str, Any]  # goes into manifest.json
    store_root: Path | None = None  # for shared caches such as tiny models built from the run's data
    log: logging.Logger | logging.LoggerAdapter = field(default_factory=lambda: logging.getLogger("concner"))


@dataclass(frozen=True)
class StageSpec:
    name: str
    # The key covers the source of the stage's module and everything it imports (tasks/engine/keys.py);
    # bump this only for a change outside that code (e.g. a data format read elsewhere).
    version: str
    inputs: tuple[str, ...]
    params: Callable[[RunConfig], dict[str, Any]]  # the stage's own parameters: they enter the key
    compute: Callable[[StageContext], None]
    # what it publishes, from the catalog (tasks/engine/artifacts.py), each written through its kind:
    # a file none of them covers, or a required one missing, fails the stage before it is published
    outputs: tuple[Artifact, ...] | None = None
    description: str = ""
    # Which files of each input the stage reads (glob patterns against the input manifest's file
    # list); an input not named here is read whole. Only these files' content enters the key.
    reads: Callable[[RunConfig], Mapping[str, tuple[str, ...]]] | None = None
    libraries: tuple[str, ...] = ()  # packages whose version changes the stage's numbers
    model_params: tuple[str, ...] = ()  # params naming a model: a local folder is keyed by content
    # the model a stage trains, by the name users see in scores ("teacher", "student"): runs, sweeps,
    # diffs and reports name a stage's scores by it
    role: str | None = None
    view: StageView = field(default_factory=StageView)  # how its artifact is shown: outside its key


def output_problems(outputs: tuple[Artifact, ...], folder: Path) -> list[str]:
    """What a computed stage folder has that its declaration does not, and the reverse."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    stray = [f for f in files if not any(a.covers(f) for a in outputs)]
    missing = [a.file for a in outputs if not a.optional and not a.exists(folder)]
    return ([f"wrote {f}, which no declared output covers" for f in stray]
            + [f"did not write its output {f}" for f in missing])


def derive_seed(run_seed: int, stage: str) -> int:
    """The seed of one stage's random draws: from the run's seed and the stage's name.

    Not from the full stage key: then an ablation (another lambda) would also draw another head
    initialisation and another batch order, and its effect could not be told from the seed's.
    The key still covers the run's seed, so the same key always means the same draws.
    """
    digest = hashlib.sha256(f"{run_seed}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
