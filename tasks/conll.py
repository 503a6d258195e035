"""CoNLL-style reading and writing.

Reading auto-detects what real corpora vary in: tab or space separation, two or more columns
(token first, tag last, middle columns kept), IOB1/IOB2/BIOES tags (converted to IOB2),
`-DOCSTART-` lines, WikiANN's `lang:` token prefixes, a UTF-8 BOM and CRLF line ends.
Every problem is reported as an InputFileError naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from concner.tasks.corpus import Sentence
from concner.tasks.errors import InputFileError
from concner.tasks.tags import TagError, detect_scheme, to_iob2

_LANG_PREFIX = re.compile(r"^[a-z]{2,3}:(?=.)")
LongPolicy = Literal["reject", "split"]


@dataclass
class _Block:
    line: int  # line of the first token
    rows: list[list[str]]


@dataclass
class ReadReport:
    """What auto-detection decided; stored in the ingest manifest so a user can check it."""

    separator: str
    columns: int
    scheme: str | None
    lang_prefix: bool
    sentences_split: int = 0
    tags_ignored: bool = False
    tags_repaired: int = 0


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.is_dir():
        raise InputFileError(path, "is a folder, expected a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputFileError(path, f"not UTF-8 text (byte 0x{raw[err.start]:02x} cannot be decoded)", line) from None
    lines = text.splitlines()  # handles \n, \r\n and \r alike
    if not any(line.strip() for line in lines):
        raise InputFileError(path, "file is empty (no sentences)")
    return lines


def _split_blocks(path: Path, lines: list[str]) -> tuple[list[_Block], str, int]:
    """Group lines into sentences; detect the separator and column count from the first data line."""
    sep = "\t" if any("\t" in line for line in lines[:1000]) else " "
    blocks: list[_Block] = []
    current: _Block | None = None
    columns = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.split()[0] == "-DOCSTART-":
            if current:
                blocks.append(current)
            current = None
            continue
        cols = line.rstrip("\r\n").split("\t") if sep == "\t" else stripped.split()
        cols = [c.strip() for c in cols]
        if sep == "\t" and cols and cols[-1] == "":
            cols = cols[:-1]  # a trailing tab is formatting, not an empty column
        if not columns:
            columns = len(cols)
        if len(cols) != columns:
            raise InputFileError(path, f"{len(cols)} columns where the file has {columns} ({line.strip()!r})", number)
        if any(not c for c in cols):
            raise InputFileError(path, f"empty column in {line!r}", number)
        if current is None:
            current = _Block(number, [])
        current.rows.append(cols)
    if current:
        blocks.append(current)
    if not blocks:
        raise InputFileError(path, "file is empty (no sentences)")
    return blocks, sep, columns


def _has_lang_prefix(blocks: list[_Block]) -> bool:
    """WikiANN writes every token as `de:Token`; only strip when every token of the file's start has it."""
    sample = [row[0] for b in blocks[:50] for row in b.rows]
    return bool(sample) and all(_LANG_PREFIX.match(tok) for tok in sample)


def _limit_length(sentence: Sentence, max_tokens: int | None, policy: LongPolicy, path: Path) -> list[Sentence]:
    if max_tokens is None or len(sentence.tokens) <= max_tokens:
        return [sentence]
    if policy == "reject":
        raise InputFileError(
            path,
            f"sentence has {len(sentence.tokens)} tokens, more than the limit of {max_tokens} "
            "(raise ingest.max_tokens or set ingest.long_sentences=split)",
            sentence.line,
        )
    pieces = []
    for start in range(0, len(sentence.tokens), max_tokens):
        stop = start + max_tokens
        tags = None
        if sentence.tags is not None:
            tags = sentence.tags[start:stop]
            if tags[0].startswith("I-"):  # an entity cut by the split restarts in the next piece
                tags[0] = "B-" + tags[0][2:]
        pieces.append(
            Sentence(
                id=0,
                tokens=sentence.tokens[start:stop],
                tags=tags,
                extra=[col[start:stop] for col in sentence.extra],
                line=sentence.line + start,
            )
        )
    return pieces


