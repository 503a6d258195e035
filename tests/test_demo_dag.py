"""The whole DAG on the demo config: every artifact, reuse on rerun, and --force downstream only."""

from __future__ import annotations

import json

import pytest
from transformers import pipeline

from concner.tasks.engine.registry import STAGES
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO

from tests.demo_store import FAST  # noqa: E402


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-store")


@pytest.mark.slow
def test_demo_runs_end_to_end_then_reuses_then_forces_downstream(cli, demo_store):
    config = REPO / "configs" / "demo.yaml"
    code, out, err = cli("run", config, "--store", demo_store, *FAST)
    assert code == 0, err[-3000:]
    store = ArtifactStore(demo_store)
    first = store.list_runs()[-1]
    assert first["status"] == "completed"
    assert [s.name for s in STAGES] == list(first["stages"])
    for name, info in first["stages"].items():
        assert info["status"] == "computed"
        manifest = store.manifest(name, info["key"])
        assert manifest is not None, name
        for entry in manifest["files"]:
            assert (store.stage_dir(name, info["key"]) / entry["path"]).stat().st_size == entry["bytes"]
    scores = first["scores"]["evaluate"]
    assert set(scores) == {"teacher/target_dev", "teacher/target_test", "student/target_dev", "student/target_test"}

    code, out, err = cli("run", config, "--store", demo_store, *FAST)
    second = store.list_runs()[-1]
    assert code == 0 and {s["status"] for s in second["stages"].values()} == {"reused"}
    assert {s["prefect_state"] for s in second["stages"].values()} == {"Cached"}
    assert {k: s["key"] for k, s in second["stages"].items()} == {k: s["key"] for k, s in first["stages"].items()}

    code, out, err = cli("run", config, "--store", demo_store, *FAST, "--force", "pseudo_label")
    third = store.list_runs()[-1]
    assert code == 0, err[-3000:]
    computed = {k for k, s in third["stages"].items() if s["status"] == "computed"}
    assert computed == {"pseudo_label", "distill", "evaluate"}

    code, out, err = cli("inspect", "latest", "--store", demo_store, "--stage", "ingest")
    assert code == 0 and "source_train" in out
    code, out, err = cli("runs", "--store", demo_store)
    assert code == 0 and third["run_id"][:12] in out


def test_the_exported_student_is_a_transformers_tagger_with_the_runs_labels(demo_run):
    """The student folder loads in transformers' own pipeline, with the labels of the run's source
    data in the teacher's order, and tags exactly as concner's model does."""
    import torch

    from concner.models.ner_model import ConcNerModel

    student = demo_run.stage_dir("distill") / "model"
    id2label = json.loads((student / "config.json").read_text())["id2label"]
    labels = [id2label[str(i)] for i in range(len(id2label))]
    types = demo_run.manifest("ingest")["metrics"]["splits"]["source_train"]["entities"]
    assert labels == demo_run.manifest("train")["metrics"]["labels"]
    assert set(labels) == {"O"} | {f"{prefix}-{t}" for t in types for prefix in "BI"}

    text = "Pedro Sánchez visitó Madrid con la ONU ."
    preds = pipeline("token-classification", model=str(student), ignore_labels=[], device="cpu")(text)
    model = ConcNerModel.load(student).eval()
    batch = model.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(batch["input_ids"], batch["attention_mask"]).logits[0], dim=-1)[1:-1]
    assert [p["entity"] for p in preds] == [labels[int(i)] for i in probs.argmax(dim=-1)]
    assert [p["score"] for p in preds] == pytest.approx(probs.amax(dim=-1).tolist(), abs=1e-5)


def test_prefect_records_the_dags_edges_between_the_stages_task_runs(demo_run):
    """Each stage's task run waits for the task runs of the stages it reads: Prefect's API (and the
    flow run graph of its UI) has the DAG's edges, not nine unrelated task runs. (Prefect may add
    an edge of its own from the stage run just before, which does finish first.)"""
    import time

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = demo_run.record["prefect_flow_run_id"]
    with get_client(sync_client=True) as client:
        for _ in range(50):  # the server records task runs from events, shortly after they happen
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) == len(demo_run.record["stages"]):
                break
            time.sleep(0.2)
    name_of = {run.id: run.name for run in runs}
    edges = {run.name: sorted(name_of[i.id] for i in run.task_inputs.get("wait_for", [])) for run in runs}
    for stage in demo_run.record["stages"]:
        manifest = demo_run.manifest(stage)
        assert set(manifest["inputs"]) <= set(edges[stage]), stage
    assert edges["ingest"] == [] and "project" in edges["train"]
