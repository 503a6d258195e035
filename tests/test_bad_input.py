"""Every kind of bad input ends with one clean message: exit code 2, the file and line where there
is one, no traceback, nothing under the store's stages/ folder.

Each case builds a small project (a dozen sample sentences per file, configs/demo.yaml's settings
with backend=parallel), breaks one thing and runs `concner run CONFIG --until translate`. The
preflight check (tasks/engine/preflight.py) stops these before Prefect starts a flow, so each case takes
well under a second. Cases that are warnings, not errors, call check_inputs directly (at the end).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from concner.tasks.engine.config_loading import load_config
from concner.tasks.text.conll import MAX_TOKEN_CHARS
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.preflight import check_inputs
from tests.conftest import SAMPLES

N_TRAIN, N_DEV = 12, 6


def _blocks(name: str, n: int) -> list[str]:
    return (SAMPLES / name).read_text(encoding="utf-8").strip().split("\n\n")[:n]


def _conll(blocks: list[str]) -> str:
    return "\n\n".join(blocks) + "\n"


@dataclass
class Project:
    """A small valid project in `root`; a case breaks one thing in it."""

    root: Path
    config: dict = field(default_factory=dict)
    config_text: str | None = None  # written verbatim instead of `config` when set
    config_bytes: bytes | None = None  # or these bytes
    config_name: str = "run.yaml"  # the config path given to the CLI
    args: list[str] = field(default_factory=list)

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def text(self) -> str:
        """The config file's text (what a line number refers to)."""
        return self.config_text if self.config_text is not None else yaml.safe_dump(self.config, sort_keys=False)

    def line_of(self, needle: str, name: str = "run.yaml") -> int:
        """1-based line of the first line of file `name` that contains `needle`."""
        text = self.text() if name == "run.yaml" else (self.root / name).read_text(encoding="utf-8", errors="replace")
        return next(i for i, line in enumerate(text.split("\n"), start=1) if needle in line)


def make_project(root: Path) -> Project:
    p = Project(root)
    p.write("en_train.conll", _conll(_blocks("en_train.conll", N_TRAIN)))
    p.write("es_train.conll", _conll(_blocks("es_train.conll", N_TRAIN)))  # the translations, sentence-aligned
    p.write("en_dev.conll", _conll(_blocks("en_dev.conll", N_DEV)))
    p.write("es_dev.conll", _conll(_blocks("es_dev.conll", N_DEV)))
    p.write("es_test.conll", _conll(_blocks("es_test.conll", N_DEV)))
    unlabeled = (SAMPLES / "es_unlabeled.txt").read_text(encoding="utf-8").split("\n")[:10]
    p.write("es_unlabeled.txt", "\n".join(unlabeled) + "\n")
    p.config = {
        "name": "bad-input", "source_lang": "en", "target_lang": "es", "seed": 13,
        "data": {"source_train": "en_train.conll", "source_dev": "en_dev.conll", "target_unlabeled": "es_unlabeled.txt",
                 "target_dev": "es_dev.conll", "target_test": "es_test.conll"},
        "ingest": {"max_tokens": 64},
        "translate": {"backend": "parallel", "parallel_file": "es_train.conll"},
        "project": {"aligner_model": "tiny", "layer": 2},
        "train": {"encoder": "tiny", "epochs": 1},
    }
    return p


@dataclass(frozen=True)
class Expect:
    fragment: str  # the distinctive part of the message: must occur exactly once
    file: str | None = None  # file name the message must name
    line: int | None = None  # and the line, as "FILE, line N:"


CASES: dict[str, tuple[str, Callable[[Project], Expect]]] = {}


def case(kind: str):
    def register(fn: Callable[[Project], Expect]) -> Callable[[Project], Expect]:
        CASES[fn.__name__] = (kind, fn)
        return fn
    return register


def _replace_line(p: Project, name: str, number: int, new: str) -> None:
    lines = (p.root / name).read_text(encoding="utf-8").split("\n")
    lines[number - 1] = new
    p.write(name, "\n".join(lines))


def _first_tag_line(p: Project, name: str, sentence: int = 1) -> int:
    """Line of the first token of the `sentence`-th sentence (1-based) of a CoNLL file."""
    lines = (p.root / name).read_text(encoding="utf-8").split("\n")
    starts = [i + 1 for i, line in enumerate(lines) if line.strip() and (i == 0 or not lines[i - 1].strip())]
    return starts[sentence - 1]


