"""Trustworthy artifacts: same config + seed -> same bytes; keys follow content; corruption,
concurrent writers and killed runs never leave a wrong artifact behind."""

from __future__ import annotations

import re

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.demo_store import FAST

DEMO = REPO / "configs" / "demo.yaml"
# a smaller DAG for the tests that start concner processes of their own
SMALL = ("--set", "ingest.sample_size=80", "--set", "ingest.max_unlabeled=60", "--set", "train.epochs=1",
         "--set", "distill.epochs=1", "--set", "train.min_selection_f1=null")


def stage_files(root: Path) -> dict[str, str]:
    """sha256 of every file under stages/, by stage and path inside the artifact (keys left out,
    manifests left out: they hold times); and each manifest's recorded file list."""
    out = {}
    store = ArtifactStore(root)
    for stage, key in store.artifacts():
        manifest = store.manifest(stage, key)
        assert manifest is not None, (stage, key)
        for entry in manifest["files"]:
            out[f"{stage}/{entry['path']}"] = entry["sha256"]
    return out


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # copy2 keeps mtimes: verification stamps stay valid
    return dst


def statuses(record: dict) -> dict[str, str]:
    return {entry: info["status"] for entry, info in record["stages"].items()}


@pytest.mark.slow
def test_demo_twice_into_fresh_stores_gives_the_same_bytes(cli, demo_run, tmp_path):
    code, _, err = cli("demo", "--store", tmp_path / "again", *FAST)
    assert code == 0, err[-3000:]
    again = ArtifactStore(tmp_path / "again").list_runs()[-1]
    assert {e: i["key"] for e, i in again["stages"].items()} == {e: i["key"] for e, i in demo_run.record["stages"].items()}
    first, second = stage_files(demo_run.store), stage_files(tmp_path / "again")
    assert "train/model/model.safetensors" in first and "pseudo_label/probs.npz" in first
    assert first == second
    # and the files really are those bytes (the manifests are not just copied claims)
    for root in (demo_run.store, tmp_path / "again"):
        store = ArtifactStore(root)
        assert all(store.problems(stage, key, full=True) == [] for stage, key in store.artifacts())
    assert again["scores"] == demo_run.record["scores"]


@pytest.mark.slow
def test_recomputed_stage_keys_downstream_by_content(cli, demo_run, tmp_path, monkeypatch):
    root = copy_store(demo_run.store, tmp_path / "store")
    store = ArtifactStore(root)
    before = demo_run.record["stages"]

    # an identical recompute in place (CPU, same seed): the bytes are the same, nothing below is stale
    code, _, err = cli("stage", "train", DEMO, "--store", root, *FAST)
    assert code == 0, err[-3000:]
    assert store.list_runs()[-1]["stages"]["train"]["status"] == "computed"
    code, _, err = cli("run", DEMO, "--store", root, *FAST)
    assert code == 0, err[-3000:]
    assert set(statuses(store.list_runs()[-1]).values()) == {"reused"}

    # a recompute that gives other weights (as a GPU run or another seed would) under the same key
    import concner.flows.stage_task as stage_task

    monkeypatch.setattr(stage_task, "derive_seed", lambda seed, stage: 12345)
    code, _, err = cli("stage", "train", DEMO, "--store", root, *FAST)
    assert code == 0, err[-3000:]
    monkeypatch.undo()
    assert store.list_runs()[-1]["stages"]["train"]["key"] == before["train"]["key"]
    code, _, err = cli("run", DEMO, "--store", root, *FAST)
    assert code == 0, err[-3000:]
    after = store.list_runs()[-1]
    computed = {e for e, s in statuses(after).items() if s == "computed"}
    assert computed == {"pseudo_label", "distill", "evaluate"}
    for stage in computed:
        assert after["stages"][stage]["key"] != before[stage]["key"]
        inputs = store.manifest(stage, after["stages"][stage]["key"])["key_material"]["inputs"]
        assert "train" in inputs or "distill" in inputs
    # diff names the cause: the train artifact's content, not any parameter
    from concner.flows.diff import diff_runs

    code, out, err = cli("diff", demo_run.record["run_id"], after["run_id"], "--store", root)
    assert code == 0, err
    why = {d.stage: d for d in diff_runs(store, demo_run.record, after).stages}
    assert why["pseudo_label"].verdict == "inputs changed" and why["pseudo_label"].inputs == ["train"]
    assert not why["pseudo_label"].params and not why["pseudo_label"].code
    assert why["train"].verdict == "same"


