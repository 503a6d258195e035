"""Tag schemes: validate IOB1 / IOB2 / BIOES tag sequences, convert them to IOB2, extract spans.

Inside concner every tag sequence is IOB2. Entity types are whatever the data carries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_TAG = re.compile(r"^(?P<prefix>[BIESLU])-(?P<type>\S+)$")


class TagError(ValueError):
    """A tag or tag sequence that cannot be read; `index` is the token position in the sentence."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Span:
    """An entity: tokens [start, end) of type `label`."""

    start: int
    end: int
    label: str


def parse_tag(tag: str, index: int = 0) -> tuple[str, str | None]:
    """Split a tag into (prefix, type); 'O' gives ('O', None). BILOU's L/U are read as E/S."""
    if tag == "O":
        return "O", None
    m = _TAG.match(tag)
    if not m:
        raise TagError(
            f"unknown tag {tag!r}: expected 'O' or PREFIX-TYPE with PREFIX one of B, I, E, S", index
        )
    prefix = {"L": "E", "U": "S"}.get(m["prefix"], m["prefix"])
    return prefix, m["type"]


def detect_scheme(tag_sequences: Sequence[Sequence[str]]) -> str:
    """'BIOES' when any E-/S- tag occurs, else 'IOB' (IOB1 and IOB2 convert the same way;
    `starts_after_outside` tells them apart where the difference matters: repairs)."""
    for tags in tag_sequences:
        for i, tag in enumerate(tags):
            if parse_tag(tag, i)[0] in ("E", "S"):
                return "BIOES"
    return "IOB"


def iob_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 or IOB2 to IOB2: an I-X that does not continue an X entity starts one (as conlleval reads it)."""
    out: list[str] = []
    prev_type: str | None = None
    for i, tag in enumerate(tags):
        prefix, typ = parse_tag(tag, i)
        if prefix in ("E", "S"):
            raise TagError(f"tag {tag!r} is BIOES but the file is IOB", i)
        if prefix == "O":
            out.append("O")
        elif prefix == "I" and prev_type == typ:
            out.append(tag)
        else:
            out.append(f"B-{typ}")
        prev_type = typ
    return out


def starts_after_outside(tags: Sequence[str]) -> bool:
    """True when a B- tag starts an entity at the sentence start or after O: the mark of IOB2.

    In IOB1, I- starts entities and B- only separates two adjacent entities of the same type, so
    a B- tag always follows an I- or B- tag of its own type there.
    """
    return any(tag.startswith("B-") and (i == 0 or tags[i - 1] == "O") for i, tag in enumerate(tags))


def dangling_inside(tags: Sequence[str]) -> list[int]:
    """Positions of I-X tags that continue no X entity (after O, at the start, or after another type).

    Normal in IOB1; in an IOB2 file each one is a broken sequence that conlleval reads as the start
    of an entity (which is what iob_to_iob2 does), so a reader counts them as repairs.
    """
    out = []
    prev_type: str | None = None
    for i, tag in enumerate(tags):
        prefix, typ = parse_tag(tag, i)
        if prefix == "I" and prev_type != typ:
            out.append(i)
        prev_type = typ
    return out


def bioes_to_iob2(tags: Sequence[str]) -> list[str]:
    """BIOES to IOB2, rejecting sequences no BIOES tagger can emit (an unclosed B, a stray I or E).

    An unclosed entity is reported at its B- tag, where a user would look for the mistake.
    """
    out: list[str] = []
    open_type: str | None = None  # type of the entity a B/I started and E has not closed
    open_at = 0
    for i, tag in enumerate(tags):
        prefix, typ = parse_tag(tag, i)
        if open_type is not None and prefix not in ("I", "E"):
            raise TagError(f"invalid BIOES: B-{open_type} is never closed by E-{open_type} (next tag {tag!r})", open_at)
        if prefix in ("I", "E"):
            if open_type != typ:
                raise TagError(f"invalid BIOES: {tag!r} does not continue a B-{typ}", i)
            out.append(f"I-{typ}")
            open_type = typ if prefix == "I" else None
        elif prefix == "B":
            out.append(f"B-{typ}")
            open_type, open_at = typ, i
        elif prefix == "S":
            out.append(f"B-{typ}")
        else:
            out.append("O")
    if open_type is not None:
        raise TagError(f"invalid BIOES: B-{open_type} is never closed by E-{open_type} before the sentence ends", open_at)
    return out


def bioes_to_iob2_lenient(tags: Sequence[str]) -> tuple[list[str], int]:
    """BIOES to IOB2 reading broken sequences the way conlleval does; returns (tags, repairs).

    Real corpora hold such sequences (CoNLL-2002 Spanish test, the Spanish side of
    parallel_en_es): an E-X or I-X that continues nothing starts an entity; an unclosed B-X
    ends where the next entity or O begins.
    """
    out: list[str] = []
    repairs = 0
    open_type: str | None = None
    for i, tag in enumerate(tags):
        prefix, typ = parse_tag(tag, i)
        if open_type is not None and prefix not in ("I", "E"):
            repairs += 1
            open_type = None
        if prefix in ("I", "E"):
            if open_type == typ:
                out.append(f"I-{typ}")
            else:
                repairs += 1
                out.append(f"B-{typ}")
            open_type = typ if prefix == "I" else None
        elif prefix == "B":
            out.append(f"B-{typ}")
            open_type = typ
        elif prefix == "S":
            out.append(f"B-{typ}")
        else:
            out.append("O")
    return out, repairs + (open_type is not None)


def to_iob2(tags: Sequence[str], scheme: str, *, repair: bool = False) -> tuple[list[str], int]:
    """Convert one sentence's tags from `scheme` ('IOB' or 'BIOES') to IOB2; returns (tags, repairs).

    IOB needs no repair: any I-X reads as continuing or starting an entity. BIOES sequences
    that no tagger can emit raise TagError unless `repair` is set.
    """
    if scheme != "BIOES":
        return iob_to_iob2(tags), 0
    if repair:
        return bioes_to_iob2_lenient(tags)
    return bioes_to_iob2(tags), 0


def spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of an IOB2 sequence (an I-X without a B-X starts an entity, as conlleval does)."""
    found: list[Span] = []
    start, label = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, typ = ("O", None) if tag == "O" else parse_tag(tag, i)
        continues = prefix == "I" and typ == label
        if start is not None and not continues:
            found.append(Span(start, i, label))  # type: ignore[arg-type]
            start, label = None, None
        if prefix in ("B", "I") and not continues:
            start, label = i, typ
    return found


def spans_to_tags(n_tokens: int, entity_spans: Sequence[Span]) -> list[str]:
    """IOB2 tags for non-overlapping spans."""
    tags = ["O"] * n_tokens
    for s in entity_spans:
        tags[s.start] = f"B-{s.label}"
        for j in range(s.start + 1, s.end):
            tags[j] = f"I-{s.label}"
    return tags
