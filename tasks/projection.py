"""Carry source entity spans onto a translation through word alignments.

Rules (after the alignment-based projection baselines of EasyProject / CODEC):
1. A source span's candidate target words are all target words aligned to any of its words,
   minus pure punctuation.
2. The candidates are split into contiguous runs; runs separated by a gap of one word are bridged
   (outcome `repaired`); otherwise the longest run is kept (also `repaired`, first run on ties).
3. Two projected spans that overlap are merged when they have the same type (`merged`); otherwise
   the longer keeps its words and the other is dropped (`collided`; the earlier source span wins ties).
4. A span with no candidate target word is dropped (`unaligned`).
Every source entity gets exactly one outcome, so nothing is dropped without a count.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from concner.tasks.tags import Span, spans, spans_to_tags

OUTCOMES = ("projected", "repaired", "merged", "collided", "unaligned")


@dataclass
class EntityProjection:
    source_start: int
    source_end: int
    label: str
    target_start: int | None
    target_end: int | None
    outcome: str

    def to_dict(self) -> dict:
        return asdict(self)


def is_punctuation(token: str) -> bool:
    return bool(token) and all(unicodedata.category(ch).startswith("P") for ch in token)


def _runs(indices: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def project_span(span: Span, alignment: Sequence[tuple[int, int]], target_tokens: Sequence[str]) -> EntityProjection:
    """Rules 1, 2 and 4 for one source span."""
    candidates = [t for s, t in alignment if span.start <= s < span.end and not is_punctuation(target_tokens[t])]
    if not candidates:
        return EntityProjection(span.start, span.end, span.label, None, None, "unaligned")
    runs = _runs(candidates)
    bridged = [runs[0]]
    for run in runs[1:]:
        if run[0] - bridged[-1][-1] == 2:  # a gap of exactly one word
            bridged[-1] = bridged[-1] + [bridged[-1][-1] + 1] + run
        else:
            bridged.append(run)
    best = max(bridged, key=len)  # max keeps the first of equally long runs
    outcome = "projected" if len(runs) == 1 else "repaired"
    return EntityProjection(span.start, span.end, span.label, best[0], best[-1] + 1, outcome)


def resolve_overlaps(projections: list[EntityProjection]) -> list[EntityProjection]:
    """Rule 3, applied in source order so the result does not depend on dict or set ordering."""
    kept: list[EntityProjection] = []
    for p in projections:
        if p.target_start is None:
            continue
        for other in kept:
            if other.target_start is None or p.target_start >= other.target_end or other.target_start >= p.target_end:
                continue
            if other.label == p.label:
                other.target_start = min(other.target_start, p.target_start)
                other.target_end = max(other.target_end, p.target_end)
                p.outcome, p.target_start, p.target_end = "merged", other.target_start, other.target_end
                break
            loser = p if (p.target_end - p.target_start) <= (other.target_end - other.target_start) else other
            loser.outcome = "collided"
            if loser is other:
                other.target_start = other.target_end = None
                kept.remove(other)
                kept.append(p)
            break
        else:
            kept.append(p)
    return projections


def project_sentence(
    source_tags: Sequence[str], target_tokens: Sequence[str], alignment: Sequence[tuple[int, int]]
) -> tuple[list[str], list[EntityProjection]]:
    """IOB2 tags for the target sentence and one outcome per source entity."""
    projections = [project_span(s, alignment, target_tokens) for s in spans(source_tags)]
    projections = resolve_overlaps(projections)
    target_spans = {
        (p.target_start, p.target_end, p.label)
        for p in projections
        if p.outcome in ("projected", "repaired", "merged") and p.target_start is not None
    }
    tags = spans_to_tags(len(target_tokens), [Span(s, e, label) for s, e, label in sorted(target_spans)])
    return tags, projections