# ---------------------------------------------------------------------------------------- config file

@case("config")
def config_file_missing(p):
    p.config_name = "nope.yaml"
    return Expect("config file not found", "nope.yaml")


@case("config")
def config_is_a_folder(p):
    (p.root / "cfgdir").mkdir()
    p.config_name = "cfgdir"
    return Expect("is a folder, expected a config file", "cfgdir")


@case("config")
def bad_yaml(p):
    p.config_text = "name: x\ndata:\n  source_train: en_train.conll\n target_dev: es_dev.conll\ntarget_lang: es\n"
    return Expect("not valid YAML", "run.yaml", 4)  # the badly indented key


@case("config")
def config_not_a_mapping(p):
    p.config_text = "- name\n- data\n"
    return Expect("expected a YAML mapping", "run.yaml")


@case("config")
def config_not_utf8(p):
    p.config_bytes = p.text().replace("name: bad-input", "name: caf\u00e9").encode("latin-1")
    return Expect("not UTF-8 text", "run.yaml", 1)


@case("config")
def unknown_key(p):
    p.config["train"]["epochz"] = 2
    return Expect("train.epochz: unknown key", "run.yaml", p.line_of("epochz"))


@case("config")
def wrong_type(p):
    p.config["train"]["epochs"] = "many"
    return Expect("train.epochs: Input should be a valid integer", "run.yaml", p.line_of("epochs: many"))


@case("config")
def value_out_of_range(p):
    p.config["ingest"]["sample_size"] = 0
    return Expect("ingest.sample_size: Input should be greater than or equal to 1", "run.yaml",
                  p.line_of("sample_size"))


@case("config")
def required_key_missing(p):
    del p.config["data"]["source_train"]
    return Expect("data.source_train: required key is missing", "run.yaml")


@case("config")
def duplicate_key(p):
    base = p.text()
    p.config_text = base + "train:\n  epochs: 2\n"
    return Expect("train: key given twice", "run.yaml", base.count("\n") + 1)


@case("config")
def target_lang_is_source_lang(p):
    p.config["target_lang"] = "en"
    return Expect("'en' is the same language as source_lang", "run.yaml", p.line_of("target_lang"))


@case("config")
def a_target_is_the_source_lang(p):
    p.config.pop("target_lang")
    for key in ("target_unlabeled", "target_dev", "target_test"):
        p.config["data"].pop(key)
    p.config["targets"] = [{"lang": "es"}, {"lang": "en"}]
    return Expect("targets.1.lang: 'en' is the same language as source_lang", "run.yaml", p.line_of("- lang: en"))


@case("config")
def entity_types_given_as_tags(p):
    p.config["ingest"]["entity_types"] = ["B-PER", "ORG"]
    return Expect("list entity types, not tags", "run.yaml", p.line_of("entity_types"))


@case("config")
def parallel_backend_without_file(p):
    p.config["translate"].pop("parallel_file")
    return Expect("translate.backend=parallel needs translate.parallel_file")


# ---------------------------------------------------------------------------------------- --set

@case("--set")
def set_value_not_yaml(p):
    p.args = ["--set", "train.epochs=[1,"]
    return Expect("is not valid YAML", "train.epochs=[1,")


@case("--set")
def set_wrong_type(p):
    p.args = ["--set", "train.epochs=abc"]
    return Expect("--set train.epochs=abc: train.epochs: Input should be a valid integer")


@case("--set")
def set_unknown_key(p):
    p.args = ["--set", "ingest.no_such_key=1"]
    return Expect("--set ingest.no_such_key=1: ingest.no_such_key: unknown key")


@case("--set")
def set_without_equals(p):
    p.args = ["--set", "train.epochs"]
    return Expect("expected KEY=VALUE")


@case("--set")
def set_below_a_value(p):
    p.args = ["--set", "train.epochs.x=1"]
    return Expect("'epochs' is not a section")


# ---------------------------------------------------------------------------------------- data files: paths

@case("data path")
def data_file_missing(p):
    p.config["data"]["source_dev"] = "nope.conll"
    return Expect("file not found", "nope.conll")


