"""The DAG: every stage in dependency order. Adding a stage = one module + one entry here."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from concner.tasks.stages import adapt, distill, evaluate, ingest, project, pseudo_label, train, translate
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.stage import StageSpec

STAGES: list[StageSpec] = [
    ingest.STAGE,
    ingest.TARGET_STAGE,
    translate.STAGE,
    adapt.STAGE,
    project.STAGE,
    train.STAGE,
    pseudo_label.STAGE,
    distill.STAGE,
    evaluate.STAGE,
]
BY_NAME: dict[str, StageSpec] = {s.name: s for s in STAGES}


def check(stages: list[StageSpec]) -> dict[str, str]:
    """The registry as the planner needs it: unique names, every input listed before the stage that
    reads it (plans follow this order), declared outputs, unique roles. The stage that trains each
    model role."""
    seen: set[str] = set()
    roles: dict[str, str] = {}
    for spec in stages:
        if spec.name in seen:
            raise ValueError(f"stage {spec.name!r} is registered twice")
        late = [dep for dep in spec.inputs if dep not in seen]
        if late:
            raise ValueError(f"stage {spec.name!r} is listed before its inputs {late}: order STAGES by dependency")
        if spec.outputs is None:
            raise ValueError(f"stage {spec.name!r} declares no outputs")
        if spec.role is not None:
            if spec.role in roles:
                raise ValueError(f"stages {roles[spec.role]!r} and {spec.name!r} both train the {spec.role!r}")
            roles[spec.role] = spec.name
        seen.add(spec.name)
    return roles


STAGE_OF_ROLE: dict[str, str] = check(STAGES)  # e.g. {"teacher": "train", "student": "distill"}
ROLE_OF: dict[str, str] = {stage: role for role, stage in STAGE_OF_ROLE.items()}


def get(name: str) -> StageSpec:
    if name not in BY_NAME:
        raise UserError(f"unknown stage {name!r}; stages: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def stage_of(entry: str) -> str:
    """The stage name of a run-record entry: `train@de` (branch `de` of a multi-target run) -> `train`."""
    return entry.split("@", 1)[0]


def upstream_closure(name: str, inputs: Callable[[StageSpec], Iterable[str]] | None = None) -> list[str]:
    """`name` and every stage it depends on, in DAG order; `inputs` (a spec's inputs under one
    config, e.g. only those it reads) narrows the declared ones."""
    needed = {name}
    for spec in reversed(STAGES):
        if spec.name in needed:
            needed.update(inputs(spec) if inputs is not None else spec.inputs)
    return [s.name for s in STAGES if s.name in needed]


def downstream_closure(names: set[str]) -> set[str]:
    """The given stages and every stage that depends on them, directly or not."""
    out = set(names)
    for spec in STAGES:
        if out.intersection(spec.inputs):
            out.add(spec.name)
    return out
