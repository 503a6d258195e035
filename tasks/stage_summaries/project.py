"""What `concner inspect`, the Prefect UI and `concner report` show of the project stage's artifact.

Only renders: stage keys leave this module out (tasks/engine/keys.py), so restyling it recomputes nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from concner.tasks.engine.artifacts import load_projected_frame
from concner.tasks.nlp.projection import OUTCOMES, SUCCESS
from concner.tasks.presentation.summary import (
    Block,
    Figures,
    Note,
    Sample,
    SampleQuery,
    Samples,
    StageSummary,
    StageView,
    Table,
    pct,
    select_rows,
    sort_title,
)
from concner.tasks.text.tags import spans

if TYPE_CHECKING:
    import pandas as pd

PRESENTATION_ONLY = True


def headline(m: dict) -> str:
    rate = m.get("projection_rate")
    text = f"projection rate {100 * rate:.1f}%" if rate is not None else "no entities"
    q = m.get("projection_quality")
    return text + (f", projection F1 {100 * q['f1']:.1f}" if q else "")


SORT_KEYS = {"id": True, "failed": False, "length": False}  # `failed` first: the most entities lost


OUTCOME_WHY = {  # the rule of tasks/nlp/projection.py behind each outcome, in a few words
    "projected": "aligned words form one run",
    "repaired": "aligned words not contiguous: 1-word gap bridged, else longest run kept",
    "merged": "overlapped a same-type span: merged",
    "collided": "overlapped a longer span of another type: dropped",
    "unaligned": "no aligned non-punctuation word: dropped",
}


def projection_entities(frame: pd.DataFrame) -> list[list[dict]]:
    return [json.loads(e) if e else [] for e in frame["entities"]]


def failed_counts(frame: pd.DataFrame) -> pd.Series:
    """Entities per sentence that did not make it onto the translation (collided or unaligned)."""
    import pandas as pd

    return pd.Series([sum(e["outcome"] not in SUCCESS for e in ents) for ents in projection_entities(frame)],
                     index=frame.index)


def outcome_table(frame: pd.DataFrame) -> Table:
    """Outcome counts per entity type, with each type's projection rate."""
    by_type: dict[str, Counter] = {}
    for ents in projection_entities(frame):
        for e in ents:
            by_type.setdefault(e["label"], Counter())[e["outcome"]] += 1
    total = sum((c for c in by_type.values()), Counter())
    rows = []
    for label, counts in [*sorted(by_type.items()), ("ALL", total)]:
        n = sum(counts.values())
        rate = sum(counts[o] for o in SUCCESS) / n if n else None
        rows.append([label, *(str(counts[o]) for o in OUTCOMES), str(n), pct(rate)])
    columns = ("type", *OUTCOMES, "total", "rate %")
    return Table("project: outcome per source entity", columns, rows, numeric=columns[1:],
                 total_rows=frozenset({len(rows) - 1}))


def quality_table(title: str, scores: dict) -> Table:
    """P/R/F1 overall and per type from a score_tags dict."""
    rows = [[label, pct(s["precision"]), pct(s["recall"]), pct(s["f1"]), str(s.get("support", ""))]
            for label, s in sorted(scores.get("per_type", {}).items())]
    rows.append(["ALL", pct(scores["precision"]), pct(scores["recall"]), pct(scores["f1"]),
                 str(sum(s.get("support", 0) for s in scores.get("per_type", {}).values()))])
    return Table(title, ("type", "P", "R", "F1", "support"), rows, numeric=("P", "R", "F1", "support"),
                 total_rows=frozenset({len(rows) - 1}))


def sentence_blocks(row, labels: list[str]) -> list[Block]:
    """One projected sentence: both sides with their spans, the word links, and each entity's outcome."""
    source, target = list(row.source_tokens), list(row.target_tokens)
    links = sorted((int(a), int(b)) for a, b in row.alignment)
    kept = "kept" if row.kept else "dropped (an entity was lost and project.keep=complete)"
    sides = [Sample(source, spans(list(row.source_tags)), head="  source:    "),
             Sample(target, spans(list(row.projected_tags)), head="  projected: ")]
    if row.gold_tags is not None:
        sides.append(Sample(target, spans(list(row.gold_tags)), head="  gold:      "))
    blocks: list[Block] = [Samples(f"#{row.id} ({kept})", sides, labels),
                           Note("  links:     " + ", ".join(f"{source[s]}→{target[t]}" for s, t in links))]
    linked = {s for s, _ in links}
    loose = [tok for i, tok in enumerate(source) if i not in linked]
    if loose:  # the words no link leaves from: often why an entity came out unaligned
        blocks.append(Note("  no link:   " + " ".join(loose)))
    outcomes = []
    for e in json.loads(row.entities):
        aligned = sorted({t for s, t in links if e["source_start"] <= s < e["source_end"]})
        landed = (" ".join(target[e["target_start"] : e["target_end"]])
                  if e["outcome"] in SUCCESS and e["target_start"] is not None else "-")
        outcomes.append([e["label"], " ".join(source[e["source_start"] : e["source_end"]]),
                         " ".join(target[t] for t in aligned) or "-", landed,
                         f"{e['outcome']}: {OUTCOME_WHY.get(e['outcome'], '')}"])
    if outcomes:
        blocks.append(Table("", ("type", "source span", "aligned to", "target span", "outcome"), outcomes))
    return blocks


def summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    """Aligner and counts, outcomes per entity type, projection quality, and a few sentences in detail."""
    m = manifest["metrics"]
    frame = load_projected_frame(folder)
    aligner = m.get("aligner", {})
    figures = {
        "aligner": f"{aligner.get('model')} layer {aligner.get('layer')} {aligner.get('method')}",
        "sentence pairs": m.get("pairs"),
        "kept / dropped sentences": f"{m.get('kept_sentences')} / {m.get('dropped_sentences')}",
        "projection rate": f"{pct(m.get('projection_rate'))}%",
        **{k.replace("_", " "): v for k, v in (m.get("counts") or {}).items() if v},
    }
    blocks: list[Block] = [Figures("project: summary", figures), outcome_table(frame)]
    if m.get("projection_quality"):
        blocks.append(quality_table("projection vs gold target tags (%)", m["projection_quality"]))
    sort = query.sort or "id"
    values = {"id": frame["id"], "failed": failed_counts(frame), "length": frame["source_tokens"].map(len)}[sort]
    rows = select_rows(frame, values, ascending=SORT_KEYS[sort], query=query, default_limit=3,
                       what="projected sentences")
    labels = sorted({e["label"] for ents in projection_entities(frame) for e in ents})
    blocks.append(Note(f"sentences ({sort_title(SORT_KEYS, query, len(rows), len(frame))})"))
    for row in rows.itertuples():
        blocks += sentence_blocks(row, labels)
    return StageSummary("project", blocks)


VIEW = StageView(summary, headline, sort_keys=SORT_KEYS, sentence_ids=True)
