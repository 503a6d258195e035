"""Running planned stages: the one executor of every run, sweep and single stage.

A stage is submitted once every stage it waits for has finished (`waits_for`: the earlier shared
stages and the earlier stages of its own branch), to the run's task runner, with `wait_for` the
futures of the stages it reads (so Prefect records the DAG's edges between task runs):
- sequential (the default): each stage runs at once, in the flow's own thread, one at a time in
  plan order (InlineTaskRunner), so Ctrl-C and SIGTERM reach the stage that is computing;
- dask: Prefect's DaskTaskRunner (flows/runner.py); the stages of a branch keep their order while
  branches, and the members of a sweep, run side by side on the workers.
Keys are resolved here, in the flow's process, when a stage becomes ready: its inputs are then in
the store, which this process and every worker see at the same path. A stage whose key another
run of the batch is computing right now waits for it and then reuses the artifact; across
processes, the store's per-key lock does the same. Each run keeps its own record
(`runs/<run-id>.json`, saved when it starts, when a stage is handed over and when it ends), with
its stages in plan order and, for a stage computed on a Dask worker, that worker (`host:pid`).
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prefect.exceptions import ExternalSignal

from concner.flows.plan import PlannedStage, decide, key_now
from concner.flows.records import close_record, is_user_error, stage_entry, start_record
from concner.flows.stage_task import USER_ERRORS, stage_call
from concner.tasks.engine.config import RunConfig, RunnerConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.store import ArtifactStore


@dataclass
class RunJob:
    """One run of the batch: its plan, and where its stages stand."""

    config: RunConfig
    plan: list[PlannedStage]
    run_id: str
    record: dict = field(default_factory=dict)
    resolved: dict[tuple[str | None, str], str] = field(default_factory=dict)  # (target, stage) -> key
    running: set[int] = field(default_factory=set)  # indexes into plan
    finished: set[int] = field(default_factory=set)
    stopped: bool = False  # a stage failed: nothing more of this run is submitted
    error: BaseException | None = None  # the exception of a stage that failed with a bug
    closed: bool = False
    futures: dict[int, Any] = field(default_factory=dict)  # plan index -> the stage's task-run future
    # each config of the run (the run's, a branch's) as the JSON its stage tasks get: dumped once
    serialised: dict[int, dict] = field(default_factory=dict)

    def config_json(self, stage: PlannedStage) -> dict:
        config = stage.config or self.config  # a stage sees its branch's one-target config
        if id(config) not in self.serialised:
            self.serialised[id(config)] = config.model_dump(mode="json")
        return self.serialised[id(config)]

    def ready(self, waits: list[list[int]]) -> list[int]:
        if self.stopped:
            return []
        return [i for i in range(len(self.plan)) if i not in self.running and i not in self.finished
                and all(j in self.finished for j in waits[i])]

    @property
    def done(self) -> bool:
        return not self.running and (self.stopped or len(self.finished) == len(self.plan))


def waits_for(plan: list[PlannedStage]) -> list[list[int]]:
    """For each planned stage, the indexes of the stages it waits for: every earlier shared stage
    and every earlier stage of its own branch. A one-target run is thus a chain, and the branches
    of a multi-target run are chains that start after the shared source ingest."""
    return [[j for j in range(i) if plan[j].target is None or plan[j].target == stage.target]
            for i, stage in enumerate(plan)]


def input_stages(plan: list[PlannedStage], i: int) -> list[int]:
    """The indexes of the planned stages whose artifacts stage `i` reads (its branch's, or shared)."""
    stage = plan[i]
    return [j for j in range(i) if plan[j].name in stage.input_keys and plan[j].target in (None, stage.target)]


def execute(config: RunConfig, store: ArtifactStore, plan: list[PlannedStage], run_id: str, log) -> dict:
    """Run one planned run on the task runner of `config.runner` and give back its record (written
    also when a stage fails); a stage's bug is raised again here."""
    job = RunJob(config, plan, run_id)
    execute_many([job], store, config.runner, log)
    if job.error is not None:
        raise job.error
    return job.record


class InlineFuture:
    """A stage that has already run (InlineTaskRunner): its final Prefect state."""

    def __init__(self, state) -> None:
        self.state = state

    def add_done_callback(self, callback: Callable[["InlineFuture"], None]) -> None:
        callback(self)


class InlineTaskRunner:
    """The sequential runner: a submitted stage runs at once, as a Prefect task in this thread."""

    one_at_a_time = True

    def submit(self, task_fn, parameters: dict[str, Any], wait_for: list[InlineFuture] | None = None) -> InlineFuture:
        return InlineFuture(task_fn(**parameters, return_state=True, wait_for=[f.state for f in wait_for or []]))


def final_state(future):
    """The task run's final State, from either runner's future."""
    return future.state if isinstance(future, InlineFuture) else future.wrapped_future.result()


@contextlib.contextmanager
def task_runner(runner: RunnerConfig) -> Iterator:
    """The started task runner of `runner`: inline (sequential) or Dask."""
    if runner.kind == "dask":
        from concner.flows.runner import started

        with started(runner) as dask_runner:
            yield dask_runner
    else:
        yield InlineTaskRunner()


def execute_many(jobs: list[RunJob], store: ArtifactStore, runner: RunnerConfig, log,
                 on_finished: Callable[[RunJob], None] | None = None) -> None:
    """Run every job's plan on one task runner; `on_finished(job)` as each run ends."""
    for job in jobs:
        job.record = start_record(job.config, store, job.plan, job.run_id)
    waits = [waits_for(job.plan) for job in jobs]
    finished: queue.Queue = queue.Queue()
    computing: dict[tuple[str, str], tuple[int, int]] = {}  # (stage, key) -> (job, stage index) now on a worker
    try:
        with task_runner(runner) as stage_runner:
            # inline, a stage has run by the time it is submitted: one per pass, the lowest ready
            # index first, keeps the plan's order (a multi-target run: one branch after the other)
            one = getattr(stage_runner, "one_at_a_time", False)
            while True:
                for a, job in enumerate(jobs):
                    for i in job.ready(waits[a])[:1] if one else job.ready(waits[a]):
                        _submit(a, i, job, store, stage_runner, computing, finished, log)
                    if job.done and not job.closed:  # e.g. a key that could not be resolved
                        _close(job, store, on_finished)
                    if one and not finished.empty():
                        break
                if not any(job.running for job in jobs):
                    break
                try:
                    a, i, future = finished.get(timeout=1.0)  # a timeout, so that Ctrl-C is seen
                except queue.Empty:
                    continue
                job = jobs[a]
                _collect(job, i, future, store, log)
                computing.pop((job.plan[i].name, job.plan[i].key), None)
                if job.done:
                    _close(job, store, on_finished)
    except UserError as err:  # the cluster cannot be reached: every run fails with that one message
        USER_ERRORS.add(str(err))
        for job in jobs:
            if not job.closed:
                job.record.update(status="failed", error=str(err), user_error=True,
                                  failed_stage=job.record.get("current_stage"))
    except (KeyboardInterrupt, SystemExit, ExternalSignal) as err:  # Ctrl-C, SIGTERM
        for job in jobs:
            if not job.closed:
                where = job.record.get("current_stage")
                job.record.update(status="interrupted", failed_stage=where,
                                  error=f"interrupted ({type(err).__name__}) during {where}")
        raise
    except BaseException as err:
        for job in jobs:
            if not job.closed:
                job.record.update(status="failed", failed_stage=job.record.get("current_stage"),
                                  error=str(err) or type(err).__name__)
        raise
    finally:
        for job in jobs:
            if not job.closed:
                _close(job, store, on_finished)


def _submit(a: int, i: int, job: RunJob, store: ArtifactStore, stage_runner, computing: dict,
            finished: queue.Queue, log) -> None:
    """Key the stage (its inputs are in the store now), decide again, and hand it to a worker;
    when another run of the batch computes the same key right now, leave it ready for later."""
    stage = job.plan[i]
    try:
        key_now(stage, job.config, store, job.resolved)
    except Exception as err:  # a bug: inputs computed but not in the store
        _fail(job, stage, err, log)
        return
    if (stage.name, stage.key) in computing:
        return
    if not stage.forced:  # another run may have published it since this one was planned
        decide(stage, store)
    if stage.note and stage.note != "forced":
        log.warning("%s: %s", stage.entry, stage.note)
    job.resolved[(stage.target, stage.name)] = stage.key
    task_fn, parameters = stage_call(stage, job.config_json(stage), store)
    job.running.add(i)
    computing[(stage.name, stage.key)] = (a, i)
    _save(job, store)  # before: an inline stage has finished when submit returns, a killed one never
    # the futures of the stages it reads: finished by now, they make Prefect record (and its UI
    # draw) the DAG's edges between task runs
    future = stage_runner.submit(task_fn, parameters, wait_for=[job.futures[j] for j in input_stages(job.plan, i)])
    job.futures[i] = future
    future.add_done_callback(lambda f, a=a, i=i: finished.put((a, i, f)))


def _collect(job: RunJob, i: int, future, store: ArtifactStore, log) -> None:
    """A finished stage into its run's record; a failure stops that run (other runs go on)."""
    stage = job.plan[i]
    job.running.discard(i)
    job.finished.add(i)
    try:
        state = final_state(future)
        if is_user_error(state):
            USER_ERRORS.add(state.message)
            if not job.stopped:
                job.record.update(status="failed", error=state.message, user_error=True, failed_stage=stage.entry)
            job.stopped = True
        else:
            result: dict[str, Any] = state.result()  # re-raises the stage's exception
            entry = stage_entry(stage, state, result, store)
            if entry["status"] == "computed" and result.get("worker") and not isinstance(future, InlineFuture):
                entry["worker"] = result["worker"]
            job.record["stages"][stage.entry] = entry
            log.info("%s %s (%s)", stage.entry, entry["status"], stage.key)
    except Exception as err:  # a stage's bug, or the worker died
        _fail(job, stage, err, log)
    _save(job, store)


def _fail(job: RunJob, stage: PlannedStage, err: BaseException, log) -> None:
    log.error("%s failed: %s", stage.entry, err)
    if not job.stopped:
        job.record.update(status="failed", failed_stage=stage.entry, error=str(err) or type(err).__name__)
        job.error = err
    job.stopped = True


def _save(job: RunJob, store: ArtifactStore) -> None:
    """The record with its stages in plan order and the stages now running as `current_stage`."""
    stages = job.record["stages"]
    job.record["stages"] = {s.entry: stages[s.entry] for s in job.plan if s.entry in stages}
    running = [job.plan[i].entry for i in sorted(job.running)]
    if running:
        job.record["current_stage"] = ", ".join(running)
    store.save_run(job.record)


def _close(job: RunJob, store: ArtifactStore, on_finished: Callable[[RunJob], None] | None) -> None:
    job.closed = True
    if job.record.get("status") == "running":
        if job.stopped or len(job.finished) < len(job.plan):
            job.record.update(status="failed", error=job.record.get("error") or "not every stage ran")
        else:
            job.record["status"] = "completed"
            job.record.pop("current_stage", None)
    close_record(job.record, store)
    if on_finished is not None:
        on_finished(job)
