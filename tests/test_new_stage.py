"""A new stage is its module and one registry line: planned, keyed, computed through Prefect,
checked against its declared outputs, published and shown, with no other file of concner touched."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from concner.tasks.engine import registry
from concner.tasks.engine.bundled import config_path
from tests.demo_store import FAST

# What a team would write as tasks/stages/entity_count.py (and its view beside it): a stage of a
# known kind (reads a split, writes a table) built only from the engine's public pieces.
MODULE = '''
from collections import Counter

from concner.tasks.engine.artifact_kinds import Table
from concner.tasks.engine.artifacts import load_split
from concner.tasks.engine.stage import StageSpec
from concner.tasks.presentation.summary import Figures, StageSummary, StageView
from concner.tasks.text.tags import spans

COUNTS = Table("entity_counts.parquet", "a row per entity type: its mentions in the source sample")


def compute(ctx):
    counts = Counter(span.label for s in load_split(ctx.inputs["ingest"], "source_train") for span in spans(s.tags))
    COUNTS.write(ctx.out, [{"type": t, "mentions": n} for t, n in sorted(counts.items())])
    ctx.metrics["mentions"] = sum(counts.values())


def summary(manifest, folder, query):
    rows = COUNTS.read(folder)
    return StageSummary("entity_count", [Figures("mentions per type", dict(zip(rows["type"], rows["mentions"])))])


STAGE = StageSpec(
    name="entity_count",
    version="1",
    inputs=("ingest",),
    params=lambda config: {"min_mentions": 0},
    reads=lambda config: {"ingest": ("source_train.*",)},
    compute=compute,
    outputs=(COUNTS,),
    view=StageView(summary, headline=lambda m: f"{m['mentions']} mentions"),
    description="count the entity mentions of the source sample",
)
'''


@pytest.fixture
def entity_count(tmp_path, monkeypatch):
    """The module imported, and its one registry line: STAGES gets the stage after its input."""
    path = tmp_path / "entity_count.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("entity_count", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "entity_count", module)
    spec.loader.exec_module(module)
    stages = [*registry.STAGES, module.STAGE]
    registry.check(stages)  # what the registry checks when it loads: order, names, outputs
    monkeypatch.setattr(registry, "STAGES", stages)
    monkeypatch.setitem(registry.BY_NAME, "entity_count", module.STAGE)
    return module


def test_a_new_stage_is_its_module_and_one_registry_line(entity_count, demo_run, cli, tmp_path: Path):
    # its input from the shared demo run (copied: that store is only read), under the demo's key:
    # found there only if the new stage's plan keys ingest exactly as the demo run did
    store = tmp_path / "store"
    ingest_key = demo_run.record["stages"]["ingest"]["key"]
    shutil.copytree(demo_run.stage_dir("ingest"), store / "stages" / "ingest" / ingest_key)
    config = config_path("demo")

    code, out, err = cli("stage", "entity_count", config, *FAST, "--store", store)
    assert code == 0, err
    record = json.loads(next((store / "runs").glob("*.json")).read_text())
    assert record["status"] == "completed" and record["stages"]["entity_count"]["status"] == "computed"
    folder = store / "stages" / "entity_count" / record["stages"]["entity_count"]["key"]
    counts = entity_count.COUNTS.read(folder)
    # the same counts ingest recorded for the sample
    recorded = demo_run.manifest("ingest")["metrics"]["splits"]["source_train"]["entities"]
    assert dict(zip(counts["type"], counts["mentions"])) == recorded
    assert f"{counts['mentions'].sum()} mentions" in out  # its headline in the run's table

    code, out, err = cli("inspect", record["run_id"], "--stage", "entity_count", "--store", store)
    assert code == 0, err
    text = " ".join(out.split())  # the console wraps a narrow table's title
    assert "mentions per type" in text and f"│ LOC │ {recorded['LOC']} │" in text

    # keyed like any stage: found again under the same key
    code, out, _ = cli("stage", "entity_count", config, *FAST, "--store", store, "--reuse", "--dry-run")
    assert code == 0 and "reuse" in out
