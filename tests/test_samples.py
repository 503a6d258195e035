"""The project's own synthetic sample corpora in data/samples (written by data/make_samples.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
SCRIPT = REPO / "data" / "make_samples.py"
CONLL_FILES = ["en_train.conll", "en_dev.conll", "es_train.conll", "es_dev.conll", "es_test.conll"]
ALL_FILES = sorted([*CONLL_FILES, "es_unlabeled.txt"])
TYPES = {"PER", "LOC", "ORG", "MISC"}


def _load_script():
    spec = importlib.util.spec_from_file_location("concner_make_samples", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _read_conll(name: str) -> list[list[tuple[str, str]]]:
    text = (SAMPLES / name).read_text(encoding="utf-8")
    sentences = []
    for block in text.split("\n\n"):
        rows = [line.split("\t") for line in block.split("\n") if line]
        if rows:
            assert all(len(row) == 2 for row in rows), f"{name}: expected token<TAB>tag rows"
            sentences.append([(token, tag) for token, tag in rows])
    return sentences


def _read_lines(name: str) -> list[str]:
    return (SAMPLES / name).read_text(encoding="utf-8").splitlines()


def _entity_types(sentence: list[tuple[str, str]]) -> Counter[str]:
    return Counter(tag[2:] for _, tag in sentence if tag.startswith("B-"))


def _text(sentence: list[tuple[str, str]]) -> str:
    return " ".join(token for token, _ in sentence)


def test_regenerating_gives_byte_identical_files(tmp_path):
    written = _load_script().main(tmp_path)
    assert sorted(written) == ALL_FILES
    assert sorted(p.name for p in SAMPLES.iterdir()) == ALL_FILES
    for name in ALL_FILES:
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), f"{name} differs from a fresh run"


def test_sizes_and_folder_size():
    sizes = {name: len(_read_conll(name)) for name in CONLL_FILES}
    sizes["es_unlabeled.txt"] = len(_read_lines("es_unlabeled.txt"))
    assert sizes == {
        "en_train.conll": 300,
        "en_dev.conll": 60,
        "es_train.conll": 300,
        "es_dev.conll": 60,
        "es_test.conll": 150,
        "es_unlabeled.txt": 400,
    }
    assert sum(p.stat().st_size for p in SAMPLES.iterdir()) < 300_000


def test_es_train_is_the_parallel_twin_of_en_train():
    en, es = _read_conll("en_train.conll"), _read_conll("es_train.conll")
    assert len(en) == len(es)
    for i, (en_sentence, es_sentence) in enumerate(zip(en, es)):
        assert _entity_types(en_sentence) == _entity_types(es_sentence), f"sentence {i}: {_text(en_sentence)!r}"
    # A translation, not a copy: most sentences differ, and some are reordered.
    assert sum(_text(a) != _text(b) for a, b in zip(en, es)) > 0.9 * len(en)


@pytest.mark.parametrize("name", CONLL_FILES)
def test_tags_are_valid_iob2(name):
    for i, sentence in enumerate(_read_conll(name)):
        assert 5 <= len(sentence) <= 25, f"{name} sentence {i} has {len(sentence)} tokens"
        previous = "O"
        for token, tag in sentence:
            assert token and " " not in token
            if tag != "O":
                prefix, _, etype = tag.partition("-")
                assert prefix in {"B", "I"} and etype in TYPES, f"{name} sentence {i}: bad tag {tag!r}"
                if prefix == "I":
                    assert previous != "O" and previous[2:] == etype, f"{name} sentence {i}: {tag} after {previous}"
            previous = tag


@pytest.mark.parametrize("name", CONLL_FILES)
def test_every_entity_type_and_multiword_entities_occur(name):
    sentences = _read_conll(name)
    types = sum((_entity_types(s) for s in sentences), Counter())
    assert set(types) == TYPES
    assert any(tag.startswith("I-") for s in sentences for _, tag in s)


def test_adjacent_entities_of_different_types_occur():
    def adjacent(sentence):
        return any(
            a.startswith(("B-", "I-")) and b.startswith("B-") and a[2:] != b[2:]
            for (_, a), (_, b) in zip(sentence, sentence[1:])
        )

    for name in ("en_train.conll", "es_train.conll", "es_test.conll"):
        assert any(adjacent(s) for s in _read_conll(name)), name


def test_spanish_sets_do_not_overlap():
    unlabeled = _read_lines("es_unlabeled.txt")
    train = {_text(s) for s in _read_conll("es_train.conll")}
    dev = {_text(s) for s in _read_conll("es_dev.conll")}
    test = {_text(s) for s in _read_conll("es_test.conll")}
    assert len(set(unlabeled)) == len(unlabeled)
    assert all(line and line == " ".join(line.split()) for line in unlabeled)
    assert not set(unlabeled) & (train | dev | test)
    assert not train & test and not train & dev and not dev & test


def test_test_set_holds_names_never_seen_in_training():
    def mentions(sentences):
        out = set()
        for s in sentences:
            current: list[str] = []
            for token, tag in [*s, ("", "O")]:
                if current and not tag.startswith("I-"):
                    out.add(" ".join(current))
                    current = []
                if tag != "O":
                    current.append(token)
        return out

    train = mentions(_read_conll("es_train.conll"))
    test = mentions(_read_conll("es_test.conll"))
    unseen = test - train
    assert 0.2 * len(test) < len(unseen) < len(test)  # partly disjoint: some seen, many not
