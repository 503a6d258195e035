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

from concner.flows.execute import execute
from concner.flows.plan import plan_run
from concner.flows.records import finish, new_run_id
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.store import ArtifactStore

__all__ = ["execute", "pipeline_flow", "plan_run", "run_flow", "stage_flow", "no_heartbeat"]


@flow(name="concner-pipeline", log_prints=True)
def pipeline_flow(config: dict, store_root: str, force: list[str] | None = None, until: str | None = None,
                  run_id: str | None = None, target: str | None = None, verify: bool = False) -> dict:
    """The whole DAG (or up to `until`); `force` recomputes those stages and everything downstream;
    `target` runs one target of a multi-target config; `verify` re-hashes every artifact it would
    reuse (a corrupt one is recomputed). With `runner.kind: dask` in the config the stages run on
    a Dask cluster, branches side by side (flows/execute.py)."""
    run_config = RunConfig.model_validate(config)
    store = ArtifactStore(store_root)
    plan = plan_run(run_config, store, force=set(force or ()), until=until, target=target, verify=verify)
    return finish(execute(run_config, store, plan, run_id or new_run_id(run_config.name), get_run_logger()))


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
