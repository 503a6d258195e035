"""Caching across runs: reuse, --force, a deleted artifact, and bad input that leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from concner.tasks.engine.store import ArtifactStore

TRAIN = "John\tB-PER\nSmith\tI-PER\nvisits\tO\nParis\tB-LOC\n.\tO\n\nAcme\tB-ORG\nhires\tO\nMary\tB-PER\n\n"


@pytest.fixture
def project(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "train.conll").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "unlabeled.txt").write_text("Juan visita París .\nMaría trabaja en Acme .\n", encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        "name: tiny\ntarget_lang: es\ndata:\n  source_train: train.conll\n  target_unlabeled: unlabeled.txt\n"
        # models that exist offline: `concner stage project/train` checks the models it will load
        "project:\n  aligner_model: tiny\n  layer: 1\ntrain:\n  encoder: tiny\n",
        encoding="utf-8",
    )
    return config, tmp_path / "store"


def stage_folders(store: Path) -> set[Path]:
    return set((store / "stages").glob("*/*")) if (store / "stages").exists() else set()


def last_run(store: Path) -> dict:
    return ArtifactStore(store).list_runs()[-1]


def test_rerun_reuses_force_and_deletion_recompute(cli, project):
    config, store = project
    code, out, err = cli("run", config, "--until", "ingest", "--store", store)
    assert code == 0, err
    first = last_run(store)
    assert first["stages"]["ingest"]["status"] == "computed"
    key = first["stages"]["ingest"]["key"]
    manifest = json.loads((store / "stages" / "ingest" / key / "manifest.json").read_text())
    assert manifest["metrics"]["splits"]["source_train"]["entities"] == {"LOC": 1, "ORG": 1, "PER": 2}

    code, out, _ = cli("run", config, "--until", "ingest", "--store", store)
    second = last_run(store)
    assert code == 0 and second["stages"]["ingest"] == {**second["stages"]["ingest"], "status": "reused",
                                                         "prefect_state": "Cached", "key": key}

    code, out, _ = cli("run", config, "--until", "ingest", "--store", store, "--force", "ingest")
    assert code == 0 and last_run(store)["stages"]["ingest"]["status"] == "computed"

    shutil.rmtree(store / "stages" / "ingest" / key)
    code, out, _ = cli("run", config, "--until", "ingest", "--store", store)
    third = last_run(store)
    assert code == 0 and third["stages"]["ingest"]["status"] == "computed"
    assert third["stages"]["ingest"]["prefect_state"] == "Completed"
    assert ArtifactStore(store).exists("ingest", key)


def test_changed_parameter_changes_key(cli, project):
    config, store = project
    cli("run", config, "--until", "ingest", "--store", store)
    code, _, _ = cli("run", config, "--until", "ingest", "--store", store, "--set", "ingest.sample_size=2")
    assert code == 0
    runs = ArtifactStore(store).list_runs()
    assert runs[-1]["stages"]["ingest"]["key"] != runs[-2]["stages"]["ingest"]["key"]
    assert runs[-1]["stages"]["ingest"]["status"] == "computed"


BAD_INPUTS = {
    "missing file": (None, "file not found"),
    "empty file": ("\n\n", "file is empty"),
    "non-UTF-8": ("Espa\u00f1a\tB-LOC\n".encode("latin-1"), "line 1: not UTF-8"),
    "wrong columns": ("a\tO\nb\tO\tO\n", "line 2: 3 columns where the file has 2"),
    "B- without type": ("a\tB-\n", "line 1: unknown tag 'B-'"),
    "X-PER": ("a\tO\nb\tX-PER\n", "line 2: unknown tag 'X-PER'"),
    "bare PER": ("a\tPER\n", "line 1: unknown tag 'PER'"),
    "invalid BIOES": ("a\tS-PER\n\nb\tB-LOC\nc\tO\n", "line 3: invalid BIOES"),
    "too long": ("".join(f"w{i}\tO\n" for i in range(30)), "line 1: sentence has 30 tokens, more than the limit of 20"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exit_2_with_file_and_line_and_no_artifact(cli, project, case):
    config, store = project
    content, message = BAD_INPUTS[case]
    train = config.parent / "train.conll"
    if content is None:
        train.unlink()
    elif isinstance(content, bytes):
        train.write_bytes(content)
    else:
        train.write_text(content, encoding="utf-8")
    code, out, err = cli("run", config, "--until", "ingest", "--store", store, "--set", "ingest.max_tokens=20")
    assert code == 2
    assert str(train) in err and message in err
    assert "Traceback" not in err + out
    assert stage_folders(store) == set()


@pytest.mark.parametrize(
    "override, message",
    [("ingest.no_such_key=1", "ingest.no_such_key: unknown key"),
     ("train.epochs=many", "train.epochs: Input should be a valid integer"),
     ("bogus=1", "bogus: unknown key")],
)
def test_bad_config_key_is_named(cli, project, override, message):
    config, store = project
    code, out, err = cli("run", config, "--store", store, "--set", override)
    assert code == 2 and message in err and "Traceback" not in err
    assert stage_folders(store) == set()


@pytest.mark.parametrize("name, upstream", [("project", "ingest, ingest_target, translate"),
                                            ("train", "ingest, ingest_target, translate, project")])
def test_stage_command_needs_upstream_artifacts(cli, project, name, upstream):
    config, store = project
    code, out, err = cli("stage", name, config, "--store", store)
    assert code == 2, (out, err)
    assert f"stage {name!r} needs {upstream} first" in err
    assert f"concner run CONFIG --until {name}" in err
    assert "Traceback" not in err + out
    # nothing written for the stage: no artifact folder, no temporary folder, no run record
    stages = store / "stages"
    assert not stages.exists() or not any(stages.rglob("*")), sorted(stages.rglob("*"))
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


def test_overrides_do_not_leak_into_the_callers_config():
    from concner.tasks.engine.config_loading import config_from_dict

    raw = {"target_lang": "es", "data": {"source_train": "x.conll"}, "train": {"epochs": 1}}
    first = config_from_dict(raw, base_dir=Path("."), overrides=["train.use_translations=false", "train.epochs=4"])
    second = config_from_dict(raw, base_dir=Path("."))
    assert (first.train.use_translations, first.train.epochs) == (False, 4)
    assert (second.train.use_translations, second.train.epochs) == (True, 1)


def test_store_artifacts_are_reused_without_any_prefect_cache_record(cli, project):
    """A fresh Prefect home or another server knows no cache records; the store alone decides."""
    from prefect.settings import get_current_settings

    config, store = project
    code, _, err = cli("run", config, "--until", "ingest", "--store", store)
    assert code == 0, err
    key = last_run(store)["stages"]["ingest"]["key"]
    manifest_before = (store / "stages" / "ingest" / key / "manifest.json").read_text()
    # Prefect keeps cache records as files named by the cache key in its local result storage.
    storage = Path(get_current_settings().results.local_storage_path).expanduser()
    records = list(storage.glob(f"concner-ingest-{key}*"))
    assert records, f"no Prefect cache record for ingest/{key} in {storage}"
    for record in records:
        record.unlink()

    code, _, err = cli("run", config, "--until", "ingest", "--store", store)
    assert code == 0, err
    stage = last_run(store)["stages"]["ingest"]
    assert stage["status"] == "reused" and stage["key"] == key and stage["seconds"] == 0.0
    assert stage["prefect_state"] == "Completed"  # ran, but computed nothing
    assert (store / "stages" / "ingest" / key / "manifest.json").read_text() == manifest_before


def test_models_are_checked_only_for_the_stages_a_run_goes_through(cli, tmp_path, monkeypatch):
    """An offline machine without mBERT can still ingest; a run that would align is stopped up front."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "train.conll").write_text(TRAIN, encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text("name: hub\ntarget_lang: es\ndata:\n  source_train: train.conll\n"
                      "project:\n  aligner_model: no-such-org/no-such-model\n", encoding="utf-8")
    code, _, err = cli("run", config, "--until", "ingest", "--store", tmp_path / "store")
    assert code == 0, err
    code, _, err = cli("run", config, "--until", "project", "--dry-run", "--store", tmp_path / "store")
    assert code == 2 and "run.yaml, line 6: project.aligner_model" in err and "no-such-org/no-such-model" in err


def test_the_run_summary_in_a_log_keeps_artifact_paths_whole(cli, project):
    """Not on a terminal (a scheduled run's log), the summary table is printed at its full width."""
    config, store = project
    code, out, err = cli("run", config, "--until", "ingest", "--store", store)
    assert code == 0, err
    key = last_run(store)["stages"]["ingest"]["key"]
    assert str(store.resolve() / "stages" / "ingest" / key) in out and "…" not in out
