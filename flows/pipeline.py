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

from prefect import flow, get_run_logger
from prefect.exceptions import ExternalSignal

from concner.flows.plan import PlannedStage, key_now, plan_run
from concner.flows.records import close_record, finish, is_user_error, new_run_id, stage_entry, start_record
from concner.flows.stage_task import stage_call
from concner.tasks.config import RunConfig
from concner.tasks.errors import UserError
from concner.tasks.store import ArtifactStore

__all__ = ["execute", "pipeline_flow", "plan_run", "run_flow", "stage_flow", "no_heartbeat"]


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


@flow(name="concner-pipeline", log_prints=True)
def pipeline_flow(config: dict, store_root: str, force: list[str] | None = None, until: str | None = None,
                  run_id: str | None = None, target: str | None = None, verify: bool = False) -> dict:
    """The whole DAG (or up to `until`); `force` recomputes those stages and everything downstream;
    `target` runs one target of a multi-target config; `verify` re-hashes every artifact it would
    reuse (a corrupt one is recomputed). With `runner.kind: dask` in the config the
    stages run on a Dask cluster, branches side by side (flows/concurrent.py)."""
    run_config = RunConfig.model_validate(config)
    store = ArtifactStore(store_root)
    plan = plan_run(run_config, store, force=set(force or ()), until=until, target=target, verify=verify)
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
