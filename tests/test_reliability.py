"""Records and keys that cannot lie, and bad input that ends in one clean message."""

from __future__ import annotations

from pathlib import Path

import pytest

from concner.tasks.config import config_from_dict, load_config
from concner.tasks.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


def _raw(**sections) -> dict:
    raw = {"name": "t", "source_lang": "en", "target_lang": "es",
           "data": {"source_train": str(SAMPLES / "en_train.conll")}}
    raw.update(sections)
    return raw


def test_translate_key_covers_the_tag_repair_of_the_parallel_file():
    from concner.tasks.stages.translate import translate_params
    from concner.tasks.store import digest_of

    translate = {"backend": "parallel", "parallel_file": str(SAMPLES / "es_train.conll")}
    keys = []
    for repair in (False, True):
        config = config_from_dict(_raw(translate=translate, ingest={"repair_tags": repair}), base_dir=REPO)
        keys.append(digest_of(translate_params(config)))
    assert keys[0] != keys[1]


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"target_lang: es\ndata:\n  source_train: {SAMPLES / 'en_train.conll'}\n" + text)
    return path


def test_an_infinite_or_nan_float_is_rejected_at_its_line(tmp_path):
    path = _yaml(tmp_path, "train:\n  tcl_temperature: .inf\n")
    with pytest.raises(UserError, match=r"run\.yaml, line 5: train\.tcl_temperature: .*finite"):
        load_config(path)
    with pytest.raises(UserError, match=r"--set distill\.temperature=\.nan: distill\.temperature: .*finite"):
        load_config(_yaml(tmp_path, ""), overrides=["distill.temperature=.nan"])


@pytest.mark.parametrize("name", ["en/es", "../../x", ".hidden", ""])
def test_a_run_name_that_is_no_slug_is_rejected_at_its_line(tmp_path, name):
    path = tmp_path / "run.yaml"
    path.write_text(f"name: '{name}'\ntarget_lang: es\ndata:\n  source_train: x.conll\n")
    with pytest.raises(UserError, match=r"run\.yaml, line 1: name: .* is not a run name"):
        load_config(path)
    with pytest.raises(UserError, match=r"--set name=.*: name: "):
        load_config(_yaml(tmp_path, ""), overrides=[f"name={name}"])
    assert load_config(_yaml(tmp_path, ""), overrides=["name=en-es_2.1"]).name == "en-es_2.1"
