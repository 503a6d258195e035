"""The artifact layer: every file a stage publishes is declared in the catalog, written and read
through its kind, and a stage that writes something else (or leaves out a required output) is
stopped before anything is published."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from concner.tasks.engine import artifacts, registry
from concner.tasks.engine.artifact_kinds import Arrays, Document, Table
from concner.tasks.engine.stage import output_problems


def test_every_file_of_every_demo_artifact_is_a_declared_output(demo_run):
    for stage in demo_run.record["stages"]:
        folder = demo_run.stage_dir(stage)
        problems = [p for p in output_problems(registry.get(stage).outputs, folder) if artifacts.MANIFEST not in p]
        assert problems == [], stage


def test_a_stage_that_writes_an_undeclared_file_or_misses_an_output_publishes_nothing(tmp_path, monkeypatch):
    from concner.flows import stage_task
    from concner.flows.plan import PlannedStage
    from concner.tasks.engine.config import RunConfig
    from concner.tasks.engine.store import ArtifactStore

    store = ArtifactStore(tmp_path / "store")
    config = RunConfig(target_lang="es", data={"source_train": tmp_path / "x.conll"})
    writes: dict[str, bool] = {}

    def compute(ctx):
        if writes.get("scores"):
            artifacts.SCORES.write(ctx.out, [{"model": "teacher", "f1": 0.5}])
        if writes.get("stray"):
            (ctx.out / "notes.txt").write_text("not in the catalog")

    spec = replace(registry.get("evaluate"), name="scorer", inputs=(), compute=compute, reads=None)
    monkeypatch.setattr(stage_task.registry, "get", lambda name: spec)

    writes.update(scores=True, stray=True)
    with pytest.raises(RuntimeError, match="wrote notes.txt, which no declared output covers"):
        stage_task.compute_stage(config, store, PlannedStage("scorer", "k1", {}, {}, "compute"))
    assert not store.exists("scorer", "k1")

    writes.update(scores=False, stray=False)
    with pytest.raises(RuntimeError, match="did not write its output scores.parquet"):
        stage_task.compute_stage(config, store, PlannedStage("scorer", "k2", {}, {}, "compute"))
    assert not store.exists("scorer", "k2")

    writes.update(scores=True)
    stage_task.compute_stage(config, store, PlannedStage("scorer", "k3", {}, {}, "compute"))
    assert artifacts.SCORES.read(store.stage_dir("scorer", "k3"))["f1"].tolist() == [0.5]


def test_a_named_part_fills_the_file_name_and_the_pattern_covers_every_part():
    part = artifacts.PREDICTIONS.of(split="target_test")
    assert part.file == "predictions_target_test.conll"
    assert artifacts.PREDICTIONS.covers(part.file) and not artifacts.PREDICTIONS.covers("scores.json")
    assert artifacts.MODEL.covers("model/model.safetensors") and not artifacts.MODEL.covers("model")


def test_kinds_write_the_same_bytes_for_the_same_content(tmp_path: Path):
    """Equal content, equal bytes: the store's keys and its verification hash files."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    probs = Arrays("probs.npz")
    table = Table("rows.parquet")
    doc = Document("scores.json")
    for folder in (first, second):
        probs.write(folder, probs=np.arange(6, dtype=np.float16).reshape(3, 2), labels=np.array(["O", "B-PER"]))
        table.write(folder, [{"id": 0, "tokens": ["Ana"]}, {"id": 1, "tokens": ["Lima"]}])
        doc.write(folder, {"b": 1, "a": {"f1": 0.5}})
        time.sleep(1.1)  # npz members are stamped with the time unless the writer fixes it
    for kind in (probs, table, doc):
        assert kind.path(first).read_bytes() == kind.path(second).read_bytes(), kind.file
    assert probs.read(first)["labels"].tolist() == ["O", "B-PER"]
    assert table.read(first, ["id"])["id"].tolist() == [0, 1]
    assert list(doc.read(first)) == ["a", "b"]
