"""The Prefect flows: the whole DAG, and one stage on its own.

The artifact store decides what is fresh. Every stage is one Prefect task whose cache key is the
stage's store key; the flow refreshes Prefect's cache whenever the store lacks that artifact or
the user forced the stage, so Prefect shows reused stages as Cached and never serves a stale
result for an artifact deleted from disk. A stage the store already holds is reused even when
Prefect has no cache record of it (a fresh PREFECT_HOME, another server, a copied store): the
task then returns at once without computing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.context import TaskRunContext
from prefect.exceptions import ExternalSignal
from prefect.states import Failed

from concner.tasks import registry
from concner.tasks.config import RunConfig
from concner.tasks.errors import UserError
from concner.tasks.keys import code_fingerprint, key_material, key_of
from concner.tasks.stage import StageContext, derive_seed
from concner.tasks.store import ABSENT, ArtifactStore


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


def _resolve_key(stage: PlannedStage, store: ArtifactStore) -> bool:
    """Fill in the key from the inputs' content; False while an input artifact is not in the store."""
    if any(k is None for k in stage.input_keys.values()):
        return False
    if any(not store.exists(dep, k) for dep, k in stage.input_keys.items()):
        return False
    spec = registry.get(stage.name)
    stage.material = key_material(spec, stage.config, store, stage.params, stage.input_keys)
    stage.key = key_of(stage.name, stage.material)
    return True


def _decide(stage: PlannedStage, store: ArtifactStore) -> None:
    """reuse or compute, for a stage whose key is known; a corrupt artifact is named and recomputed."""
    if stage.forced:
        stage.action, stage.note = "compute", "forced"
        return
    problems = store.problems(stage.name, stage.key)
    if not problems:
        stage.action = "reuse"
    else:
        stage.action = "compute"
        if problems != [ABSENT]:
            stage.note = "corrupt artifact, recomputed: " + "; ".join(problems)


def plan_run(config: RunConfig, store: ArtifactStore, *, force: set[str] = frozenset(), until: str | None = None,
             only: str | None = None, target: str | None = None) -> list[PlannedStage]:
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
        names = registry.upstream_closure(registry.get(until or only).name)
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
                                 None if is_shared else branch, branch_config, forced=name in forced)
            if _resolve_key(stage, store):
                _decide(stage, store)
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


def compute_stage(config: RunConfig, store: ArtifactStore, stage: PlannedStage,
                  log: logging.Logger | logging.LoggerAdapter | None = None) -> dict:
    """Run one stage's compute function into the store (no Prefect involved). Its inputs are
    verified byte for byte first: a stage never reads an artifact that is not what it recorded."""
    spec = registry.get(stage.name)
    inputs = {dep: store.stage_dir(dep, key) for dep, key in stage.input_keys.items()}
    for dep, key in stage.input_keys.items():
        problems = store.problems(dep, key, full=True)
        if problems:
            raise UserError(f"input artifact {dep}/{key} in {store.root} cannot be used: " + "; ".join(problems)
                            + " (run again: the pipeline recomputes it)")
    started = time.time()
    with store.writing(stage.name, stage.key, params=stage.params, inputs=stage.input_keys,
                       key_material=stage.material) as (out, metrics):
        run_config = stage.config or config
        ctx = StageContext(run_config, stage.params, derive_seed(run_config.seed, stage.name), inputs, out, metrics,
                           log=log or logging.getLogger("concner"), store_root=store.root)
        spec.compute(ctx)
    return {"key": stage.key, "seconds": round(time.time() - started, 2)}


def _stage_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"concner-{parameters['stage_name']}-{parameters['key']}"


@task(cache_key_fn=_stage_cache_key, persist_result=True, task_run_name="{stage_name}")
def stage_task(stage_name: str, key: str, config: dict, store_root: str, input_keys: dict[str, str],
               params: dict[str, Any], material: dict[str, Any] | None = None, forced: bool = False) -> dict:
    """One stage as a Prefect task; returns the artifact reference, never the data itself.

    One writer per key across processes: the stage computes under the key's lock, and a process
    that finds the artifact published once it holds the lock reuses it (unless forced)."""
    # The body is a module-level function: on a Dask worker it then runs with this module's state
    # (cloudpickle ships a task's own function by value, with private copies of the globals it names).
    return run_stage_task(stage_name, key, config, store_root, input_keys, params, material, forced)


