"""What every Dask worker of a run does before its first stage (registered by flows/runner.py)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class TorchThreads(WorkerPlugin):
    """Set torch's intra-op threads on each worker, present and future.

    A Dask worker starts with OMP_NUM_THREADS=1 (the nanny's default), a sequential run with as many
    threads as torch picks for the machine; float sums on CPU depend on the thread count, so the
    same count is what makes the workers' artifacts byte-identical to a sequential run's."""

    name = "concner-torch-threads"

    def __init__(self, threads: int):
        self.threads = threads

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.threads)
