"""Run records (`runs/<run-id>.json`): started before the first stage, one entry per finished
stage, closed with the scores, and marked `interrupted` when their process died."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from typing import Any

from prefect.states import Failed

from concner.flows.plan import PlannedStage
from concner.tasks.engine import registry
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.store import ArtifactStore


def mark_dead_runs(store: ArtifactStore) -> list[str]:
    """Records left `running` by a process of this host that no longer exists (kill -9, power
    loss) are marked `interrupted`, naming the stage they were in."""
    marked = []
    host = socket.gethostname()
    for record in store.list_runs():
        if record.get("status") != "running" or record.get("host") != host or alive(record.get("pid")):
            continue
        stage = record.get("current_stage")
        record.update(status="interrupted", failed_stage=stage,
                      error=f"process {record.get('pid')} ended without finishing (killed?) during {stage}")
        store.save_run(record)
        marked.append(record["run_id"])
    return marked


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def _prefect_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def start_record(config: RunConfig, store: ArtifactStore, plan: list[PlannedStage], run_id: str) -> dict:
    """The run record, saved as `running` before any stage (a killed run leaves it; see mark_dead_runs)."""
    mark_dead_runs(store)
    for leftover in store.leftovers():  # temp folders of killed writers (their lock is free)
        shutil.rmtree(leftover, ignore_errors=True)
    record: dict[str, Any] = {
        "run_id": run_id,
        "name": config.name,
        "started": time.time(),
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "prefect_flow_run_id": _prefect_flow_run_id(),  # the same run in Prefect (UI, API)
        "config": config.model_dump(mode="json"),
        # the branches this run ran (all, or the one of --target); [] for a one-target run
        "targets": list(dict.fromkeys(s.target for s in plan if s.target is not None)),
        "stages": {},
    }
    store.save_run(record)  # from the start: a killed run leaves its record (see mark_dead_runs)
    return record


def is_user_error(state) -> bool:
    """A stage that failed on the user's input: a Failed state with a message and no exception."""
    return bool(state.is_failed() and state.message and not _has_exception(state))


def stage_entry(stage: PlannedStage, state, result: dict, store: ArtifactStore) -> dict:
    """The run record's entry of a finished stage."""
    reused = state.name == "Cached" or result.get("computed") is False
    manifest = store.manifest(stage.name, stage.key) or {}
    return {
        "stage": stage.name,
        "target": stage.target,
        "key": stage.key,
        "status": "reused" if reused else "computed",
        "seconds": 0.0 if reused else result["seconds"],
        "prefect_state": state.name,
        "headline": registry.get(stage.name).view.headline(manifest.get("metrics", {})) if manifest else "",
        **({"note": stage.note} if stage.note and stage.note != "forced" else {}),
    }


def close_record(record: dict, store: ArtifactStore) -> None:
    """End time and scores into the record, saved; the run summary to Prefect."""
    record["ended"] = time.time()
    record["scores"] = _collect_scores(store, record)
    store.save_run(record)
    try:
        _publish_run_summary(record)
    except Exception:  # an interrupted run may have lost its server: the record on disk is what counts
        if record["status"] == "completed":
            raise


def _publish_run_summary(record: dict) -> None:
    from prefect.artifacts import create_markdown_artifact

    from concner.flows.ui_artifacts import run_markdown

    create_markdown_artifact(key="concner-run-summary", markdown=run_markdown(record),
                             description=f"concner run {record['run_id']}")


def _has_exception(state) -> bool:
    return isinstance(state.result(raise_on_failure=False), BaseException)


def finish(record: dict):
    """The flow's return: the record, or a Failed state (no traceback) when the user's input was bad."""
    if record.get("user_error"):
        return Failed(message=record["error"])
    return record


def _collect_scores(store: ArtifactStore, record: dict) -> dict:
    """Scores that stages put in their manifests under metrics['scores'], by stage."""
    scores = {}
    for entry, info in record["stages"].items():
        manifest = store.manifest(registry.stage_of(entry), info["key"]) or {}
        if "scores" in manifest.get("metrics", {}):
            scores[entry] = manifest["metrics"]["scores"]
    return scores
