"""Messages a user reads on bad input: the right line or flag, the right count and noun, and tables
that stay readable when piped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from concner.tasks.engine.config_loading import load_config
from concner.tasks.text.conll import counted, read_conll
from concner.tasks.engine.errors import UserError
from tests.conftest import SAMPLES
from tests.demo_store import run_cli


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- CoNLL readers ---------------------------------------------------------------------------------


def test_stray_bioes_tags_in_an_iob_file_are_reported_at_their_own_line(tmp_path: Path):
    # an IOB2 file (B-PER I-PER at lines 6-7) with two stray BIOES tags at lines 101-102
    lines = ["-DOCSTART- O", "", "El O", "señor O", "dijo O", "Juan B-PER", "Pérez I-PER", "hoy O", ""]
    while len(lines) < 99:
        lines += ["a O"]
    lines += ["", "x E-PER", "y S-LOC", ""]
    path = _write(tmp_path / "mixed.conll", "\n".join(lines) + "\n")
    assert lines[100] == "x E-PER"  # line 101
    with pytest.raises(UserError) as err:
        read_conll(path)
    text = str(err.value)
    assert text.startswith(f"{path}, line 101:"), text
    assert "'E-PER'" in text and "line 6" in text and "repair_tags" in text


def test_an_invalid_bioes_sequence_in_a_bioes_file_is_still_reported_at_its_b_tag(tmp_path: Path):
    path = _write(tmp_path / "bioes.conll", "Ana S-PER\nvive O\n\nJuan B-PER\nvive O\n")
    with pytest.raises(UserError, match=r", line 4: invalid BIOES: B-PER is never closed"):
        read_conll(path)


def test_counts_take_the_noun_in_the_right_number(tmp_path: Path):
    assert counted(1, "column") == "1 column" and counted(2, "column") == "2 columns"
    assert counted(1, "entity", "entities") == "1 entity" and counted(0, "entity", "entities") == "0 entities"
    path = _write(tmp_path / "cols.conll", "Ana\tX\tB-PER\nvive\n")
    with pytest.raises(UserError) as err:
        read_conll(path)
    assert ", line 2: 1 column where the file has 3" in str(err.value)


# -- config keys -----------------------------------------------------------------------------------


def test_a_null_file_path_says_a_file_path_is_needed_at_its_line(tmp_path: Path):
    config = _write(tmp_path / "run.yaml", "name: x\nsource_lang: en\ntarget_lang: es\ndata:\n  source_train: null\n")
    with pytest.raises(UserError) as err:
        load_config(config)
    text = str(err.value)
    assert text == f"{config}, line 5: data.source_train: needs a file path (got null)"
    assert "class" not in text


@pytest.mark.parametrize("key,line", [("target_lang", 3), ("source_lang", 2)])
def test_an_empty_language_code_is_an_error_at_its_line(tmp_path: Path, key: str, line: int):
    values = {"source_lang": "en", "target_lang": "es", key: "''"}
    config = _write(tmp_path / "run.yaml", f"name: x\nsource_lang: {values['source_lang']}\n"
                    f"target_lang: {values['target_lang']}\ndata:\n  source_train: a.conll\n")
    with pytest.raises(UserError) as err:
        load_config(config)
    assert str(err.value).startswith(f"{config}, line {line}: {key}: empty language code")


# -- concner init ----------------------------------------------------------------------------------


def _init_flags(tmp_path: Path, **extra: object) -> list[str]:
    flags = {"--source-train": SAMPLES / "en_train.conll", "--target-lang": "es",
             "--target-unlabeled": SAMPLES / "es_unlabeled.txt", "--target-test": SAMPLES / "es_test.conll",
             "--parallel-file": SAMPLES / "es_train.conll", "--encoder": "tiny",
             "--out": tmp_path / "new-pair.yaml", **extra}
    return [str(x) for kv in flags.items() if kv[1] is not None for x in kv]


def test_init_blames_its_own_encoder_flag_for_an_unloadable_encoder(tmp_path: Path):
    code, _, err = run_cli("init", *_init_flags(tmp_path, **{"--encoder": "no-such/model"}))
    assert code == 2
    assert "--encoder: model 'no-such/model'" in err and "aligner_model" not in err
    assert err.count("error:") == 1 and not (tmp_path / "new-pair.yaml").exists()


def test_init_without_a_terminal_says_which_encoders_are_allowed(tmp_path: Path):
    code, _, err = run_cli("init", *_init_flags(tmp_path, **{"--encoder": None}))
    assert code == 2 and "--encoder is required when stdin is not a terminal" in err
    assert "a number above" not in err and "tiny" in err and "package:MODULE/folder" in err


def _broken_bioes_parallel(tmp_path: Path) -> tuple[Path, int]:
    """es_train.conll in BIOES (single-word entities as S-), one B- left open: (file, line of that B-)."""
    out, line, bad_line = [], 0, None
    for block in (SAMPLES / "es_train.conll").read_text(encoding="utf-8").strip().split("\n\n"):
        rows = []
        for row in block.split("\n"):
            line += 1
            word, tag = row.rsplit("\t", 1)
            if tag.startswith("B-"):
                tag = "S-" + tag[2:]
                if bad_line is None and line > 20:
                    tag, bad_line = "B-" + tag[2:], line
            elif tag.startswith("I-"):
                tag = "O"
            rows.append(f"{word}\t{tag}")
        out.append("\n".join(rows))
        line += 1  # the blank line
    path = _write(tmp_path / "es_bioes.conll", "\n\n".join(out) + "\n")
    return path, bad_line


def test_init_rejects_a_parallel_file_with_invalid_bioes_naming_its_line_and_the_flag(tmp_path: Path):
    parallel, bad_line = _broken_bioes_parallel(tmp_path)
    code, _, err = run_cli("init", *_init_flags(tmp_path, **{"--parallel-file": parallel}))
    assert code == 2
    assert f"{parallel}, line {bad_line}:" in err and "--repair-tags" in err
    code, out, err = run_cli("init", *_init_flags(tmp_path, **{"--parallel-file": parallel}), "--repair-tags")
    assert code == 0, err
    assert "projection is scored against its tags" in out  # read as CoNLL, its tags kept


def test_init_ok_lines_name_each_files_role(tmp_path: Path):
    code, out, err = run_cli("init", *_init_flags(tmp_path))
    assert code == 0, err
    ok = {line.split()[1] + " " + line.split()[2]: line for line in out.splitlines() if line.startswith("  ok  ")}
    assert set(ok) == {"source train", "target unlabeled", "target test", "parallel file"}
    assert "en_train.conll" in ok["source train"] and "es_train.conll" in ok["parallel file"]


# -- sweep tables ----------------------------------------------------------------------------------


def _sweep_record() -> dict:
    members = []
    for i, (setting, seed, f1) in enumerate((("train.lr=1e-4", 13, 0.41), ("train.lr=1e-4", 14, 0.43),
                                            ("train.lr=3e-5", 13, 0.38), ("train.lr=3e-5", 14, 0.40))):
        scores = {f"{model}/{split}": {"precision": f1, "recall": f1, "f1": f1}
                  for model in ("teacher", "student") for split in ("target_dev", "target_test")}
        members.append({"index": i, "setting": setting, "seed": seed, "status": "completed",
                        "run_id": f"run-{i}", "scores": scores})
    return {"sweep_id": "sweep-20260101-000000-abcd", "status": "completed", "config_file": "run.yaml",
            "grid": {"train.lr": ["1e-4", "3e-5"]}, "seeds": [13, 14], "members": members}


def test_piped_sweep_tables_keep_every_score_name_whole(tmp_path: Path):
    from concner.flows.views import show_sweep
    from concner.tasks.engine.store import ArtifactStore

    buffer = io.StringIO()
    console = Console(file=buffer, width=80)  # not a terminal: a pipe or a log
    show_sweep(console, _sweep_record(), ArtifactStore(tmp_path / "store"))
    text = buffer.getvalue()
    assert "…" not in text
    for name in ("student/target_dev", "student/target_test", "teacher/target_dev", "teacher/target_test"):
        assert name in text


def test_one_long_sentence_is_reported_as_one_sentence_at_its_line(tmp_path: Path):
    """A single 5,000-token sentence split into pieces is one sentence, not one per extra piece."""
    from concner.tasks.engine.config_loading import config_from_dict
    from concner.tasks.engine.preflight import check_inputs

    rows = ["Ana B-PER", "vive O", ""] * 2 + [f"w{i} O" for i in range(5000)] + [""]
    source = _write(tmp_path / "en.conll", "\n".join(rows) + "\n")
    parallel = _write(tmp_path / "es.txt", "Ana vive\nAna vive\nmuchas palabras\n")
    config = config_from_dict({"target_lang": "es", "data": {"source_train": str(source)},
                               "ingest": {"long_sentences": "split", "max_tokens": 64},
                               "translate": {"backend": "parallel", "parallel_file": str(parallel)}},
                              base_dir=tmp_path)
    with pytest.raises(UserError) as err:
        check_inputs(config)
    text = str(err.value)
    assert text.startswith(f"{source}, line 7:") and "a sentence of this file is longer" in text, text
    assert "5000 tokens" in text and "79 sentences" not in text
