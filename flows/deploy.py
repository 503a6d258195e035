"""Scheduled runs: the pipeline flow as Prefect deployments, one per config (language pair).

`concner deploy` registers a deployment whose parameters are the whole validated config (paths
already absolute) and the store root, so a scheduled run repeats exactly the run the user saw
when deploying. `concner serve` executes the runs of such deployments in one long-lived process
(Prefect's `serve`); teams with work pools and workers use `prefect.yaml` at the repo root
instead, whose deployments run `pipeline_from_config` so that the YAML names a config file.

Schedules need a real Prefect server: the temporary server a process starts on its own has no
scheduler service, so scheduled runs would never be created. Hence every command here asks for
`PREFECT_API_URL` first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.config_loading import load_config
from concner.tasks.engine.errors import UserError

FLOW_NAME = "concner-pipeline"  # the name of concner.flows.pipeline.pipeline_flow
FROM_CONFIG_FLOW_NAME = "concner-pipeline-from-config"


def require_server() -> str:
    """The Prefect API URL; a UserError when there is none (schedules would never fire)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise UserError(
            "deployments need a running Prefect server (the temporary one has no scheduler): "
            "start one with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return url


def cron_schedule(cron: str, timezone: str | None = None):
    from prefect.schedules import Cron

    try:
        return Cron(cron, timezone=timezone)
    except ValueError as err:
        raise UserError(f"--cron {cron!r}: {err}") from None


def pipeline_deployment(config: RunConfig, config_path: Path, store_root: Path, crons: list[str],
                        name: str | None = None, timezone: str | None = None):
    """A RunnerDeployment of pipeline_flow for one config, one Cron schedule per cron string."""
    from prefect.types.entrypoint import EntrypointType

    from concner.flows.pipeline import pipeline_flow

    name = name or config.name
    try:
        return pipeline_flow.to_deployment(
            name=name,
            parameters={"config": config.model_dump(mode="json"), "store_root": str(store_root)},
            schedules=[cron_schedule(c, timezone) for c in crons],
            description=f"concner {config.source_lang}→{','.join(config.target_langs)} from {config_path.resolve()}, "
                        f"artifacts in {store_root}",
            tags=["concner", *dict.fromkeys(f"{config.source_lang}-{lang}" for lang in config.target_langs)],
            # The module path, not this checkout's file path: the served process imports the
            # installed package, so the deployment works from any working directory.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
    except ValueError as err:  # e.g. a deployment name with '/' or '%'
        raise UserError(f"deployment {name!r}: {err}") from None


def registered(flow_names: tuple[str, ...] = (FLOW_NAME, FROM_CONFIG_FLOW_NAME)) -> list[tuple[str, Any]]:
    """(flow name, DeploymentResponse) for every deployment of the concner flows on the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    out = []
    with get_client(sync_client=True) as client:
        for flow_name in flow_names:
            for d in client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name]))):
                out.append((flow_name, d))
    return out


def served_copy(deployment, runner: dict[str, Any] | None = None) -> Any:
    """A RunnerDeployment equal to a registered pipeline deployment, for `serve` to pick its runs up.

    Serving re-registers the deployment; its schedules are copied whatever their kind, and it is
    unpaused, as Prefect's serve pauses its deployments when it stops. `runner` (fields of the
    config's `runner` section, from `serve --runner/--dask-address`) replaces those of its config.
    """
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.types.entrypoint import EntrypointType

    from concner.flows.pipeline import pipeline_flow

    schedules = [DeploymentScheduleCreate(schedule=s.schedule, active=s.active, parameters=s.parameters, slug=s.slug)
                 for s in deployment.schedules]
    parameters = dict(deployment.parameters or {})
    if runner and "config" in parameters:
        config = dict(parameters["config"])
        config["runner"] = {**(config.get("runner") or {}), **runner}
        if runner.get("kind") == "sequential":
            config["runner"].pop("address", None)
        try:
            parameters["config"] = RunConfig.model_validate(config).model_dump(mode="json")
        except ValueError as err:
            raise UserError(f"deployment {deployment.name!r}: {err}") from None
    return pipeline_flow.to_deployment(
        name=deployment.name, parameters=parameters, schedules=schedules,
        description=deployment.description, tags=deployment.tags, entrypoint_type=EntrypointType.MODULE_PATH,
    )


@dataclass
class DeploymentRow:
    name: str  # flow/deployment, what `prefect deployment run` takes
    schedules: str
    paused: bool
    next_run: dt.datetime | None
    next_run_scheduled: bool  # False: computed from the schedules, the server has no run for it yet
    target: str
    store: str


def next_fire_time(schedules) -> dt.datetime | None:
    """The earliest next time among a deployment's active schedules, computed by Prefect's own schedule code.

    The server's scheduler creates runs ahead of time, but only in its next loop (and not at all
    when it fails), so the listing does not depend on it.
    """
    from prefect.server.schemas import schedules as server_schedules

    times = []
    for s in schedules:
        server_type = getattr(server_schedules, type(s.schedule).__name__, None)
        if not s.active or server_type is None:
            continue
        times += asyncio.run(server_type.model_validate(s.schedule.model_dump()).get_dates(n=1))
    return min(times) if times else None


def describe_schedule(s) -> str:
    sched = s.schedule
    text = getattr(sched, "cron", None) or getattr(sched, "rrule", None) or str(getattr(sched, "interval", sched))
    tz = getattr(sched, "timezone", None)
    return f"{text}{f' ({tz})' if tz else ''}{'' if s.active else ' inactive'}"


def deployment_rows() -> list[DeploymentRow]:
    """Each concner deployment with its schedules and the next run the server has scheduled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    rows = []
    with get_client(sync_client=True) as client:
        for flow_name, d in registered():
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1,
            )
            params = d.parameters or {}
            config = params.get("config") or {}
            langs = config.get("target_lang") or ",".join(t.get("lang", "?") for t in config.get("targets") or []) or "?"
            target = (f"{config.get('source_lang', '?')}→{langs}" if config
                      else str(params.get("config_path", "-")))
            rows.append(DeploymentRow(
                name=f"{flow_name}/{d.name}",
                schedules=", ".join(describe_schedule(s) for s in d.schedules) or "none (manual runs only)",
                paused=d.paused,
                next_run=upcoming[0].expected_start_time if upcoming else next_fire_time(d.schedules),
                next_run_scheduled=bool(upcoming),
                target=target,
                store=str(params.get("store_root") or "-"),
            ))
    return rows


@flow(name=FROM_CONFIG_FLOW_NAME, log_prints=True)
def pipeline_from_config(config_path: str, overrides: list[str] | None = None, store_root: str | None = None,
                         force: list[str] | None = None, until: str | None = None):
    """The pipeline for a config file read at run time (for prefect.yaml deployments run by workers).

    Relative paths are read from the flow run's working directory (the pull step sets it). The
    pipeline itself runs as a subflow, so the UI shows the same run as `concner deploy` gives.
    """
    from concner.flows.pipeline import pipeline_flow

    config = load_config(config_path, list(overrides or ()))
    root = store_root or (str(config.store) if config.store else str(Path("artifacts").resolve()))
    state = pipeline_flow(config=config.model_dump(mode="json"), store_root=str(Path(root).resolve()),
                          force=force, until=until, return_state=True)
    return state