def run_stage_task(stage_name: str, key: str, config: dict, store_root: str, input_keys: dict[str, str],
                   params: dict[str, Any], material: dict[str, Any] | None, forced: bool) -> dict:
    """The body of `stage_task` (inside a Prefect task run)."""
    store = ArtifactStore(store_root)
    log = get_run_logger()
    if not forced and store.exists(stage_name, key):
        return _reused(stage_name, store, key, log)
    with store.lock(stage_name, key):
        if not forced and store.exists(stage_name, key):  # another process published it meanwhile
            return _reused(stage_name, store, key, log)
        run_config = RunConfig.model_validate(config)
        planned = PlannedStage(stage_name, key, input_keys, params, "compute", material=material)
        try:
            result = compute_stage(run_config, store, planned, log)
        except OSError as err:
            if err.errno not in _STORE_WRITE_ERRNOS:
                raise
            # the temporary folder is gone already (store.writing); nothing half-written is published
            message = (f"{stage_name}: cannot write to the store {store.root}: {err.strerror}"
                       + (f" ({err.filename})" if err.filename else "") + "; free space or fix permissions, then rerun")
            USER_ERRORS.add(message)
            hide_user_error_echoes()
            return Failed(message=message)
        except UserError as err:
            # A Failed state instead of an exception: Prefect logs no traceback for the user's
            # mistake, and the CLI prints the message once (the console filter hides Prefect's copy).
            USER_ERRORS.add(str(err))
            hide_user_error_echoes()
            return Failed(message=str(err))
    _publish_ui_artifact(stage_name, store, key)
    return {**result, "worker": f"{socket.gethostname()}:{os.getpid()}"}  # which process computed it


def _reused(stage_name: str, store: ArtifactStore, key: str, log) -> dict:
    log.info("%s %s is in the store: reused", stage_name, key)
    _publish_ui_artifact(stage_name, store, key)
    return {"key": key, "seconds": 0.0, "computed": False}


def _publish_ui_artifact(stage_name: str, store: ArtifactStore, key: str) -> None:
    """Key figures and a few samples of the stage as a markdown artifact on its task run."""
    from prefect.artifacts import create_markdown_artifact

    from concner.flows.ui_artifacts import stage_markdown

    manifest = store.manifest(stage_name, key) or {}
    headline = registry.get(stage_name).headline(manifest.get("metrics", {})) if manifest else ""
    create_markdown_artifact(
        key=f"{stage_name.replace('_', '-')}-{key}",
        markdown=stage_markdown(stage_name, key, store.stage_dir(stage_name, key), headline),
        description=f"concner {stage_name}",
    )


USER_ERRORS: set[str] = set()  # user errors this process reported through Failed states
# a full disk, a read-only or foreign-owned store: the user's to fix, not a bug to trace back
_STORE_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


class _HideUserErrorEchoes(logging.Filter):
    """Prefect logs a failed task's message up to three times (task failed, task finished, flow
    finished, one with a stray `NoneType: None`); the CLI prints a user error once itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not USER_ERRORS:
            return True
        text = record.getMessage()
        return not any(message in text for message in USER_ERRORS)


def hide_user_error_echoes() -> None:
    """Install the filter (once). Called again where a user error is reported: in a Dask worker,
    Prefect configures its loggers anew after this module was imported, dropping the filter."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideUserErrorEchoes) for f in logger.filters):
            logger.addFilter(_HideUserErrorEchoes())


hide_user_error_echoes()


def mark_dead_runs(store: ArtifactStore) -> list[str]:
    """Records left `running` by a process of this host that no longer exists (kill -9, power
    loss) are marked `interrupted`, naming the stage they were in."""
    marked = []
    host = socket.gethostname()
    for record in store.list_runs():
        if record.get("status") != "running" or record.get("host") != host or _alive(record.get("pid")):
            continue
        stage = record.get("current_stage")
        record.update(status="interrupted", failed_stage=stage,
                      error=f"process {record.get('pid')} ended without finishing (killed?) during {stage}")
        store.save_run(record)
        marked.append(record["run_id"])
    return marked


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def _prefect_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def start_record(config: RunConfig, store: ArtifactStore, plan: list[PlannedStage], run_id: str) -> dict:
    """The run record, saved as `running` before any stage (a killed run leaves it; see mark_dead_runs)."""
    mark_dead_runs(store)
    for leftover in store.leftovers():  # temp folders of killed writers (their lock is free)
        shutil.rmtree(leftover, ignore_errors=True)
    record: dict[str, Any] = {
        "run_id": run_id,
        "name": config.name,
        "started": time.time(),
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "prefect_flow_run_id": _prefect_flow_run_id(),  # the same run in Prefect (UI, API)
        "config": config.model_dump(mode="json"),
        # the branches this run ran (all, or the one of --target); [] for a one-target run
        "targets": list(dict.fromkeys(s.target for s in plan if s.target is not None)),
        "stages": {},
    }
    store.save_run(record)  # from the start: a killed run leaves its record (see mark_dead_runs)
    return record