def read_conll(
    path: str | Path,
    *,
    labeled: bool = True,
    max_tokens: int | None = None,
    long_sentences: LongPolicy = "reject",
    repair_tags: bool = False,
) -> tuple[list[Sentence], ReadReport]:
    """Read a CoNLL file. Labeled: the tag is the last column (two or more columns needed).

    `repair_tags` reads invalid BIOES sequences leniently and counts them instead of failing.
    Unlabeled (`labeled=False`): the first column holds tokens; any further columns are ignored
    and reported as `tags_ignored`.
    """
    path = Path(path)
    blocks, sep, columns = _split_blocks(path, _read_lines(path))
    if labeled and columns < 2:
        raise InputFileError(path, "one column only: a labeled file needs a token and a tag column", blocks[0].line)
    prefixed = _has_lang_prefix(blocks)
    scheme = _detect_scheme(path, blocks) if labeled else None
    report = ReadReport("tab" if sep == "\t" else "space", columns, scheme, prefixed, tags_ignored=not labeled and columns > 1)
    sentences: list[Sentence] = []
    for block in blocks:
        tokens = [row[0] for row in block.rows]
        if prefixed:
            tokens = [_LANG_PREFIX.sub("", t) for t in tokens]
        tags = extra = None
        if labeled:
            try:
                tags, repaired = to_iob2([row[-1] for row in block.rows], scheme, repair=repair_tags)  # type: ignore[arg-type]
            except TagError as err:
                hint = " (set ingest.repair_tags=true to read it as conlleval does, counting each repair)"
                raise InputFileError(path, str(err) + hint, block.line + err.index) from None
            report.tags_repaired += repaired
            extra = [[row[c] for row in block.rows] for c in range(1, columns - 1)]
        sentence = Sentence(0, tokens, tags, extra or [], block.line)
        pieces = _limit_length(sentence, max_tokens, long_sentences, path)
        report.sentences_split += len(pieces) - 1
        sentences.extend(pieces)
    for i, s in enumerate(sentences):
        s.id = i
    return sentences, report


def _detect_scheme(path: Path, blocks: list[_Block]) -> str:
    """The file's tag scheme; an unreadable tag is reported at its line."""
    for block in blocks:
        try:
            if detect_scheme([[row[-1] for row in block.rows]]) == "BIOES":
                return "BIOES"
        except TagError as err:
            raise InputFileError(path, str(err), block.line + err.index) from None
    return "IOB"


def looks_like_conll(path: str | Path) -> bool:
    """True for CoNLL (one token per line, blank lines between sentences); False for one sentence per line."""
    lines = [line for line in _read_lines(Path(path))[:2000]]
    data = [line.strip() for line in lines if line.strip()]
    blanks = len(lines) - len(data)
    multiword = sum(1 for line in data if len(line.split()) > 1)
    if blanks == 0:
        return False
    # CoNLL rows have the same small number of columns; sentence lines vary in length.
    widths = {len(line.split()) for line in data[:200]}
    return len(widths) == 1 or multiword < len(data) / 2


def read_unlabeled(
    path: str | Path,
    *,
    fmt: Literal["auto", "conll", "lines"] = "auto",
    max_tokens: int | None = None,
    long_sentences: LongPolicy = "reject",
) -> tuple[list[Sentence], ReadReport]:
    """Unlabeled text: CoNLL tokens (any tag column is ignored) or one sentence per line."""
    path = Path(path)
    if fmt == "conll" or (fmt == "auto" and looks_like_conll(path)):
        return read_conll(path, labeled=False, max_tokens=max_tokens, long_sentences=long_sentences)
    from concner.tasks.wordtok import word_tokenize

    sentences: list[Sentence] = []
    report = ReadReport("lines", 1, None, False)
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        sentence = Sentence(0, word_tokenize(line), None, [], number)
        pieces = _limit_length(sentence, max_tokens, long_sentences, path)
        report.sentences_split += len(pieces) - 1
        sentences.extend(pieces)
    for i, s in enumerate(sentences):
        s.id = i
    return sentences, report


def write_conll(sentences: Sequence[Sentence], path: str | Path) -> None:
    """Tab-separated IOB2 CoNLL (middle columns kept); unlabeled sentences are written as tokens only."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for s in sentences:
            for i, token in enumerate(s.tokens):
                cols = [token] + [col[i] for col in s.extra]
                if s.tags is not None:
                    cols.append(s.tags[i])
                fh.write("\t".join(cols) + "\n")
            fh.write("\n")
