"""CoNLL reading on every real corpus, round trips, and scheme conversion."""

from __future__ import annotations

from pathlib import Path

import pytest

from concner.tasks.text.conll import (
    MAX_TOKEN_CHARS,
    check_input_file,
    read_aligned_lines,
    read_conll,
    read_unlabeled,
    write_conll,
)
from concner.tasks.engine.errors import InputFileError
from concner.tasks.text.tags import bioes_to_iob2, iob_to_iob2, spans
from tests.conftest import shared

# Sentence counts from ../shared/data/README.md
REAL_FILES = {
    "conll2003_en/train.txt": 14041,
    "conll2003_en/dev.txt": 3250,
    "conll2002_es/test.txt": 1523,
    "parallel_en_es/en.txt": 8382,
    "parallel_en_es/es.txt": 8382,
    **{f"wikiann/{lang}/{split}.txt": n for lang in ("en", "de", "fr") for split, n in
       (("train", 20000), ("dev", 10000), ("test", 10000))},
    "masakhaner2/hau/train.txt": 5716, "masakhaner2/hau/dev.txt": 816, "masakhaner2/hau/test.txt": 1633,
    "masakhaner2/swa/train.txt": 6593, "masakhaner2/swa/dev.txt": 942, "masakhaner2/swa/test.txt": 1883,
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_reads_with_readme_count_and_round_trips(name, tmp_path):
    path = shared(*name.split("/"))
    sentences, report = read_conll(path, repair_tags=True)
    assert len(sentences) == REAL_FILES[name]
    assert all(len(s.tokens) == len(s.tags) > 0 for s in sentences)
    assert all(t == "O" or t[:2] in ("B-", "I-") for s in sentences for t in s.tags)
    if name.startswith("wikiann"):
        assert report.lang_prefix and not any(t.startswith(f"{name.split('/')[1]}:") for t in sentences[0].tokens)
    if name.startswith("parallel"):
        assert report.columns == 3 and all(len(s.extra) == 1 for s in sentences)
    out = tmp_path / "round.conll"
    write_conll(sentences, out)
    again, _ = read_conll(out)
    assert [(s.tokens, s.tags, s.extra) for s in again] == [(s.tokens, s.tags, s.extra) for s in sentences]


@pytest.mark.realdata
def test_bioes_and_iob2_files_of_same_corpus_give_same_entities(tmp_path):
    """parallel_en_es is BIOES; rewritten by hand as IOB2 it must give the same entities."""
    path = shared("parallel_en_es", "es.txt")
    bioes, report = read_conll(path, repair_tags=True)
    assert report.scheme == "BIOES"
    # an independent IOB2 rendering straight from the raw BIOES columns: S->B, E->I
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        cols = raw.split("\t")
        if len(cols) == 3:
            tag = cols[2]
            tag = {"S": "B", "E": "I"}.get(tag[0], tag[0]) + tag[1:] if tag != "O" else tag
            lines.append(f"{cols[0]}\t{tag}")
        elif not raw.strip():
            lines.append("")
    iob2_file = tmp_path / "es.iob2"
    iob2_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    iob2, report2 = read_conll(iob2_file)
    assert report2.scheme == "IOB2" and len(iob2) == len(bioes)
    # compare where the BIOES is valid; the few broken sequences have no single IOB2 reading
    raw_tags = [[row.split("\t")[2] for row in block.splitlines()] for block in _blocks(path)]
    valid = [i for i, tags in enumerate(raw_tags) if _strict_ok(tags)]
    assert len(valid) > 8000
    assert all(spans(iob2[i].tags) == spans(bioes[i].tags) for i in valid)
    assert sum(len(bioes[i].entities) for i in valid) > 15000


def _blocks(path: Path) -> list[str]:
    text = "\n".join(l for l in path.read_text(encoding="utf-8").splitlines() if not l.startswith("-DOCSTART-"))
    return [b for b in text.split("\n\n") if b.strip()]


def _strict_ok(tags: list[str]) -> bool:
    try:
        bioes_to_iob2(tags)
        return True
    except ValueError:
        return False


def test_iob1_converted_to_iob2():
    assert iob_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]