def key_now(stage: PlannedStage, config: RunConfig, store: ArtifactStore,
            resolved: dict[tuple[str | None, str], str]) -> None:
    """Key a stage whose inputs were computed in this run by their content, now that they are in
    the store (`resolved`: the key each earlier stage of the run ended with), and decide again."""
    if stage.key is not None:
        return
    spec = registry.get(stage.name)
    stage.input_keys = {dep: resolved.get((stage.target, dep)) or resolved[(None, dep)]
                        for dep in read_inputs(spec, stage.config or config)}
    if not _resolve_key(stage, store):
        raise RuntimeError(f"{stage.entry}: inputs {stage.input_keys} are not in the store after computing them")
    _decide(stage, store)


def stage_call(stage: PlannedStage, config: RunConfig, store: ArtifactStore):
    """(the stage's Prefect task with this run's options, its parameters)."""
    # a stage sees its branch's one-target config, never the whole multi-target one
    config_json = (stage.config or config).model_dump(mode="json")
    task_fn = stage_task.with_options(refresh_cache=stage.action == "compute", task_run_name=stage.entry)
    parameters = {"stage_name": stage.name, "key": stage.key, "config": config_json, "store_root": str(store.root),
                  "input_keys": stage.input_keys, "params": stage.params, "material": stage.material,
                  "forced": stage.forced}
    return task_fn, parameters


def is_user_error(state) -> bool:
    """A stage that failed on the user's input: a Failed state with a message and no exception."""
    return bool(state.is_failed() and state.message and not _has_exception(state))


def stage_entry(stage: PlannedStage, state, result: dict, store: ArtifactStore) -> dict:
    """The run record's entry of a finished stage."""
    reused = state.name == "Cached" or result.get("computed") is False
    manifest = store.manifest(stage.name, stage.key) or {}
    return {
        "stage": stage.name,
        "target": stage.target,
        "key": stage.key,
        "status": "reused" if reused else "computed",
        "seconds": 0.0 if reused else result["seconds"],
        "prefect_state": state.name,
        "headline": registry.get(stage.name).headline(manifest.get("metrics", {})) if manifest else "",
        **({"note": stage.note} if stage.note and stage.note != "forced" else {}),
    }


def close_record(record: dict, store: ArtifactStore) -> None:
    """End time and scores into the record, saved; the run summary to Prefect."""
    record["ended"] = time.time()
    record["scores"] = _collect_scores(store, record)
    store.save_run(record)
    try:
        _publish_run_summary(record)
    except Exception:  # an interrupted run may have lost its server: the record on disk is what counts
        if record["status"] == "completed":
            raise


def execute(config: RunConfig, store: ArtifactStore, plan: list[PlannedStage], run_id: str, log) -> dict:
    """Run planned stages as Prefect tasks, one after another, and write the run record (also when
    a stage fails). `flows/concurrent.py` runs them on a Dask cluster instead (runner.kind: dask)."""
    record = start_record(config, store, plan, run_id)
    resolved: dict[tuple[str | None, str], str] = {}
    try:
        for stage in plan:
            record["current_stage"] = stage.entry
            store.save_run(record)
            key_now(stage, config, store, resolved)  # inputs computed in this run: key them by content now
            if stage.note and stage.note != "forced":
                log.warning("%s: %s", stage.entry, stage.note)
            resolved[(stage.target, stage.name)] = stage.key
            task_fn, parameters = stage_call(stage, config, store)
            state = task_fn(**parameters, return_state=True)
            if is_user_error(state):
                record.update(status="failed", error=state.message, user_error=True, failed_stage=stage.entry)
                break
            result = state.result()  # re-raises the stage's exception
            record["stages"][stage.entry] = stage_entry(stage, state, result, store)
            log.info("%s %s (%s)", stage.entry, record["stages"][stage.entry]["status"], stage.key)
            store.save_run(record)
        else:
            record["status"] = "completed"
            record.pop("current_stage", None)
    except (KeyboardInterrupt, SystemExit, ExternalSignal) as err:  # Ctrl-C, SIGTERM (Prefect's TerminationSignal)
        record.update(status="interrupted", failed_stage=record.get("current_stage"),
                      error=f"interrupted ({type(err).__name__}) during {record.get('current_stage')}")
        raise
    except BaseException as err:
        record.update(status="failed", failed_stage=record.get("current_stage"), error=str(err) or type(err).__name__)
        raise
    finally:
        close_record(record, store)
    return record