@case("data path")
def folder_as_data_file(p):
    (p.root / "adir").mkdir()
    p.config["data"]["target_test"] = "adir"
    return Expect("is a folder, expected a file", "adir")


@case("data path")
def path_below_a_file(p):
    p.config["data"]["target_dev"] = "en_dev.conll/es_dev.conll"
    return Expect("is a file, not a folder", "es_dev.conll")


@case("data path")
def broken_symlink(p):
    (p.root / "link.conll").symlink_to(p.root / "gone.conll")
    p.config["data"]["source_dev"] = "link.conll"
    return Expect("file not found", "gone.conll")  # the config resolves the link: its target is named


@case("data path")
def unreadable_file(p):
    """A file whose read fails (OSError EIO; chmod 000 does not stop root, this does)."""
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs Linux /proc")
    p.config["data"]["source_dev"] = "/proc/self/mem"
    return Expect("cannot be read: Input/output error", "mem")


@case("data path")
def permission_denied(p):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    p.write("locked.conll", "a\tO\n").chmod(0)
    p.config["data"]["source_dev"] = "locked.conll"
    return Expect("Permission denied", "locked.conll")


@case("data path")
def parallel_file_missing(p):
    p.config["translate"]["parallel_file"] = "nope.txt"
    return Expect("file not found (translate.parallel_file)", "nope.txt")


@case("data path")
def store_is_a_file(p):
    p.write("store-file", "x")
    p.args = ["--store", str(p.root / "store-file")]
    return Expect("is a file, not a folder; give another --store", "store-file")


# ---------------------------------------------------------------------------------------- data files: content

@case("data content")
def empty_file(p):
    p.write("en_dev.conll", "\n\n  \n")
    return Expect("file is empty", "en_dev.conll")


@case("data content")
def non_utf8_file(p):
    text = (p.root / "es_test.conll").read_text(encoding="utf-8")
    p.write("es_test.conll", text.replace("\n", "\nEspa\u00f1a\tB-LOC\n", 1).encode("latin-1", errors="replace"))
    return Expect("not UTF-8 text", "es_test.conll", 2)


@case("data content")
def non_utf8_unlabeled_text(p):
    p.write("es_unlabeled.txt", "Una frase .\nOtra frase .\nEspa\u00f1a gana .\n".encode("latin-1"))
    return Expect("not UTF-8 text", "es_unlabeled.txt", 3)


@case("data content")
def bad_tag(p):
    line = _first_tag_line(p, "en_dev.conll", 2)
    _replace_line(p, "en_dev.conll", line, "Word\tPER")
    return Expect("unknown tag 'PER'", "en_dev.conll", line)


@case("data content")
def invalid_bioes(p):
    p.write("es_dev.conll", "Ana\tS-PER\nvive\tO\n\nLa\tB-ORG\nONU\tI-ORG\nhabla\tO\n")
    return Expect("B-ORG is never closed by E-ORG", "es_dev.conll", 4)


@case("data content")
def wrong_column_count(p):
    line = _first_tag_line(p, "en_train.conll", 3) + 1
    _replace_line(p, "en_train.conll", line, "two\textra\tO")
    return Expect("3 columns where the file has 2", "en_train.conll", line)


@case("data content")
def empty_column(p):
    p.write("en_dev.conll", "John\t\tB-PER\nruns\tNN\tO\n")
    return Expect("empty column", "en_dev.conll", 1)


@case("data content")
def one_column_labeled_file(p):
    p.write("es_test.conll", "Ana\nvive\n\nAquí\n")
    return Expect("one column only", "es_test.conll", 1)


@case("data content")
def over_long_sentence(p):
    p.write("en_dev.conll", "a\tO\n\n" + "".join(f"w{i}\tO\n" for i in range(65)))
    return Expect("65 tokens, more than the limit of 64", "en_dev.conll", 3)


@case("data content")
def over_long_token(p):
    line = _first_tag_line(p, "en_train.conll", 2)
    _replace_line(p, "en_train.conll", line, "x" * 1_000_000 + "\tO")
    return Expect("a token of 1,000,000 characters", "en_train.conll", line)


