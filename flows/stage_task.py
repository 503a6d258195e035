"""One stage as a Prefect task: compute it into the store under the key's lock, or reuse it, and
show its key figures in the Prefect UI. `compute_stage` is the same without Prefect."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.context import TaskRunContext
from prefect.states import Failed

from concner.flows.plan import PlannedStage
from concner.tasks.engine import registry
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.stage import StageContext, derive_seed, output_problems
from concner.tasks.engine.store import ArtifactStore


def compute_stage(config: RunConfig, store: ArtifactStore, stage: PlannedStage,
                  log: logging.Logger | logging.LoggerAdapter | None = None) -> dict:
    """Run one stage's compute function into the store (no Prefect involved). Its inputs are
    verified byte for byte first: a stage never reads an artifact that is not what it recorded."""
    spec = registry.get(stage.name)
    run_config = stage.config or config
    reads = spec.reads(run_config) if spec.reads is not None else {}
    for dep, key in stage.input_keys.items():
        problems = store.problems(dep, key, full=True)
        if problems:
            raise UserError(f"input artifact {dep}/{key} in {store.root} cannot be used: " + "; ".join(problems)
                            + " (run again: the pipeline recomputes it)")
    started = time.time()
    with contextlib.ExitStack() as views, \
            store.writing(stage.name, stage.key, params=stage.params, inputs=stage.input_keys,
                          key_material=stage.material) as (out, metrics):
        # each input as a view of the files its key covers (`reads`): an undeclared one is absent
        inputs = {dep: views.enter_context(store.declared_view(dep, key, reads.get(dep)))
                  for dep, key in stage.input_keys.items()}
        ctx = StageContext(run_config, stage.params, derive_seed(run_config.seed, stage.name), inputs, out, metrics,
                           log=log or logging.getLogger("concner"), store_root=store.root)
        spec.compute(ctx)
        if spec.outputs is not None:
            problems = output_problems(spec.outputs, out)
            if problems:  # the stage's code disagrees with its declaration: a bug, not the user's
                raise RuntimeError(f"stage {stage.name}: " + "; ".join(problems))
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
        except UserError as err:
            # A Failed state instead of an exception: Prefect logs no traceback for the user's
            # mistake, and the CLI prints the message once (the console filter hides Prefect's copy).
            USER_ERRORS.add(str(err))
            hide_user_error_echoes()
            return Failed(message=str(err))
        except Exception as err:
            problem = store_write_problem(err)
            if problem is None:
                raise
            # the temporary folder is gone already (store.writing); nothing half-written is published
            message = (f"{stage_name}: cannot write to the store {store.root}: {problem}; free space or fix "
                       "permissions, then rerun")
            USER_ERRORS.add(message)
            hide_user_error_echoes()
            return Failed(message=message)
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
    headline = registry.get(stage_name).view.headline(manifest.get("metrics", {})) if manifest else ""
    create_markdown_artifact(
        key=f"{stage_name.replace('_', '-')}-{key}",
        markdown=stage_markdown(stage_name, key, store.stage_dir(stage_name, key), headline),
        description=f"concner {stage_name}",
    )


USER_ERRORS: set[str] = set()  # user errors this process reported through Failed states
# a full disk, a read-only or foreign-owned store: the user's to fix, not a bug to trace back
_STORE_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def store_write_problem(err: BaseException) -> str | None:
    """What keeps a stage from writing, when `err` is the filesystem's refusal; None otherwise.

    Some writers wrap the OS error in their own type with only its text: safetensors raises
    `SafetensorError('... I/O error: No space left on device (os error 28)')`."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _STORE_WRITE_ERRNOS:
            return (seen.strerror or str(seen)) + (f" ({seen.filename})" if seen.filename else "")
        seen = seen.__cause__ or seen.__context__
    text = str(err)
    for code in (errno.ENOSPC, errno.EDQUOT):
        if f"(os error {code})" in text or os.strerror(code) in text:
            return os.strerror(code)
    return None


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


def stage_call(stage: PlannedStage, config_json: dict, store: ArtifactStore):
    """(the stage's Prefect task with this run's options, its parameters); `config_json`: the
    stage's config (its branch's, in a multi-target run) as JSON."""
    task_fn = stage_task.with_options(refresh_cache=stage.action == "compute", task_run_name=stage.entry)
    # an artifact found corrupt is recomputed even if the task's own quick check (sizes, and hashes
    # of changed files only) would pass it: `run --verify` finds bytes flipped in place
    recompute = stage.forced or stage.note.startswith("corrupt")
    parameters = {"stage_name": stage.name, "key": stage.key, "config": config_json, "store_root": str(store.root),
                  "input_keys": stage.input_keys, "params": stage.params, "material": stage.material,
                  "forced": recompute}
    return task_fn, parameters
