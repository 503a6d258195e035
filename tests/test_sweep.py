"""`concner sweep`: grid × seeds in one flow, shared upstream artifacts, the sweep record, inspect/report/select."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from concner.flows.sweep import best_setting, member_scores, parse_grid, setting_stats, split_values
from concner.tasks.engine.config import RunConfig, TrainConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.demo_store import run_cli

DEMO = REPO / "configs" / "demo.yaml"
UPSTREAM = ("ingest", "ingest_target", "translate", "project")
# Fast and small: one teacher epoch on 80 source sentences, the sample fixed across seeds (so that
# the seeds share ingest and what follows it), and no floor on the (untrained) teacher's F1.
SETS = ["--set", "train.epochs=1", "--set", "distill.epochs=1", "--set", "ingest.sample_size=80",
        "--set", "ingest.max_unlabeled=60", "--set", "ingest.sample_seed=13"]
if "min_selection_f1" in TrainConfig.model_fields:
    SETS += ["--set", "train.min_selection_f1=null"]
LAMBDA = re.compile(r"train\.lambda_tcl=(0\.5|0)(?![.\d])")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, prefect_server):
    """λ_TCL ∈ {0, 0.5} × seeds {13, 14} up to train, with --select: (store, stdout, stderr, sweep record)."""
    store = tmp_path_factory.mktemp("sweep-store")
    code, out, err = run_cli("sweep", DEMO, "--grid", "train.lambda_tcl=0,0.5", "--seeds", "13,14", *SETS,
                             "--until", "train", "--select", "teacher/target_test.f1", "--store", store)
    assert code == 0, err[-3000:]
    records = list((store / "sweeps").glob("sweep-*.json"))
    assert len(records) == 1
    return store, out, err, json.loads(records[0].read_text())


def _runs(store, record) -> list[dict]:
    st = ArtifactStore(store)
    return [st.load_run(m["run_id"]) for m in record["members"]]


def test_sweep_record_holds_the_grid_the_seeds_and_every_member_with_its_scores(sweep):
    store, _, err, record = sweep
    assert record["sweep_id"].startswith("sweep-") and record["status"] == "completed"
    assert record["grid"] == {"train.lambda_tcl": [0, 0.5]} and record["seeds"] == [13, 14]
    assert record["base_config"]["train"]["epochs"] == 1 and record["until"] == "train"
    members = record["members"]
    assert [(m["overrides"], m["seed"]) for m in members] == [
        ({"train.lambda_tcl": "0"}, 13), ({"train.lambda_tcl": "0"}, 14),
        ({"train.lambda_tcl": "0.5"}, 13), ({"train.lambda_tcl": "0.5"}, 14)]
    for member, run in zip(members, _runs(store, record)):
        assert member["status"] == run["status"] == "completed"
        assert run["config"]["seed"] == member["seed"]
        assert run["config"]["train"]["lambda_tcl"] == float(member["overrides"]["train.lambda_tcl"])
        # scores come from the member's run record (train's, as the sweep stops there)
        assert set(member["scores"]) == {"teacher/target_dev", "teacher/target_test"}
        assert member["scores"]["teacher/target_test"]["f1"] == run["scores"]["train"]["target_test"]["f1"]
    assert f"sweeps/{record['sweep_id']}.json" in " ".join(err.split()).replace(" ", "")


def test_members_share_every_upstream_artifact(sweep):
    store, _, _, record = sweep
    runs = _runs(store, record)
    for stage in UPSTREAM:
        assert len({run["stages"][stage]["key"] for run in runs}) == 1, stage
        statuses = [run["stages"][stage]["status"] for run in runs]
        assert statuses.count("computed") == 1 and statuses[0] == "computed", (stage, statuses)
    # each setting × seed trains its own teacher
    assert len({run["stages"]["train"]["key"] for run in runs}) == 4
    assert all(run["stages"]["train"]["status"] == "computed" for run in runs)
    # the encoder is adapted once per seed (the seed is in its key), shared by that seed's settings
    assert len({run["stages"]["adapt"]["key"] for run in runs}) == 2
    assert [run["stages"]["adapt"]["status"] for run in runs].count("computed") == 2
    assert set(runs[0]["stages"]) == {*UPSTREAM, "adapt", "train"}  # --until train


def test_a_single_run_of_a_member_setting_reuses_everything_with_the_same_keys(sweep, cli):
    store, _, _, record = sweep
    member = next(m for m in record["members"] if m["overrides"] == {"train.lambda_tcl": "0.5"} and m["seed"] == 14)
    code, _, err = cli("run", DEMO, *SETS, "--set", "train.lambda_tcl=0.5", "--set", "seed=14", "--until", "train",
                       "--store", store)
    assert code == 0, err[-3000:]
    single = ArtifactStore(store).list_runs()[-1]
    assert single["run_id"] not in {m["run_id"] for m in record["members"]}
    assert {info["status"] for info in single["stages"].values()} == {"reused"}
    sweep_run = ArtifactStore(store).load_run(member["run_id"])
    assert {e: i["key"] for e, i in single["stages"].items()} == {e: i["key"] for e, i in sweep_run["stages"].items()}


def test_select_prints_the_best_settings_config_as_yaml(sweep):
    _, out, err, record = sweep
    config = yaml.safe_load(out)  # stdout holds only the YAML; tables went to stderr
    assert isinstance(config, dict)
    means = {}
    for m in record["members"]:
        means.setdefault(float(m["overrides"]["train.lambda_tcl"]), []).append(m["scores"]["teacher/target_test"]["f1"])
    best = max(means, key=lambda lam: sum(means[lam]) / len(means[lam]))  # first of equals, as the sweep does
    assert config["train"]["lambda_tcl"] == best
    assert config["seed"] == 13 and config["train"]["epochs"] == 1
    RunConfig.model_validate(config)  # a complete config: `concner run` can take it
    assert "train.lambda_tcl=0.5" in err and "±" in err


def test_inspect_shows_mean_and_sd_per_setting(sweep, cli):
    store, _, _, record = sweep
    code, out, err = cli("inspect", record["sweep_id"], "--store", store)
    assert code == 0, err
    assert set(LAMBDA.findall(out)) == {"0", "0.5"}
    assert "teacher/target_test" in out and "±" in out and record["sweep_id"] in out
    for m in record["members"]:
        assert m["run_id"] in out
    code, out, _ = cli("inspect", record["sweep_id"][:12], "--store", store)  # a unique prefix works
    assert code == 0 and "teacher/target_test" in out
    code, _, err = cli("inspect", record["sweep_id"], "--stage", "train", "--store", store)
    assert code == 2 and "is a sweep" in err


def test_report_draws_the_sweep_with_error_bars(sweep, cli, tmp_path):
    store, _, _, record = sweep
    out = tmp_path / "sweep.html"
    code, stdout, err = cli("report", record["sweep_id"], "--out", out, "--png", tmp_path / "png", "--store", store)
    assert code == 0, err
    page = out.read_text()
    assert record["sweep_id"] in page and "train.lambda_tcl=0.5" in page and "data:image/png;base64," in page
    assert (tmp_path / "png" / "sweep-f1.png").stat().st_size > 1000


def test_a_bad_grid_value_fails_before_anything_runs(cli, tmp_path):
    store = tmp_path / "store"
    code, out, err = cli("sweep", DEMO, "--grid", "train.epochs=0,abc", "--seeds", "13,14", "--store", store)
    assert code == 2
    assert err.count("error:") == 1 and "--grid train.epochs" in err and "'abc'" in err, err
    assert "Traceback" not in err
    assert not (store / "stages").exists() and not (store / "sweeps").exists()
    code, _, err = cli("sweep", DEMO, "--grid", "train.lamda=0,1", "--store", store)
    assert code == 2 and err.count("error:") == 1 and "train.lamda: unknown key" in err


# -- pure helpers (no runs) ----------------------------------------------------------------------


def test_grid_values_split_at_top_level_commas_only():
    assert split_values("0,0.5") == ["0", "0.5"]
    assert split_values("[PER, LOC],[ORG]") == ["[PER, LOC]", "[ORG]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert parse_grid(["train.lambda_tcl=0, 0.5", "train.lambda_lcl=1"]) == [
        ("train.lambda_tcl", ["0", "0.5"]), ("train.lambda_lcl", ["1"])]
    for bad, words in ((["train.epochs"], "KEY=V1"), (["seed=1,2"], "--seeds"), (["a=1", "a=2"], "twice"),
                       (["a=1,1"], "twice"), (["a=1,,2"], "empty")):
        with pytest.raises(UserError, match=words):
            parse_grid(bad)


def test_scores_of_multi_target_members_are_named_by_target_and_averaged():
    run = {"scores": {
        "train@de": {"target_test": {"precision": 0.1, "recall": 0.1, "f1": 0.1}},  # ignored: evaluate@de is there
        "evaluate@de": {"teacher/target_test": {"precision": 0.5, "recall": 0.4, "f1": 0.45, "mode": "x"},
                        "student/target_test": {"precision": 0.6, "recall": 0.5, "f1": 0.55, "mode": "x"}},
        "train@fr": {"target_test": {"precision": 0.3, "recall": 0.2, "f1": 0.25, "per_type": {}}},
        "distill@fr": {"target_test": {"precision": 0.4, "recall": 0.3, "f1": 0.35}},
    }}
    scores = member_scores(run)
    assert set(scores) == {"teacher/target_test@de", "student/target_test@de", "teacher/target_test@fr",
                           "student/target_test@fr"}
    assert scores["student/target_test@de"] == {"precision": 0.6, "recall": 0.5, "f1": 0.55}
    members = [{"setting": s, "seed": seed, "status": "completed",
                "scores": {"student/target_test@de": {"precision": 0, "recall": 0, "f1": f1}}}
               for s, seed, f1 in (("a=1", 13, 0.4), ("a=1", 14, 0.6), ("a=2", 13, 0.7), ("a=2", 14, 0.3))]
    members.append({"setting": "a=2", "seed": 15, "status": "failed", "scores": {}})
    stats = setting_stats({"sweep_id": "sweep-x", "members": members})
    f1 = stats["a=1"]["student/target_test@de"]["f1"]
    assert f1.mean == pytest.approx(0.5) and f1.sd == pytest.approx(0.1414, abs=1e-3) and f1.n == 2
    assert stats["a=2"]["student/target_test@de"]["f1"].n == 2  # the failed member is left out
    setting, _ = best_setting({"sweep_id": "sweep-x", "members": members}, "student/target_test@de.f1")
    assert setting == "a=1"  # equal means (0.5): the first in grid order
    with pytest.raises(UserError, match="no completed member has the score"):
        best_setting({"sweep_id": "sweep-x", "members": members}, "teacher/target_test.f1")
