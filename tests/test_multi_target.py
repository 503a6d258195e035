"""Multi-target runs: one shared source ingest, one branch per target, every target in record and report."""

from __future__ import annotations

import re

import pytest

from concner.tasks.engine.config_loading import load_config
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.registry import STAGES
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.demo_store import FAST, run_cli

MULTI = REPO / "configs" / "demo-multi.yaml"
DEMO = REPO / "configs" / "demo.yaml"
TARGETS = ["es-human", "es-mt"]


@pytest.fixture(scope="module")
def multi_store(tmp_path_factory, prefect_server):
    store = tmp_path_factory.mktemp("multi-store")
    code, out, err = run_cli("run", MULTI, "--store", store, *FAST)
    assert code == 0, err[-3000:]
    return store


def test_config_branches_carry_each_targets_files_and_translate_settings():
    config = load_config(MULTI)
    branches = dict(config.branches())
    assert list(branches) == TARGETS
    human, mt = branches["es-human"], branches["es-mt"]
    assert human.target_lang == mt.target_lang == "es" and not human.targets
    assert human.translate.backend == "parallel" and human.translate.parallel_file.name == "es_train.conll"
    assert mt.translate.backend == "marian" and mt.translate.model == "tiny"
    assert mt.translate.max_new_tokens == 48  # the run's translate settings, not overridden, carry over
    assert human.data.target_dev is not None and mt.data.target_dev is None
    assert human.data.source_train == mt.data.source_train == config.data.source_train


def test_multi_target_run_shares_the_source_ingest_and_runs_a_branch_per_target(multi_store):
    store = ArtifactStore(multi_store)
    record = store.list_runs()[-1]
    assert record["status"] == "completed" and record["targets"] == TARGETS
    expected = ["ingest"] + [f"{s.name}@{t}" for t in TARGETS for s in STAGES if s.name != "ingest"]
    assert list(record["stages"]) == expected
    for entry, info in record["stages"].items():
        assert info["status"] == "computed" and store.exists(info["stage"], info["key"]), entry
    keys = {entry: info["key"] for entry, info in record["stages"].items()}
    # the branches differ from their target data / translation on, so every branch stage has its own artifact
    for stage in ("ingest_target", "translate", "project", "train", "pseudo_label", "distill", "evaluate"):
        assert keys[f"{stage}@es-human"] != keys[f"{stage}@es-mt"], stage
    translate_mt = store.manifest("translate", keys["translate@es-mt"])
    assert translate_mt["metrics"]["backend"] == "marian"
    # teacher and student scores of both targets are in the record
    assert {"train@es-human", "distill@es-human", "train@es-mt", "distill@es-mt"} <= set(record["scores"])
    assert set(record["scores"]["distill@es-human"]) == {"target_dev", "target_test"}
    assert set(record["scores"]["distill@es-mt"]) == {"target_test"}


def test_a_target_run_alone_reuses_its_branch_of_the_multi_target_run(multi_store):
    """demo.yaml is the es-human target on its own: same artifacts, nothing recomputed."""
    code, out, err = run_cli("run", DEMO, "--store", multi_store, *FAST)
    assert code == 0, err[-3000:]
    alone, multi = ArtifactStore(multi_store).list_runs()[-1], ArtifactStore(multi_store).list_runs()[-2]
    assert {info["status"] for info in alone["stages"].values()} == {"reused"}
    assert {name: info["key"] for name, info in alone["stages"].items()} == {
        info["stage"]: info["key"] for info in multi["stages"].values() if info["target"] in (None, "es-human")}


def test_target_option_plans_one_branch_and_inspect_asks_for_it(multi_store, cli):
    code, out, err = cli("run", MULTI, "--store", multi_store, *FAST, "--target", "es-mt", "--force", "train",
                         "--dry-run")
    assert code == 0, err
    text = " ".join(out.split())
    names = {s.name for s in STAGES}  # the estimate table below the plan says "compute" too
    planned = {k: v for k, v in re.findall(r"([\w@-]+) (reuse|compute)\b", text[text.index("plan:"):])
               if k.split("@")[0] in names}
    assert planned == {"ingest": "reuse", "ingest_target@es-mt": "reuse", "translate@es-mt": "reuse",
                       "adapt@es-mt": "reuse", "project@es-mt": "reuse", "train@es-mt": "compute", "pseudo_label@es-mt": "compute",
                       "distill@es-mt": "compute", "evaluate@es-mt": "compute"}

    code, out, err = cli("run", MULTI, "--store", multi_store, "--target", "de", "--dry-run")
    assert code == 2 and "es-human, es-mt" in err

    multi_run = next(r for r in reversed(ArtifactStore(multi_store).list_runs()) if r["targets"] == TARGETS)
    code, out, err = cli("inspect", multi_run["run_id"], "--store", multi_store, "--stage", "train")
    assert code == 2 and "--target" in err and "train@es-mt" in err
    code, out, err = cli("inspect", multi_run["run_id"], "--store", multi_store, "--stage", "train",
                         "--target", "es-mt")
    assert code == 0, err
    assert multi_run["stages"]["train@es-mt"]["key"] in out


def test_report_has_each_targets_figures(multi_store, tmp_path):
    from concner.flows.report import write_report

    store = ArtifactStore(multi_store)
    record = next(r for r in reversed(store.list_runs()) if r["targets"] == TARGETS)
    sections = write_report(record, store, tmp_path / "report.html", png_dir=tmp_path / "png")
    ids = [s.id for s in sections]
    for target in TARGETS:
        for figure in ("scores-f1", "train-loss", "distill-loss", "pseudo-label-confidence", "project-outcomes"):
            assert f"{target}-{figure}" in ids
            assert (tmp_path / "png" / f"{target}-{figure}.png").is_file()
    assert ids[-2:] == ["ingest-entities", "timings"]


@pytest.mark.parametrize(("change", "message"), [
    ({"target_lang": "es"}, "either target_lang (one target) or targets"),
    ({"targets": [{"lang": "de"}, {"lang": "de"}]}, "distinct name"),
    ({"targets": [{"lang": "de", "name": "de@2"}]}, "names may hold only"),
    ({"targets": [{"lang": "de", "translate": {"num_beams": 0}}]}, "num_beams"),
    ({"data": {"source_train": "en.conll", "target_test": "es.conll"}, "targets": [{"lang": "de"}]},
     "data.target_test per target"),
])
def test_bad_multi_target_configs_are_user_errors(tmp_path, change, message):
    import yaml

    raw = {"name": "m", "data": {"source_train": "en.conll"}, "targets": [{"lang": "de"}, {"lang": "fr"}], **change}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(path)
