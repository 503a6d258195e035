"""Planning a run: the stages it needs, each one's key from its inputs' content, and whether the
store's artifact is reused or the stage computed. No Prefect here: `concner run --dry-run` plans
without a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from concner.tasks.engine import registry
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.keys import code_fingerprint, key_material, key_of
from concner.tasks.engine.store import ABSENT, ArtifactStore


@dataclass
class PlannedStage:
    name: str
    key: str | None  # None until the inputs it reads exist (they are computed earlier in the run)
    input_keys: dict[str, str | None]
    params: dict[str, Any]
    action: str  # "compute" or "reuse"
    target: str | None = None  # the branch of a multi-target run; None for shared and one-target stages
    config: RunConfig | None = field(default=None, repr=False, compare=False)  # the branch's config
    forced: bool = False  # recompute even when the store has the artifact
    note: str = ""  # why it is computed when that is not obvious (e.g. a corrupt artifact)
    material: dict[str, Any] | None = field(default=None, repr=False)  # what the key covers
    verify: bool = False  # re-hash every byte of the artifact before reusing it (`run --verify`)

    @property
    def entry(self) -> str:
        """The stage's name in the run record: `train`, or `train@de` in a multi-target run."""
        return self.name if self.target is None else f"{self.name}@{self.target}"


def read_inputs(spec, config: RunConfig) -> tuple[str, ...]:
    """The upstream stages whose files `spec` reads with this config (an input it reads nothing
    from, e.g. the target text for a translator that is not built from it, is left out: its
    artifact neither enters the key nor has to exist first)."""
    reads = spec.reads(config) if spec.reads is not None else {}
    return tuple(dep for dep in spec.inputs if reads.get(dep) != ())


def resolve_key(stage: PlannedStage, store: ArtifactStore) -> bool:
    """Fill in the key from the inputs' content; False while an input artifact is not in the store."""
    if any(k is None for k in stage.input_keys.values()):
        return False
    if any(not store.exists(dep, k) for dep, k in stage.input_keys.items()):
        return False
    spec = registry.get(stage.name)
    stage.material = key_material(spec, stage.config, store, stage.params, stage.input_keys)
    stage.key = key_of(stage.name, stage.material)
    return True


def decide(stage: PlannedStage, store: ArtifactStore) -> None:
    """reuse or compute, for a stage whose key is known; a corrupt artifact is named and recomputed."""
    if stage.forced:
        stage.action, stage.note = "compute", "forced"
        return
    problems = store.problems(stage.name, stage.key, full=stage.verify)
    if not problems:
        stage.action = "reuse"
    else:
        stage.action = "compute"
        if problems != [ABSENT]:
            stage.note = "corrupt artifact, recomputed: " + "; ".join(problems)


def plan_run(config: RunConfig, store: ArtifactStore, *, force: set[str] = frozenset(), until: str | None = None,
             only: str | None = None, target: str | None = None, verify: bool = False) -> list[PlannedStage]:
    """Keys of the stages a run needs and whether each will be computed or reused.

    A key covers the content of the inputs the stage reads, so the key of a stage below one that
    will be computed is known only once that one has run: such stages are planned as `compute`
    with key None, and `execute` decides again when their inputs exist (an identical recompute
    upstream then lets them be reused). A multi-target config plans one branch per target;
    stages that do not depend on the target (the source ingest) are planned once, shared.
    """
    for name in force:
        registry.get(name)
    for spec in registry.STAGES:  # fingerprint all code now: an edit during the run must not mix versions
        code_fingerprint(spec.compute.__module__)
    names = [s.name for s in registry.STAGES]
    if until or only:
        # the inputs the stages read under this config: a stage that is off (adapt) is not needed
        reads = lambda spec: {dep for _, c in config.branches() for dep in read_inputs(spec, c)}  # noqa: E731
        names = registry.upstream_closure(registry.get(until or only).name, reads)
    forced = registry.downstream_closure(set(force))
    per_target = registry.downstream_closure({"ingest_target"})
    branches = config.branches()
    if target is not None:
        known = [b for b, _ in branches if b is not None]
        branches = [(b, c) for b, c in branches if b == target]
        if not branches:
            raise UserError(f"--target {target!r}: the config's targets are {', '.join(known) or 'not named (one target)'}")
    planned: list[PlannedStage] = []
    shared: dict[str, PlannedStage] = {}
    for branch, branch_config in branches:
        in_branch: dict[str, PlannedStage] = {}
        for name in names:
            spec = registry.get(name)
            is_shared = name not in per_target
            if is_shared and name in shared:
                in_branch[name] = shared[name]
                continue
            deps = {dep: in_branch[dep] for dep in read_inputs(spec, branch_config)}
            # an input computed in this run has no content yet, hence this stage no key yet
            input_keys = {dep: (None if d.action == "compute" else d.key) for dep, d in deps.items()}
            stage = PlannedStage(name, None, input_keys, spec.params(branch_config), "compute",
                                 None if is_shared else branch, branch_config, forced=name in forced, verify=verify)
            if resolve_key(stage, store):
                decide(stage, store)
            elif not any(d.action == "compute" for d in deps.values()):
                missing = [f"{d.name}/{d.key}" for d in deps.values() if not store.exists(d.name, d.key)]
                stage.note = "inputs missing: " + ", ".join(missing)
            in_branch[name] = stage
            if is_shared:
                shared[name] = stage
            planned.append(stage)
    if only:
        missing = [p.entry for p in planned if p.name != only and p.action == "compute"]
        if missing:
            raise UserError(
                f"stage {only!r} needs {', '.join(missing)} first: run `concner run CONFIG --until {only}`"
            )
        planned = [p for p in planned if p.name == only]
    return planned


def key_now(stage: PlannedStage, config: RunConfig, store: ArtifactStore,
            resolved: dict[tuple[str | None, str], str]) -> None:
    """Key a stage whose inputs were computed in this run by their content, now that they are in
    the store (`resolved`: the key each earlier stage of the run ended with), and decide again."""
    if stage.key is not None:
        return
    spec = registry.get(stage.name)
    stage.input_keys = {dep: resolved.get((stage.target, dep)) or resolved[(None, dep)]
                        for dep in read_inputs(spec, stage.config or config)}
    if not resolve_key(stage, store):
        raise RuntimeError(f"{stage.entry}: inputs {stage.input_keys} are not in the store after computing them")
    decide(stage, store)
