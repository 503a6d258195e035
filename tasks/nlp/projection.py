"""Carry source entity spans onto a translation through word alignments.

Rules (after the alignment-based projection baselines of EasyProject / CODEC):
1. A source span's candidate target words are all target words aligned to any of its words,
   minus pure punctuation.
2. The candidates are split into contiguous runs; runs separated by a gap of one word are bridged
   (outcome `repaired`); otherwise the longest run is kept (also `repaired`, first run on ties).
   The bridged word may be punctuation ("Juan , Pérez"): rule 1 only removes punctuation from
   the candidates, so punctuation never starts or ends a span nor makes one on its own.
3. Two projected spans that overlap are merged when they have the same type (`merged`); otherwise
   the longer keeps its words and the other is dropped (`collided`; the earlier source span wins ties).
   Each span is checked against every span kept so far, a merged span again with its grown
   extent, and a merged group that loses is dropped whole (every member `collided`). So the
   spans of the successful outcomes (`projected`, `repaired`, `merged`) never overlap and are
   exactly the entities of the target tags.
4. A span with no candidate target word is dropped (`unaligned`).
Every source entity gets exactly one outcome, so nothing is dropped without a count.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from concner.tasks.text.tags import Span, spans, spans_to_tags

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


SUCCESS = ("projected", "repaired", "merged")


@dataclass
class _Group:
    """Kept projected spans that share one target span (more than one member after a merge)."""

    start: int
    end: int
    label: str
    members: list[int]  # positions in source order; members[0] is the earliest source span

    def __len__(self) -> int:
        return self.end - self.start

    def overlaps(self, other: _Group) -> bool:
        return self.start < other.end and other.start < self.end

    def absorb(self, other: _Group) -> None:
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.members = sorted(self.members + other.members)

    def beats(self, other: _Group) -> bool:
        """The longer span keeps its words; on equal length the group holding the earlier source span."""
        if len(self) != len(other):
            return len(self) > len(other)
        return self.members[0] < other.members[0]


def resolve_overlaps(projections: list[EntityProjection]) -> list[EntityProjection]:
    """Rule 3, applied in source order so the result does not depend on dict or set ordering.

    The kept spans never overlap. Each new span first absorbs every kept span of its type that it
    overlaps (the grown span is checked again after each merge). The merged group then has to
    beat, at its grown length, every kept span of another type it overlaps: if it does, those
    spans (all of their members) are dropped; if it loses to any of them, all of its members are
    dropped and the others stay. Members of a kept group share its union span; the earliest keeps
    its outcome, the others are `merged`. A dropped span is `collided` and keeps the target span
    it would have had on its own. Updates `projections` in place and returns it.
    """
    order = sorted(range(len(projections)), key=lambda i: (projections[i].source_start, projections[i].source_end, i))
    own = {i: (p.target_start, p.target_end) for i, p in enumerate(projections)}
    kept: list[_Group] = []
    lost: list[int] = []
    for rank, i in enumerate(order):
        p = projections[i]
        if p.target_start is None or p.target_end is None or p.outcome not in SUCCESS:
            continue
        group = _Group(p.target_start, p.target_end, p.label, [rank])
        while True:
            partner = next((g for g in kept if g.label == group.label and g.overlaps(group)), None)
            if partner is None:
                break
            kept.remove(partner)
            group.absorb(partner)
        rivals = [g for g in kept if g.overlaps(group)]  # all of another type now
        if all(group.beats(g) for g in rivals):
            for g in rivals:
                kept.remove(g)
                lost.extend(g.members)
            kept.append(group)
        else:
            lost.extend(group.members)
    for rank in lost:
        i = order[rank]
        projections[i].outcome = "collided"
        projections[i].target_start, projections[i].target_end = own[i]
    for group in kept:
        for rank in group.members:
            q = projections[order[rank]]
            q.target_start, q.target_end = group.start, group.end
            if rank != group.members[0]:
                q.outcome = "merged"
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
        if p.outcome in SUCCESS and p.target_start is not None
    }
    tags = spans_to_tags(len(target_tokens), [Span(s, e, label) for s, e, label in sorted(target_spans)])
    return tags, projections
