"""`concner run --dry-run`: the plan line says what a run would reuse and recompute, and runs nothing."""

from __future__ import annotations

import re

from concner.tasks.engine.registry import STAGES
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.demo_store import FAST, DemoRun, run_cli

DEMO = REPO / "configs" / "demo.yaml"


def plan(output: str) -> dict[str, str]:
    """stage -> reuse/compute from the printed `plan: ingest reuse, translate reuse, ...` line(s)."""
    text = " ".join(output.split())  # the console wraps long lines
    names = {s.name for s in STAGES}  # the estimate table below the plan says "compute" too
    return {k: v for k, v in re.findall(r"(\w+) (reuse|compute)\b", text[text.index("plan:"):]) if k in names}


def test_force_project_dry_run_plans_project_and_downstream_only(demo_run: DemoRun):
    runs_before = len(ArtifactStore(demo_run.store).list_runs())
    code, out, err = run_cli("run", DEMO, "--store", demo_run.store, *FAST, "--force", "project", "--dry-run")
    assert code == 0, err[-3000:]
    assert plan(out) == {"ingest": "reuse", "ingest_target": "reuse", "translate": "reuse", "adapt": "reuse", "project": "compute", "train": "compute",
                         "pseudo_label": "compute", "distill": "compute", "evaluate": "compute"}
    assert list(plan(out)) == [s.name for s in STAGES]
    assert len(ArtifactStore(demo_run.store).list_runs()) == runs_before  # nothing ran


def test_dry_run_of_the_finished_config_reuses_everything(demo_run: DemoRun):
    code, out, err = run_cli("run", DEMO, "--store", demo_run.store, *FAST, "--dry-run")
    assert code == 0, err[-3000:]
    assert set(plan(out).values()) == {"reuse"} and len(plan(out)) == len(STAGES)