@pytest.mark.slow
def test_corrupt_artifacts_are_reported_and_recomputed(cli, demo_run, tmp_path, caplog):
    root = copy_store(demo_run.store, tmp_path / "store")
    store = ArtifactStore(root)
    keys = {e: i["key"] for e, i in demo_run.record["stages"].items()}
    parquet = store.stage_dir("project", keys["project"]) / "projected.parquet"
    parquet.write_bytes(parquet.read_bytes()[:100])  # truncated
    manifest_path = store.stage_dir("translate", keys["translate"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["sha256"] = "0" * 64  # a wrong recorded checksum, same size
    manifest_path.write_text(json.dumps(manifest, indent=2))

    code, out, err = cli("verify", "latest", "--store", root)
    assert code == 1
    assert "projected.parquet: expected" in out and "translations.parquet: sha256 expected 000000000000" in out
    assert "2 corrupt" in out

    code, out, err = cli("run", DEMO, "--store", root, *FAST, "--dry-run")
    assert code == 0 and "warning: translate: corrupt artifact" in err  # a dry run has no flow to log it
    caplog.clear()
    code, out, err = cli("run", DEMO, "--store", root, *FAST)
    assert code == 0, err[-3000:]
    # said once, by the flow's log (console and Prefect UI), not again by the CLI
    assert "corrupt artifact" not in err
    warned = [r.getMessage() for r in caplog.records if "corrupt artifact" in r.getMessage()]
    assert len(warned) == 2 and warned[0].startswith("translate:") and warned[1].startswith("project:"), warned
    record = store.list_runs()[-1]
    assert statuses(record)["translate"] == "computed" and statuses(record)["project"] == "computed"
    assert "projected.parquet: expected" in record["stages"]["project"]["note"]
    assert "translations.parquet: sha256 expected" in record["stages"]["translate"]["note"]
    # the recomputed translations and projections have the same bytes: training below is reused
    assert statuses(record)["train"] == "reused" and statuses(record)["distill"] == "reused"
    code, out, err = cli("verify", "--all", "--store", root)
    assert code == 0 and "0 corrupt" in out


def _env(tmp_path: Path, api_url: str | None) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "HF_HUB_OFFLINE": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
           "PYTHONPATH": ""}
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _concner(*args: object) -> list[str]:
    return [sys.executable, "-c", "from concner.flows.cli import main; main()", *map(str, args)]


def _test_server_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.mark.slow
def test_two_processes_on_one_store_compute_each_stage_once(prefect_server, tmp_path):
    store_root = tmp_path / "store"
    env = _env(tmp_path, _test_server_url())
    cmd = _concner("run", DEMO, "--store", store_root, *SMALL)
    procs = [subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    store = ArtifactStore(store_root)
    records = store.list_runs()
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    computed: dict[str, int] = {}
    for record in records:
        for entry, info in record["stages"].items():
            computed[entry] = computed.get(entry, 0) + (info["status"] == "computed")
    assert computed == {entry: 1 for entry in records[0]["stages"]}
    assert records[0]["stages"].keys() == records[1]["stages"].keys()
    for entry in records[0]["stages"]:
        assert records[0]["stages"][entry]["key"] == records[1]["stages"][entry]["key"]
    for record in records:  # each record quotes what the artifacts under its keys hold
        evaluate = store.manifest("evaluate", record["stages"]["evaluate"]["key"])
        assert record["scores"]["evaluate"] == evaluate["metrics"]["scores"]
    assert len(store.artifacts()) == len(records[0]["stages"])
    assert not list((store_root / "stages").glob("*/.*"))


def process_dirs() -> list[Path]:
    """/proc/<pid> of every process now."""
    return [proc for proc in Path("/proc").iterdir() if proc.name.isdigit()]


def _server_children(parent: int) -> list[int]:
    """pids of Prefect temporary servers that process `parent` started (Prefect runs them as
    `python -m uvicorn ... prefect.server.api.server:create_app`)."""
    found = []
    for proc in process_dirs():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"prefect.server.api.server:create_app" in cmdline:
            found.append(int(proc.name))
    return found


def _running(pids: list[int]) -> list[int]:
    """Those of `pids` still running (a zombie, its command line gone, is not)."""
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            pass
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the server process")
def test_kill_9_during_training_then_rerun(cli, tmp_path):
    store_root = tmp_path / "store"
    store = ArtifactStore(store_root)
    # no PREFECT_API_URL: the killed process starts its own temporary server, which must not outlive it
    proc = subprocess.Popen(_concner("run", DEMO, "--store", store_root, *SMALL), env=_env(tmp_path, None),
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((store_root / "stages" / "train").glob(".*.tmp-*")):
        assert proc.poll() is None, "the run ended before training started"
        time.sleep(0.05)
    servers = _server_children(proc.pid)
    assert servers, "no temporary Prefect server found for the run"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and _running(servers):
        time.sleep(0.2)
    assert _running(servers) == []  # the watchdog stopped it
    killed = store.list_runs()[-1]
    assert killed["status"] == "running" and killed["current_stage"] == "train"
    assert list((store_root / "stages" / "train").glob(".*.tmp-*"))

    code, _, err = cli("run", DEMO, "--store", store_root, *SMALL)
    assert code == 0, err[-3000:]
    runs = {r["run_id"]: r for r in store.list_runs()}
    assert runs[killed["run_id"]]["status"] == "interrupted"
    assert runs[killed["run_id"]]["failed_stage"] == "train"
    rerun = store.list_runs()[-1]
    assert {e for e, s in statuses(rerun).items() if s == "reused"} == {"ingest", "ingest_target", "translate", "adapt",
                                                                         "project"}
    assert statuses(rerun)["train"] == "computed"
    assert not list((store_root / "stages").glob("*/.*"))


def test_a_target_text_change_recomputes_only_the_stages_that_read_it(cli, demo_run):
    """ingest.max_unlabeled changes the unlabeled text only: the parallel translations stay; the
    demo's project and train use `tiny` models, built from that text, so they are keyed by it."""
    code, out, err = cli("run", DEMO, "--store", demo_run.store, *FAST, "--set", "ingest.max_unlabeled=50", "--dry-run")
    assert code == 0, err
    plan_line = " ".join(out.split("plan:", 1)[1].split())  # the estimate table follows the plan
    plan = dict(re.findall(r"(\w+) (reuse|compute)\b", plan_line))
    assert plan["ingest"] == "reuse" and plan["translate"] == "reuse"
    assert plan["ingest_target"] == "compute" and plan["project"] == "compute"


def test_stages_with_real_models_do_not_read_the_unlabeled_text():
    from concner.tasks.engine.config_loading import config_from_dict
    from concner.tasks.stages.project import project_reads
    from concner.tasks.stages.train import train_reads
    from concner.tasks.stages.translate import translate_reads

    raw = {"target_lang": "es", "data": {"source_train": "x.conll"}}
    real = config_from_dict(raw, base_dir=REPO)
    tiny = config_from_dict(raw, base_dir=REPO, overrides=["project.aligner_model=tiny", "train.encoder=tiny",
                                                            "translate.model=tiny"])
    for reads in (project_reads, train_reads, translate_reads):
        assert not any("target_unlabeled" in p for p in reads(real)["ingest_target"])
        assert any("target_unlabeled" in p for p in reads(tiny)["ingest_target"])
    assert train_reads(config_from_dict(raw, base_dir=REPO, overrides=["train.use_translations=false"]))["project"] == ()