def _publish_run_summary(record: dict) -> None:
    from prefect.artifacts import create_markdown_artifact

    from concner.flows.ui_artifacts import run_markdown

    create_markdown_artifact(key="concner-run-summary", markdown=run_markdown(record),
                             description=f"concner run {record['run_id']}")


def _has_exception(state) -> bool:
    return isinstance(state.result(raise_on_failure=False), BaseException)


def finish(record: dict):
    """The flow's return: the record, or a Failed state (no traceback) when the user's input was bad."""
    if record.get("user_error"):
        return Failed(message=record["error"])
    return record


def _collect_scores(store: ArtifactStore, record: dict) -> dict:
    """Scores that stages put in their manifests under metrics['scores'], by stage."""
    scores = {}
    for entry, info in record["stages"].items():
        manifest = store.manifest(registry.stage_of(entry), info["key"]) or {}
        if "scores" in manifest.get("metrics", {}):
            scores[entry] = manifest["metrics"]["scores"]
    return scores


@flow(name="concner-pipeline", log_prints=True)
def pipeline_flow(config: dict, store_root: str, force: list[str] | None = None, until: str | None = None,
                  run_id: str | None = None, target: str | None = None) -> dict:
    """The whole DAG (or up to `until`); `force` recomputes those stages and everything downstream;
    `target` runs one target of a multi-target config. With `runner.kind: dask` in the config the
    stages run on a Dask cluster, branches side by side (flows/concurrent.py)."""
    run_config = RunConfig.model_validate(config)
    store = ArtifactStore(store_root)
    plan = plan_run(run_config, store, force=set(force or ()), until=until, target=target)
    run_id = run_id or new_run_id(run_config.name)
    if run_config.runner.kind == "dask":  # branches side by side on a Dask cluster (flows/concurrent.py)
        from concner.flows.concurrent import execute_concurrently

        return finish(execute_concurrently(run_config, store, plan, run_id, get_run_logger()))
    return finish(execute(run_config, store, plan, run_id, get_run_logger()))


@flow(name="concner-stage")
def stage_flow(stage_name: str, config: dict, store_root: str, force: bool = True, run_id: str | None = None,
               target: str | None = None) -> dict:
    """One stage (for every target, or `target`), its inputs read from the store (they must exist)."""
    run_config = RunConfig.model_validate(config)
    store = ArtifactStore(store_root)
    plan = plan_run(run_config, store, force={stage_name} if force else set(), only=stage_name, target=target)
    return finish(execute(run_config, store, plan, run_id or new_run_id(run_config.name), get_run_logger()))


def no_heartbeat() -> dict:
    """Prefect settings for a flow run that only reuses (see run_flow)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    return {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}


def run_flow(flow_fn, store: ArtifactStore, run_name: str, *, computes: bool = True, **kwargs) -> dict:
    """Call a flow and give back its run record; a user error comes back as UserError (exit 2).

    `computes=False` (the plan reuses every stage): no Prefect heartbeat. It watches for runs that
    die while working, and stopping its thread costs up to a second, a large part of a rerun."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    run_id = new_run_id(run_name)
    quiet = (temporary_settings(no_heartbeat())
             if not computes and PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is not None else contextlib.nullcontext())
    with quiet:
        state = flow_fn(store_root=str(store.root), run_id=run_id, return_state=True, **kwargs)
    if state.is_failed():
        path = store.runs_dir() / f"{run_id}.json"
        record = store.load_run(run_id) if path.exists() else {}
        if record.get("user_error"):
            raise UserError(record["error"])
    return state.result()
