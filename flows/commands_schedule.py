"""`concner deploy`, `serve`, `deployments`: schedules on a Prefect server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from concner.flows.cli_common import DaskAddressOpt, RunnerOpt, SetOpt, StoreOpt, app, check_runner, console, store_root
from concner.tasks.engine.errors import UserError

CronOpt = Annotated[list[str], typer.Option("--cron", help='Cron schedule, e.g. "0 3 * * 1" (Mondays 03:00); repeatable.')]


TimezoneOpt = Annotated[Optional[str], typer.Option("--timezone", help="IANA time zone of the cron schedules (default UTC).")]


@app.command()
def deploy(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); its validated content is stored in the deployment.")],
    cron: CronOpt = [],
    name: Annotated[Optional[str], typer.Option("--name", help="Deployment name (default: the config's name).")] = None,
    timezone: TimezoneOpt = None,
    set_: SetOpt = [],
    store: StoreOpt = None,
) -> None:
    """Register the pipeline for a config as a scheduled Prefect deployment (runs execute in `concner serve`)."""
    from concner.flows.deploy import FLOW_NAME, pipeline_deployment, require_server
    from concner.tasks.engine.config_loading import load_config

    url = require_server()
    cfg = load_config(config, set_)
    root = store_root(store, cfg)
    deployment = pipeline_deployment(cfg, config, root, cron, name, timezone)
    deployment_id = deployment.apply()
    console.print(f"registered [bold]{FLOW_NAME}/{deployment.name}[/bold] ({deployment_id}) on {url}", highlight=False)
    console.print(f"schedule: {', '.join(cron) or 'none (manual runs only)'}{f' ({timezone})' if timezone else ''}; "
                  f"artifacts: {root}", highlight=False)
    console.print("runs execute where `concner serve` runs; run one now with "
                  f"`prefect deployment run '{FLOW_NAME}/{deployment.name}'`; list with `concner deployments`",
                  highlight=False)


@app.command()
def serve(
    configs: Annotated[Optional[list[Path]], typer.Argument(
        help="Run configs to serve (one deployment each); none = every registered concner deployment.")] = None,
    cron: CronOpt = [],
    name: Annotated[Optional[str], typer.Option("--name", help="Deployment name, with a single config.")] = None,
    timezone: TimezoneOpt = None,
    set_: SetOpt = [],
    store: StoreOpt = None,
    runner: RunnerOpt = None,
    dask_address: DaskAddressOpt = None,
) -> None:
    """Execute scheduled and manual runs of concner deployments in this process until stopped (Ctrl-C).

    --runner/--dask-address set how the served runs execute their stages (for every deployment served)."""
    from prefect import serve as prefect_serve

    from concner.flows.deploy import FLOW_NAME, pipeline_deployment, registered, require_server, served_copy
    from concner.flows.runner import runner_overrides, runner_update
    from concner.tasks.engine.config import RunnerConfig
    from concner.tasks.engine.config_loading import load_config

    url = require_server()
    configs = configs or []
    if configs:
        if len(cron) not in (0, 1, len(configs)):
            raise UserError(f"{len(cron)} --cron for {len(configs)} configs: give one for all, or one per config")
        if name and len(configs) > 1:
            raise UserError("--name needs a single config (deployments are named after their config's name)")
        crons = [cron] * len(configs) if len(cron) <= 1 else [[c] for c in cron]
        deployments = []
        for path, schedule in zip(configs, crons):
            cfg = load_config(path, [*set_, *runner_overrides(runner, dask_address)])
            check_runner(cfg.runner, store_root(store, cfg))
            deployments.append(pipeline_deployment(cfg, path, store_root(store, cfg), schedule, name, timezone))
    else:
        if cron or set_ or name or store or timezone:
            raise UserError("--cron, --set, --name, --store and --timezone apply to configs: pass CONFIG...")
        update = runner_update(runner, dask_address)
        deployments = [served_copy(d, update) for flow_name, d in registered((FLOW_NAME,))]
        for d in deployments:
            config = (d.parameters or {}).get("config") or {}
            check_runner(RunnerConfig.model_validate(config.get("runner") or {}),
                          Path((d.parameters or {}).get("store_root") or "artifacts"))
        if not deployments:
            raise UserError(f"no {FLOW_NAME} deployments on {url}: `concner deploy CONFIG --cron ...` first, "
                            "or pass configs to serve")
    names = {d.name for d in deployments}
    if len(names) < len(deployments):
        raise UserError("two configs give the same deployment name: give them different `name:` keys")
    console.print(f"serving {', '.join(f'{FLOW_NAME}/{n}' for n in sorted(names))} from {url}; "
                  "Ctrl-C stops (Prefect pauses their schedules on exit, the next serve resumes them)", highlight=False)
    prefect_serve(*deployments)


@app.command()
def deployments() -> None:
    """List the concner deployments on the Prefect server with their schedules and next scheduled run."""
    import datetime as dt

    from rich.table import Table

    from concner.flows.deploy import deployment_rows, require_server

    url = require_server()
    table = Table(title=f"concner deployments on {url}")
    for col in ("deployment", "schedule", "next run", "languages", "store"):
        table.add_column(col, overflow="fold")
    for row in deployment_rows():
        next_run = "-"
        if row.paused:
            next_run = "paused (`concner serve` resumes)"
        elif row.next_run is not None:
            next_run = row.next_run.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            next_run += "" if row.next_run_scheduled else " (not yet scheduled by the server)"
        table.add_row(row.name, row.schedules, next_run, row.target, row.store)
    console.print(table)