@case("data content")
def over_long_line_of_text(p):
    p.write("es_unlabeled.txt", "Una frase .\n" + "y" * (MAX_TOKEN_CHARS + 1) + "\nOtra .\n")
    return Expect(f"a token of {MAX_TOKEN_CHARS + 1:,} characters", "es_unlabeled.txt", 2)


@case("data content")
def entity_type_outside_entity_types(p):
    p.config["ingest"]["entity_types"] = ["PER", "ORG", "LOC", "MISC"]
    line = _first_tag_line(p, "es_test.conll", 3)
    _replace_line(p, "es_test.conll", line, "Foo\tB-FOO")
    return Expect("entity type 'FOO' (data.target_test) is not one of ingest.entity_types", "es_test.conll", line)


@case("data content")
def sample_too_small_for_the_types(p):
    p.config["ingest"]["sample_size"] = 1
    return Expect("cannot cover the")


# ---------------------------------------------------------------------------------------- parallel files

@case("parallel")
def parallel_conll_one_sentence_short(p):
    p.write("es_train.conll", _conll(_blocks("es_train.conll", N_TRAIN - 1)))
    return Expect(f"has {N_TRAIN - 1} sentences but the source file", "es_train.conll")


@case("parallel")
def parallel_lines_one_line_short(p):
    p.write("es.txt", "".join(f"Frase número {i} .\n" for i in range(N_TRAIN - 1)))
    p.config["translate"]["parallel_file"] = "es.txt"
    return Expect(f"has {N_TRAIN - 1} lines but the source file", "es.txt")


@case("parallel")
def parallel_lines_split_by_unicode_separator(p):
    """11 lines, one holding a \\u2028: str.splitlines() made that 12 and the count check passed."""
    lines = [f"Frase número {i} ." for i in range(N_TRAIN - 1)]
    lines[4] = "Frase\u2028partida ."
    p.write("es.txt", "\n".join(lines) + "\n")
    p.config["translate"]["parallel_file"] = "es.txt"
    return Expect(f"has {N_TRAIN - 1} lines but the source file", "es.txt")


@case("parallel")
def reference_file_one_line_long(p):
    p.write("ref.txt", "".join(f"Frase número {i} .\n" for i in range(N_TRAIN + 1)))
    p.config["translate"]["reference_file"] = "ref.txt"
    return Expect(f"has {N_TRAIN + 1} lines but the source file", "ref.txt")


# ---------------------------------------------------------------------------------------- runner

def run_case(cli, p: Project, store: Path) -> tuple[int, str, str]:
    config = p.root / p.config_name
    if p.config_bytes is not None:
        config.write_bytes(p.config_bytes)
    elif p.config_name == "run.yaml":
        config.write_text(p.text(), encoding="utf-8")
    args = list(p.args)
    if "--store" not in args:
        args += ["--store", str(store)]
    return cli("run", config, "--until", "translate", *args)


def stage_files(store: Path) -> list[Path]:
    return [f for f in (store / "stages").rglob("*")] if (store / "stages").is_dir() else []


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bad_input_ends_in_one_clean_message(cli, tmp_path, name):
    kind, setup = CASES[name]
    p = make_project(tmp_path)
    expect = setup(p)
    store = tmp_path / "store"
    code, out, err = run_case(cli, p, store)
    both = out + err
    assert "Traceback" not in both, both[-3000:]
    assert code == 2, f"exit {code}: {both[-2000:]}"
    assert err.count("error:") == 1 and "error:" not in out, err
    assert both.count(expect.fragment) == 1, f"{expect.fragment!r} not once in:\n{err}"
    message = err[err.index("error:"):]
    if expect.file:
        assert expect.file in message, message
    if expect.line is not None:
        assert re.search(rf"{re.escape(expect.file or '')}[^\s,]*, line {expect.line}:", message), message
    assert stage_files(store) == []


def test_the_unbroken_project_passes(cli, tmp_path):
    """The base of every case is valid: any error above comes from what the case broke."""
    p = make_project(tmp_path)
    (tmp_path / "run.yaml").write_text(p.text(), encoding="utf-8")
    code, out, err = cli("run", tmp_path / "run.yaml", "--dry-run", "--store", tmp_path / "store")
    assert code == 0, err
    assert "error:" not in err


# ---------------------------------------------------------------------------------------- warnings

