"""What the `concner` commands share: the Typer app, the consoles, common options, the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from concner.tasks.engine.errors import UserError

app = typer.Typer(
    help="concner: cross-lingual NER from a little labeled English data (ConCNER as a Prefect pipeline).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


console = Console()


err_console = Console(stderr=True)


StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", envvar="CONCNER_STORE", help="Artifact store folder (default: the config's `store`, else ./artifacts)."),
]


TargetOpt = Annotated[
    Optional[str],
    typer.Option("--target", help="In a multi-target config: only this target (its `name`, else its `lang`)."),
]


SetOpt = Annotated[list[str], typer.Option("--set", help="Override a config key, e.g. --set train.epochs=2 (repeatable).")]


RunnerOpt = Annotated[Optional[str], typer.Option(
    "--runner", help="sequential (default: stages one after another in this process) or dask (independent branches "
                     "and sweep members at once on a Dask cluster; a local one unless --dask-address).")]


DaskAddressOpt = Annotated[Optional[str], typer.Option(
    "--dask-address", help="tcp://HOST:PORT of a running `dask scheduler` (implies --runner dask); the store must "
                           "be on a path every worker sees.")]


def store_root(store: Path | None, config=None) -> Path:
    if store is not None:
        return store.resolve()
    if config is not None and config.store is not None:
        return Path(config.store)
    return Path("artifacts").resolve()


def read_store(store: Path | None):
    """The store a command only reads. A --store that is no folder is an error: listing nothing
    and exiting 0 would hide a mistyped path."""
    from concner.tasks.engine.store import ArtifactStore

    root = store_root(store)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: not a folder (--store names a store folder)")
    if store is not None and not root.exists():
        raise UserError(f"{root}: no such store folder (--store)")
    return ArtifactStore(root)


# the signals that ended a run (SIGTERM raises KeyboardInterrupt, which the CLI would report as
# Ctrl-C's 130): main() exits 128 + signal, as a process ended by that signal is expected to
signals_received: list[int] = []


def check_runner(runner, root: Path) -> None:
    """An existing Dask cluster is checked before anything runs: reachable, with workers that can
    import concner and see the store."""
    if runner.kind == "dask" and runner.address:
        from concner.flows.runner import check_cluster

        workers = check_cluster(runner.address, root)
        err_console.print(f"dask: {workers} workers at {runner.address}", highlight=False, markup=False)


def is_sweep(ident: str) -> bool:
    """A sweep id (`sweep-...`, a unique prefix, `sweep-latest`) or the path of a sweep record."""
    return ident.startswith("sweep-") or (ident.endswith(".json") and Path(ident).name.startswith("sweep-"))
