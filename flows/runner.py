"""The Dask task runner of a run (`runner.kind: dask`): Prefect's DaskTaskRunner from prefect-dask.

A LocalCluster of `runner.workers` processes by default, or the existing cluster whose scheduler
is at `runner.address`. The flow's process keeps the schedule (flows/execute.py); the stages
run on the workers, which read and write the same store: it must be a path that the flow's
process and every worker see (one machine, or a shared filesystem mounted at the same path).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from concner.tasks.engine.config import RunnerConfig, check_dask_address
from concner.tasks.engine.errors import UserError

CONNECT_TIMEOUT_S = 10  # an address nobody answers on fails after this, not after Dask's 30 s default
RUNNERS = ("sequential", "dask")


def runner_overrides(runner: str | None, address: str | None) -> list[str]:
    """`--runner` and `--dask-address` as config overrides (`runner.kind=...`, `runner.address=...`).

    An address alone implies `--runner dask`; a bad value is a UserError naming the option."""
    out: list[str] = []
    if runner is not None:
        if runner not in RUNNERS:
            raise UserError(f"--runner {runner!r}: expected one of {', '.join(RUNNERS)}")
        out.append(f"runner.kind={runner}")
    if address is not None:
        try:
            address = check_dask_address(address)
        except ValueError as err:
            raise UserError(f"--dask-address: {err}") from None
        if runner is None:
            out.append("runner.kind=dask")
        elif runner != "dask":
            raise UserError(f"--dask-address is the scheduler of a Dask cluster: it needs --runner dask, not {runner}")
        out.append(f"runner.address={address}")
    return out


def runner_update(runner: str | None, address: str | None) -> dict[str, str]:
    """The same options as fields of a config's `runner` section (for configs already stored in a deployment)."""
    update: dict[str, str] = {}
    for item in runner_overrides(runner, address):
        key, value = item.split("=", 1)
        update[key.removeprefix("runner.")] = value
    return update


def dask_task_runner(runner: RunnerConfig):
    """A DaskTaskRunner (not started) for `runner`: the cluster at `runner.address`, else a LocalCluster."""
    from prefect_dask import DaskTaskRunner

    client_kwargs = {"timeout": CONNECT_TIMEOUT_S}
    if runner.address:
        return DaskTaskRunner(address=runner.address, client_kwargs=client_kwargs)
    threads = runner.workers * runner.threads_per_worker * (runner.torch_threads or local_torch_threads())
    # More torch threads than cores: OpenMP threads that spin while they wait take the cores from
    # the ones with work; passive ones sleep (the numbers do not change, only who waits how).
    env = {"OMP_WAIT_POLICY": "PASSIVE"} if threads > (os.cpu_count() or 1) else {}
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": runner.threads_per_worker,
                        "processes": True, "scheduler_kwargs": {"dashboard": False},  # no port 8787 to collide on
                        "env": env},
        client_kwargs=client_kwargs,
    )


def local_torch_threads() -> int:
    """The torch threads of a sequential run in this process (torch's default, or OMP_NUM_THREADS)."""
    import torch

    return torch.get_num_threads()


def _unreachable(address: str, err: BaseException) -> UserError:
    return UserError(f"cannot reach the Dask scheduler at {address}: {err or type(err).__name__} "
                     f"(start one with `dask scheduler`, and workers with `dask worker {address}`; "
                     "or leave out --dask-address for a local cluster)")


@contextmanager
def started(runner: RunnerConfig) -> Iterator:
    """The started DaskTaskRunner with its client connected (the cluster up, or reached).

    The workers get the Prefect API this process talks to, so their task runs land in the same
    flow run (without it, each worker process would start a temporary server of its own)."""
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    import distributed  # noqa: F401 - configures its loggers on import: quiet them after that

    for name in ("distributed", "prefect_dask", "prefect.task_runner.dask"):  # the cluster's INFO lines
        logging.getLogger(name).setLevel(logging.WARNING)
    url = get_current_settings().api.url
    context = FlowRunContext.get()
    if not url and context is not None and context.client is not None:
        url = str(context.client.api_url)
    with temporary_settings({PREFECT_API_URL: url} if url else {}):
        task_runner = dask_task_runner(runner)
        task_runner.__enter__()
        try:
            try:
                task_runner.client  # noqa: B018 - connects now: a bad address fails here, once
            except (OSError, TimeoutError) as err:
                if runner.address:
                    raise _unreachable(runner.address, err) from None
                raise
            _same_torch_threads(task_runner.client, runner.torch_threads)
            yield task_runner
        finally:
            task_runner.__exit__(None, None, None)


def _same_torch_threads(client, threads: int | None) -> int:
    """Every worker (those that join later too) computes with `threads` torch threads, by default
    as many as torch uses in this process: what a sequential run here would use."""
    from concner.flows.worker_setup import TorchThreads

    threads = threads or local_torch_threads()
    client.register_plugin(TorchThreads(threads), name=TorchThreads.name)
    return threads


def check_cluster(address: str, store_root: Path) -> int:
    """Before a run on the cluster at `address`: it answers, has workers, every worker can import
    concner and sees the store at the same path. The number of workers; UserError otherwise."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise _unreachable(address, err) from None
    probe = Path(store_root) / f".concner-visible-{secrets.token_hex(4)}"
    try:
        workers = client.nthreads()
        if not workers:
            raise UserError(f"the Dask scheduler at {address} has no workers: start some with `dask worker {address}`")
        imports = client.run(exec, "import concner.flows.pipeline", on_error="return")
        broken = {w: r for w, r in imports.items() if isinstance(r, BaseException)}
        if broken:
            worker, err = next(iter(broken.items()))
            raise UserError(f"Dask worker {worker} cannot import concner ({type(err).__name__}: {err}): install the "
                            f"project in the workers' environment ({len(broken)} of {len(workers)} workers)")
        Path(store_root).mkdir(parents=True, exist_ok=True)
        probe.write_text("concner: is the store visible to every Dask worker?\n", encoding="utf-8")
        seen = client.run(os.path.exists, str(probe))
        blind = sorted(w for w, ok in seen.items() if not ok)
        if blind:
            raise UserError(f"the store {store_root} is not visible to Dask worker {', '.join(blind)}: put it on a "
                            "filesystem every worker mounts at the same path (--store), see README 'Dask'")
        return len(workers)
    finally:
        probe.unlink(missing_ok=True)
        client.close()
