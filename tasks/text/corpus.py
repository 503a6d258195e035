"""The corpus model: a sentence is an id, its tokens and (when labeled) IOB2 tags."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from concner.tasks.text.tags import Span, spans

if TYPE_CHECKING:  # pandas loads where a stage reads or writes a table: a rerun that only reuses never does
    import pandas as pd


@dataclass
class Sentence:
    """One sentence. `extra` holds the middle CoNLL columns (e.g. entity ids), one list per column."""

    id: int
    tokens: list[str]
    tags: list[str] | None = None
    extra: list[list[str]] = field(default_factory=list)
    line: int = 0  # 1-based line of the sentence's first token in its file, 0 when not from a file

    @property
    def entities(self) -> list[Span]:
        return spans(self.tags) if self.tags else []


def entity_counts(sentences: Iterable[Sentence]) -> dict[str, int]:
    counts: Counter[str] = Counter(s.label for sent in sentences for s in sent.entities)
    return dict(sorted(counts.items()))


def corpus_stats(sentences: Sequence[Sentence]) -> dict:
    """Sentences, tokens and entities per type: what the manifest and `inspect` show."""
    return {
        "sentences": len(sentences),
        "tokens": sum(len(s.tokens) for s in sentences),
        "labeled": bool(sentences) and sentences[0].tags is not None,
        "entities": entity_counts(sentences),
    }


def to_frame(sentences: Sequence[Sentence]) -> pd.DataFrame:
    """One row per sentence, list columns for tokens/tags: the Parquet layout of every corpus artifact."""
    import pandas as pd

    return pd.DataFrame(
        {
            "id": [s.id for s in sentences],
            "tokens": [s.tokens for s in sentences],
            "tags": [s.tags for s in sentences],
            "extra": [s.extra for s in sentences],
            "line": [s.line for s in sentences],
        }
    )


def from_frame(frame: pd.DataFrame) -> list[Sentence]:
    out = []
    for row in frame.itertuples(index=False):
        tags = getattr(row, "tags", None)
        extra = getattr(row, "extra", None)
        out.append(
            Sentence(
                id=int(row.id),
                tokens=[str(t) for t in row.tokens],
                tags=None if tags is None else [str(t) for t in tags],
                extra=[] if extra is None else [[str(v) for v in col] for col in extra],
                line=int(getattr(row, "line", 0)),
            )
        )
    return out


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    return sorted({s.label for sent in sentences for s in sent.entities})


def label_list(types: Iterable[str]) -> list[str]:
    """The IOB2 label set of the given entity types, 'O' first."""
    return ["O"] + [f"{p}-{t}" for t in sorted(set(types)) for p in ("B", "I")]
