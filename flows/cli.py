"""The `concner` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from concner.tasks.errors import UserError

app = typer.Typer(
    help="concner: cross-lingual NER from a little labeled English data (ConCNER as a Prefect pipeline).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"

StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", envvar="CONCNER_STORE", help="Artifact store folder (default: the config's `store`, else ./artifacts)."),
]
SetOpt = Annotated[list[str], typer.Option("--set", help="Override a config key, e.g. --set train.epochs=2 (repeatable).")]


def _store_root(store: Path | None, config=None) -> Path:
    if store is not None:
        return store.resolve()
    if config is not None and config.store is not None:
        return Path(config.store)
    return Path("artifacts").resolve()


def _print_plan(plan) -> None:
    console.print(
        "plan: " + ", ".join(f"{p.name} [{'green' if p.action == 'reuse' else 'yellow'}]{p.action}[/]" for p in plan)
    )


def _run_pipeline(config_path: Path, overrides: list[str], store: Path | None, force: list[str], until: str | None,
                  dry_run: bool = False) -> dict | None:
    from concner.flows.pipeline import pipeline_flow, plan_run, run_flow
    from concner.flows.views import stage_summary_table
    from concner.tasks.config import load_config
    from concner.tasks.store import ArtifactStore

    config = load_config(config_path, overrides)
    root = _store_root(store, config)
    plan = plan_run(config, ArtifactStore(root), force=set(force), until=until)
    _print_plan(plan)
    if dry_run:
        return None
    record = run_flow(pipeline_flow, ArtifactStore(root), config.name, config=config.model_dump(mode="json"),
                      force=list(force), until=until)
    console.print(stage_summary_table(record, ArtifactStore(root)))
    console.print(f"artifacts: {root}   run record: {root / 'runs' / (record['run_id'] + '.json')}")
    return record


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/en-es.yaml.")],
    set_: SetOpt = [],
    force: Annotated[list[str], typer.Option("--force", help="Recompute this stage and everything downstream (repeatable).")] = [],
    until: Annotated[Optional[str], typer.Option(help="Stop after this stage.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print which stages would be reused or computed.")] = False,
    store: StoreOpt = None,
) -> None:
    """Run the pipeline DAG for a config; stages whose artifact exists for the same inputs are reused."""
    _run_pipeline(config, set_, store, force, until, dry_run)


@app.command()
def demo(store: StoreOpt = None, set_: SetOpt = []) -> None:
    """Run the whole DAG on the bundled sample data with tiny local models (no downloads)."""
    _run_pipeline(DEMO_CONFIG, set_, store, [], None)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="Stage to run: ingest, translate, project, train, pseudo_label, distill, evaluate.")],
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOpt = [],
    reuse: Annotated[bool, typer.Option("--reuse", help="Reuse the stage's artifact when it exists instead of recomputing.")] = False,
    store: StoreOpt = None,
) -> None:
    """Run one stage alone; its inputs are read from the store (run their stages first)."""
    from concner.flows.pipeline import plan_run, run_flow, stage_flow
    from concner.flows.views import stage_summary_table
    from concner.tasks.config import load_config
    from concner.tasks.store import ArtifactStore

    cfg = load_config(config, set_)
    root = _store_root(store, cfg)
    _print_plan(plan_run(cfg, ArtifactStore(root), force=set() if reuse else {name}, only=name))
    record = run_flow(stage_flow, ArtifactStore(root), cfg.name, stage_name=name, config=cfg.model_dump(mode="json"),
                      force=not reuse)
    console.print(stage_summary_table(record, ArtifactStore(root)))


@app.command()
def runs(store: StoreOpt = None) -> None:
    """List the runs in the store: id, start time, status, stages computed/reused, scores."""
    from concner.flows.views import runs_table
    from concner.tasks.store import ArtifactStore

    console.print(runs_table(ArtifactStore(_store_root(store))))


@app.command()
def inspect(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix works), or 'latest'.")],
    stage_name: Annotated[Optional[str], typer.Option("--stage", help="Show this stage's artifact.")] = None,
    sentence_id: Annotated[Optional[int], typer.Option("--id", help="Show this sentence id.")] = None,
    store: StoreOpt = None,
) -> None:
    """Show a run's stages, or one stage's artifact: stats, samples with entities highlighted, metrics."""
    from concner.flows.views import show_stage, stage_summary_table
    from concner.tasks.store import ArtifactStore

    st = ArtifactStore(_store_root(store))
    record = st.load_run(run_id)
    if stage_name is None:
        console.print(stage_summary_table(record, st))
        return
    if stage_name not in record["stages"]:
        raise UserError(f"run {record['run_id']} has no stage {stage_name!r} (it has: {', '.join(record['stages'])})")
    show_stage(console, st, stage_name, record["stages"][stage_name]["key"], sentence_id)


def main() -> None:
    try:
        app()
    except UserError as err:
        err_console.print(f"error: {err}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
