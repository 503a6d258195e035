"""CoNLL-style reading and writing.

Reading auto-detects what real corpora vary in: tab or space separation, two or more columns
(token first, tag last, middle columns kept), IOB1/IOB2/BIOES tags (converted to IOB2),
`-DOCSTART-` lines, WikiANN's `lang:` token prefixes, a UTF-8 BOM and CRLF line ends.
Every problem is reported as an InputFileError naming the file and line.

Lines end at \n, \r\n or \r only: the other characters that Python's str.splitlines() also
breaks at (\x0b, \x0c, \x1c-\x1e, \x85, \u2028, \u2029) occur inside real web text, and
breaking there would shift every later line number and, in a line-aligned file, every pair.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from concner.tasks.text.corpus import Sentence
from concner.tasks.engine.errors import InputFileError
from concner.tasks.text.tags import TagError, dangling_inside, detect_scheme, starts_after_outside, to_iob2

_LANG_PREFIX = re.compile(r"^[a-z]{2,3}:(?=.)")
_LINE_END = re.compile(r"\r\n|\n|\r")

# The longest token a reader accepts, in characters. Real words are far shorter: the longest
# tokens in CoNLL-2003, WikiANN and MasakhaNER are URLs and chemical names of at most a few
# hundred characters. A longer "token" is a file whose separators were lost (a whole sentence
# or document on one line, binary data, a minified blob): reading it would give one token that
# the subword tokenizer cuts into thousands of pieces or truncates away, with no error anywhere.
MAX_TOKEN_CHARS = 1000
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
    sentences_split: int = 0  # pieces added by splitting long sentences (ingest.long_sentences: split)
    long_sentences: int = 0  # sentences longer than max_tokens, however many pieces each became
    first_long: tuple[int, int] | None = None  # (line, tokens) of the first of them
    tags_ignored: bool = False
    tags_repaired: int = 0
    first_repair_line: int | None = None  # where the first repaired tag (IOB2) or sequence (BIOES) is


def check_input_file(path: Path, what: str | None = None) -> None:
    """Raise InputFileError unless `path` is an existing regular file; `what` names the config key."""
    key = f" ({what})" if what else ""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            problem = f"broken symbolic link: it points to {os.readlink(path)}, which does not exist"
        else:
            problem = "file not found"
        raise InputFileError(path, problem + key) from None
    except NotADirectoryError:
        blocker = next((p for p in reversed(path.parents) if p.is_file()), None)
        problem = f"file not found: {blocker} is a file, not a folder" if blocker else "file not found"
        raise InputFileError(path, problem + key) from None
    except OSError as err:
        raise InputFileError(path, f"cannot be opened: {err.strerror or err}{key}") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(path, f"is a folder, expected a file{key}")
    if not stat.S_ISREG(mode):
        raise InputFileError(path, f"is not a regular file (a pipe, socket or device), expected a file{key}")


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, an optional BOM dropped); every failure as an InputFileError."""
    check_input_file(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        problem = f"cannot be read: {err.strerror or err} (check the file's permissions and the disk)"
        raise InputFileError(path, problem) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputFileError(path, f"not UTF-8 text (byte 0x{raw[err.start]:02x} cannot be decoded)", line) from None
    nul = text.find("\x00")
    if nul >= 0:
        # valid UTF-8, yet no text: a NUL would be stored inside a token and reach the tokenizer
        line = len(_LINE_END.split(text[:nul]))
        raise InputFileError(path, "a NUL byte (0x00): binary data, or a UTF-16 file (save it as UTF-8)", line)
    return text


def _read_lines(path: Path) -> list[str]:
    lines = _LINE_END.split(_read_text(path))
    if lines and lines[-1] == "":
        lines.pop()  # the final line end ends the last line; it does not start another
    if not any(line.strip() for line in lines):
        raise InputFileError(path, "file is empty (no sentences)")
    return lines


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and its noun in the right number: "1 column", "2 columns"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _show(text: str, limit: int = 80) -> str:
    """A line quoted for a message, shortened: a broken line can be megabytes long."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def _check_token(path: Path, token: str, line: int) -> None:
    if len(token) > MAX_TOKEN_CHARS:
        raise InputFileError(
            path,
            f"a token of {len(token):,} characters (the limit is {MAX_TOKEN_CHARS:,}; it starts {token[:40]!r}): "
            "are the separators between tokens or lines missing?",
            line,
        )


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
        if cols:
            _check_token(path, cols[0], number)
        if not columns:
            columns = len(cols)
        if len(cols) != columns:
            problem = f"{counted(len(cols), 'column')} where the file has {columns} ({_show(line.strip())})"
            raise InputFileError(path, problem, number)
        if any(not c for c in cols):
            raise InputFileError(path, f"empty column in {_show(line)}", number)
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


def _limit_length(sentence: Sentence, max_tokens: int | None, policy: LongPolicy, path: Path,
                  report: ReadReport) -> list[Sentence]:
    """The sentence, or its pieces of at most `max_tokens` (policy "split", counted in `report`)."""
    if max_tokens is None or len(sentence.tokens) <= max_tokens:
        return [sentence]
    if policy == "reject":
        raise InputFileError(
            path,
            f"sentence has {counted(len(sentence.tokens), 'token')}, more than the limit of {max_tokens} "
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
    report.sentences_split += len(pieces) - 1
    report.long_sentences += 1
    if report.first_long is None:
        report.first_long = (sentence.line, len(sentence.tokens))
    return pieces


def _numbered(sentences: list[Sentence]) -> list[Sentence]:
    """Ids 0.. in file order, after long sentences were split."""
    for i, s in enumerate(sentences):
        s.id = i
    return sentences


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
    In an IOB2 file (one where B- starts entities after O), an I-X that continues no X entity is
    always read as conlleval does (it starts an entity) and counted in `tags_repaired`; in an IOB1
    file that is how entities start, so nothing is counted there.
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
            raw_tags = [row[-1] for row in block.rows]
            try:
                tags, repaired = to_iob2(raw_tags, scheme, repair=repair_tags)  # type: ignore[arg-type]
            except TagError as err:
                hint = " (set ingest.repair_tags=true to read it as conlleval does, counting each repair)"
                line = block.line + err.index
                stray = _first_bioes_tag(blocks) if scheme == "BIOES" else None
                if stray is not None and stray[0] > line:
                    # the tags before the first E-/S- tag read as IOB: that tag is the odd one out
                    problem = (f"tag {stray[1]!r} is BIOES (E-/S-), but the tags before it are IOB (line {line}: "
                               f"{err}): the file mixes tag schemes; write its tags in one scheme")
                    raise InputFileError(path, problem + hint, stray[0]) from None
                raise InputFileError(path, str(err) + hint, line) from None
            first = block.line if repaired else None
            if scheme == "IOB2":
                dangling = dangling_inside(raw_tags)
                repaired, first = len(dangling), (block.line + dangling[0] if dangling else None)
            report.tags_repaired += repaired
            if report.first_repair_line is None:
                report.first_repair_line = first
            extra = [[row[c] for row in block.rows] for c in range(1, columns - 1)]
        sentence = Sentence(0, tokens, tags, extra or [], block.line)
        sentences.extend(_limit_length(sentence, max_tokens, long_sentences, path, report))
    return _numbered(sentences), report


def _first_bioes_tag(blocks: list[_Block]) -> tuple[int, str] | None:
    """(line, tag) of the file's first E-/S- tag (or BILOU's L-/U-), the tags that make it BIOES."""
    for block in blocks:
        for i, row in enumerate(block.rows):
            if row[-1][:2] in ("E-", "S-", "L-", "U-"):
                return block.line + i, row[-1]
    return None


def _detect_scheme(path: Path, blocks: list[_Block]) -> str:
    """The file's tag scheme: 'BIOES', 'IOB2' (a B- tag starts an entity after O or at a sentence
    start somewhere) or 'IOB1'; an unreadable tag is reported at its line."""
    iob2 = False
    for block in blocks:
        tags = [row[-1] for row in block.rows]
        try:
            if detect_scheme([tags]) == "BIOES":
                return "BIOES"
        except TagError as err:
            raise InputFileError(path, str(err), block.line + err.index) from None
        iob2 = iob2 or starts_after_outside(tags)
    return "IOB2" if iob2 else "IOB1"


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
    from concner.tasks.text.wordtok import word_tokenize

    sentences: list[Sentence] = []
    report = ReadReport("lines", 1, None, False)
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        sentence = _line_sentence(path, line, number, word_tokenize)
        sentences.extend(_limit_length(sentence, max_tokens, long_sentences, path, report))
    return _numbered(sentences), report


def _line_sentence(path: Path, line: str, number: int, tokenize) -> Sentence:
    tokens = tokenize(line)
    for token in tokens:
        _check_token(path, token, number)
    return Sentence(0, tokens, None, [], number)


def read_aligned_lines(path: str | Path) -> tuple[list[Sentence], ReadReport]:
    """One sentence per line, line-aligned with another file: sentence i is line i + 1.

    The reader for parallel text (translations, references). Unlike `read_unlabeled`, an empty
    line is kept as an empty sentence (no tokens), since skipping it would pair every later line
    with the wrong source. Lines end at "\n" only (a trailing "\r" is dropped), so the count
    agrees with `wc -l` even when a sentence holds other Unicode line separators; a final "\n"
    ends the last line and does not start another.
    """
    from concner.tasks.text.wordtok import word_tokenize

    path = Path(path)
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    sentences = [_line_sentence(path, line.removesuffix("\r"), number, word_tokenize)
                 for number, line in enumerate(lines, start=1)]
    for i, s in enumerate(sentences):
        s.id = i
    return sentences, ReadReport("lines", 1, None, False)


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