def test_bioes_converted_to_iob2():
    assert bioes_to_iob2(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-ORG", "E-ORG"]) == [
        "B-PER", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG", "I-ORG"]


def write(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_bom_crlf_space_separated_docstart(tmp_path):
    f = write(tmp_path / "a.txt", "\ufeff-DOCSTART- O\r\n\r\nJohn B-PER\r\nSmith I-PER\r\nwins O\r\n\r\nParis B-LOC\r\n")
    sentences, report = read_conll(f)
    assert [s.tokens for s in sentences] == [["John", "Smith", "wins"], ["Paris"]]
    assert sentences[0].tags == ["B-PER", "I-PER", "O"] and report.separator == "space"
    assert sentences[1].line == 7


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        ("a\tO\nb\tB-\n", 2, "unknown tag 'B-'"),
        ("a\tO\n\nb\tX-PER\n", 3, "unknown tag 'X-PER'"),
        ("a\tPER\n", 1, "unknown tag 'PER'"),
        ("a\tO\nb\tc\tO\n", 2, "3 columns where the file has 2"),
        ("a\tS-PER\n\nb\tB-PER\nc\tO\n", 3, "never closed"),
        ("a\tS-PER\n\nb\tO\nc\tE-LOC\n", 4, "does not continue"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, content, line, fragment):
    f = write(tmp_path / "bad.conll", content)
    with pytest.raises(InputFileError) as info:
        read_conll(f)
    assert info.value.line == line and fragment in info.value.problem
    assert str(info.value).startswith(f"{f}, line {line}:")


def test_non_utf8_reports_line(tmp_path):
    f = tmp_path / "latin1.conll"
    f.write_bytes("a\tO\n\nEspa\u00f1a\tB-LOC\n".encode("latin-1"))
    with pytest.raises(InputFileError, match=r"line 3: not UTF-8"):
        read_conll(f)


def test_empty_and_missing(tmp_path):
    with pytest.raises(InputFileError, match="empty"):
        read_conll(write(tmp_path / "e.conll", "\n\n  \n"))
    with pytest.raises(InputFileError, match="file not found"):
        read_conll(tmp_path / "nope.conll")


def test_long_sentence_rejected_or_split(tmp_path):
    f = write(tmp_path / "long.conll", "".join(f"w{i}\t{'B-PER' if i == 2 else 'I-PER' if i == 3 else 'O'}\n" for i in range(7)))
    with pytest.raises(InputFileError, match="7 tokens, more than the limit of 3"):
        read_conll(f, max_tokens=3)
    pieces, report = read_conll(f, max_tokens=3, long_sentences="split")
    assert [len(p.tokens) for p in pieces] == [3, 3, 1] and report.sentences_split == 2
    assert pieces[0].tags[2] == "B-PER" and pieces[1].tags[0] == "B-PER"  # the cut entity restarts


def test_unlabeled_lines_and_conll(tmp_path):
    lines = write(tmp_path / "u.txt", "El Real Madrid ganó, ayer.\n\n¿Dónde está Juan?\n")
    sentences, report = read_unlabeled(lines)
    assert report.separator == "lines" and len(sentences) == 2
    assert sentences[0].tokens[-1] == "." and sentences[1].tokens[0] == "¿"
    conll = write(tmp_path / "u.conll", "El\tO\nReal\tB-ORG\n\nJuan\tB-PER\n")
    sentences, report = read_unlabeled(conll)
    assert [s.tokens for s in sentences] == [["El", "Real"], ["Juan"]] and report.tags_ignored
    assert sentences[0].tags is None


# --------------------------------------------------------------------------- IOB1 / IOB2 repairs

IOB2_WITH_DANGLING_I = "John\tB-PER\nlives\tO\nin\tO\nMadrid\tI-LOC\n\nParis\tI-LOC\nand\tO\nRome\tB-LOC\n"
IOB1 = "John\tI-PER\nlives\tO\nin\tI-LOC\n\nParis\tI-LOC\nRome\tB-LOC\nand\tO\nAna\tI-PER\n"


def test_iob2_file_counts_an_i_tag_that_continues_nothing(tmp_path):
    sentences, report = read_conll(write(tmp_path / "iob2.conll", IOB2_WITH_DANGLING_I))
    assert report.scheme == "IOB2"
    assert report.tags_repaired == 2 and report.first_repair_line == 4
    # read as conlleval reads it: the dangling I-LOC starts an entity
    assert sentences[0].tags == ["B-PER", "O", "O", "B-LOC"] and sentences[1].tags == ["B-LOC", "O", "B-LOC"]


def test_iob1_file_reads_without_repairs(tmp_path):
    sentences, report = read_conll(write(tmp_path / "iob1.conll", IOB1))
    assert report.scheme == "IOB1" and report.tags_repaired == 0 and report.first_repair_line is None
    assert sentences[0].tags == ["B-PER", "O", "B-LOC"]
    assert sentences[1].tags == ["B-LOC", "B-LOC", "O", "B-PER"]


def test_valid_iob2_file_has_no_repairs(tmp_path):
    _, report = read_conll(write(tmp_path / "ok.conll", "New\tB-LOC\nYork\tI-LOC\nis\tO\n\nAna\tB-PER\n"))
    assert report.scheme == "IOB2" and report.tags_repaired == 0


# --------------------------------------------------------------------------- lines, tokens and unreadable paths


def test_only_newlines_end_lines(tmp_path):
    """\u2028, \x85, \x0c inside a token do not break the line (str.splitlines would)."""
    f = write(tmp_path / "u.conll", "a\u2028b\tB-PER\nc\x85d\tO\n\nd\x0ce\tB-LOC\n")
    sentences, _ = read_conll(f)
    assert [s.tokens for s in sentences] == [["a\u2028b", "c\x85d"], ["d\x0ce"]]
    assert sentences[1].line == 4


def test_over_long_token_is_rejected_at_its_line(tmp_path):
    f = write(tmp_path / "long.conll", "a\tO\n\n" + "x" * (MAX_TOKEN_CHARS + 1) + "\tO\n")
    with pytest.raises(InputFileError, match="a token of 1,001 characters") as info:
        read_conll(f)
    assert info.value.line == 3 and len(str(info.value)) < 400
    write(tmp_path / "ok.conll", "a\tO\n\n" + "x" * MAX_TOKEN_CHARS + "\tO\n")
    assert len(read_conll(tmp_path / "ok.conll")[0]) == 2
    lines = write(tmp_path / "u.txt", "Una frase .\nOtra frase más .\n" + "y" * 1_000_000 + "\n")
    with pytest.raises(InputFileError, match="line 3: a token of 1,000,000 characters"):
        read_unlabeled(lines)


def test_aligned_lines_keep_empty_lines_and_split_at_newline_only(tmp_path):
    f = write(tmp_path / "es.txt", "José vive en Madrid .\r\n\r\nLa oficina\u2028está aquí .\n")
    sentences, _ = read_aligned_lines(f)
    assert [s.tokens for s in sentences] == [
        ["José", "vive", "en", "Madrid", "."], [], ["La", "oficina", "está", "aquí", "."]]
    assert [s.id for s in sentences] == [0, 1, 2] and [s.line for s in sentences] == [1, 2, 3]
    assert len(read_aligned_lines(write(tmp_path / "no-final-newline.txt", "a\n\nb"))[0]) == 3


@pytest.mark.parametrize("kind, problem", [
    ("folder", "is a folder, expected a file"),
    ("missing", "file not found"),
    ("under_a_file", "is a file, not a folder"),
    ("broken_link", "broken symbolic link"),
])
def test_paths_that_are_no_file(tmp_path, kind, problem):
    path = {"folder": tmp_path, "missing": tmp_path / "nope.conll",
            "under_a_file": write(tmp_path / "f", "a\tO\n") / "x.conll", "broken_link": tmp_path / "link.conll"}[kind]
    if kind == "broken_link":
        path.symlink_to(tmp_path / "gone.conll")
    with pytest.raises(InputFileError, match=problem):
        check_input_file(path, "data.source_train")
    with pytest.raises(InputFileError, match=problem):
        read_conll(path)


def test_read_failure_names_the_file(tmp_path):
    """A file that exists but cannot be read (here /proc/self/mem: EIO even for root; chmod 000 does
    not stop root) gives one InputFileError, not an OSError traceback."""
    mem = Path("/proc/self/mem")
    if not mem.is_file():
        pytest.skip("needs Linux /proc")
    with pytest.raises(InputFileError, match=r"/proc/self/mem: cannot be read: Input/output error"):
        read_conll(mem)