def _config(p: Project):
    (p.root / "run.yaml").write_text(p.text(), encoding="utf-8")
    return load_config(p.root / "run.yaml")


def test_entity_type_in_a_test_set_but_not_in_training_is_a_warning(tmp_path):
    p = make_project(tmp_path)
    line = _first_tag_line(p, "es_test.conll", 2)
    _replace_line(p, "es_test.conll", line, "Foo\tB-FOO")
    warnings = check_inputs(_config(p))
    [warning] = [w for w in warnings if "FOO" in w]
    assert warning.startswith("entity type FOO: 1 entity in data.target_test")
    assert f"es_test.conll, first at line {line}" in warning and "en_train.conll" in warning
    assert "none in data.source_train" in warning and "ingest.entity_types" in warning


def test_entity_type_only_in_training_is_a_warning(tmp_path):
    p = make_project(tmp_path)
    # MISC only in source_train: drop it from every other labeled file
    for name in ("en_dev.conll", "es_dev.conll", "es_test.conll"):
        text = (p.root / name).read_text(encoding="utf-8")
        p.write(name, re.sub(r"\t[BI]-MISC$", "\tO", text, flags=re.M))
    warnings = check_inputs(_config(p))
    [warning] = [w for w in warnings if w.startswith("entity type MISC")]
    misc = sum(line.endswith("B-MISC") for line in (p.root / "en_train.conll").read_text().split("\n"))
    assert f"entity type MISC: {misc} entities in data.source_train" in warning
    for name in ("en_dev.conll", "es_dev.conll", "es_test.conll"):
        assert name in warning
    assert "no labeled split scores it" in warning


def test_entity_types_key_turns_the_mismatch_into_an_error(tmp_path):
    p = make_project(tmp_path)
    p.config["ingest"]["entity_types"] = ["PER", "ORG", "LOC"]  # no MISC
    with pytest.raises(UserError, match=r"en_train.conll, line \d+: entity type 'MISC' \(data.source_train\)"):
        check_inputs(_config(p))


def test_sample_size_above_the_corpus_is_a_warning(tmp_path):
    p = make_project(tmp_path)
    p.config["ingest"]["sample_size"] = 500
    warnings = check_inputs(_config(p))
    train = p.root / "en_train.conll"
    assert f"ingest.sample_size 500 >= {N_TRAIN} sentences in {train}: using all {N_TRAIN}" in warnings


def test_iob2_repair_is_a_warning_with_count_and_first_line(tmp_path):
    p = make_project(tmp_path)
    first = _first_tag_line(p, "en_dev.conll", 2)
    _replace_line(p, "en_dev.conll", first, "Word\tI-LOC")
    later = _first_tag_line(p, "en_dev.conll", 4)
    _replace_line(p, "en_dev.conll", later, "Word\tI-PER")
    warnings = check_inputs(_config(p))
    [warning] = [w for w in warnings if "en_dev.conll" in w and "I- tag" in w]
    assert warning.startswith(f"{p.root / 'en_dev.conll'}, line {first}: 2 I- tags continue no entity")
    assert "IOB2" in warning and "start of an entity" in warning


def test_warnings_are_printed_once_before_the_run(cli, tmp_path):
    p = make_project(tmp_path)
    p.config["ingest"]["sample_size"] = 500
    (tmp_path / "run.yaml").write_text(p.text(), encoding="utf-8")
    code, out, err = cli("run", tmp_path / "run.yaml", "--dry-run", "--store", tmp_path / "store")
    assert code == 0, err
    assert err.count("warning: ingest.sample_size 500 >=") == 1


def test_a_multi_target_config_checks_every_target(tmp_path):
    p = make_project(tmp_path)
    p.config.pop("target_lang")
    for key in ("target_unlabeled", "target_dev", "target_test"):
        p.config["data"].pop(key)
    p.write("de_test.conll", "Ana\tB-PER\n\nBerlin\tB-LOC\n\nx\tPER\n")
    p.config["targets"] = [{"lang": "es", "data": {"target_test": "es_test.conll"}},
                           {"lang": "de", "data": {"target_test": "de_test.conll"}}]
    with pytest.raises(UserError, match=r"de_test.conll, line 5: unknown tag 'PER'"):
        check_inputs(_config(p))
