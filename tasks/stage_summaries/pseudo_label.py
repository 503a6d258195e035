"""What `concner inspect`, the Prefect UI and `concner report` show of the pseudo_label stage's artifact.

Only renders: stage keys leave this module out (tasks/engine/keys.py), so restyling it recomputes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from concner.tasks.engine.artifacts import load_pseudo_label_frame
from concner.tasks.presentation.summary import (
    Block,
    Figures,
    Histogram,
    Sample,
    SampleQuery,
    Samples,
    StageSummary,
    StageView,
    select_rows,
    sort_title,
)
from concner.tasks.text.tags import spans

PRESENTATION_ONLY = True


SORT_KEYS = {"id": True, "confidence": True, "entities": False, "length": False}  # least confident first


def summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    """Counts, the sentence confidence histogram, and sentences with each entity's mean word confidence."""
    m = manifest["metrics"]
    frame = load_pseudo_label_frame(folder)
    figures = {
        "sentences": m.get("sentences"),
        "kept / dropped": f"{m.get('kept')} / {m.get('dropped')}",
        "mean sentence confidence": f"{m.get('mean_confidence', 0):.3f}",
        "entities in kept sentences": ", ".join(f"{k} {v}" for k, v in m.get("entities", {}).items()) or "none",
    }
    if m.get("tags_ignored"):
        figures["note"] = "the unlabeled file had a tag column: it was ignored"
    blocks: list[Block] = [Figures("pseudo_label: summary", figures)]
    hist = m.get("confidence_histogram")
    if hist:
        blocks.append(Histogram("sentence confidence (mean of the teacher's top word probability)", hist["counts"],
                                hist["edges"]))
    sort = query.sort or "id"
    values = {"id": frame["id"], "confidence": frame["confidence"], "entities": frame["entities"],
              "length": frame["tokens"].map(len)}[sort]
    rows = select_rows(frame, values, ascending=SORT_KEYS[sort], query=query, default_limit=10,
                       what="pseudo-labeled sentences")
    samples = []
    for row in rows.itertuples():
        conf = [float(c) for c in row.word_confidence]
        found = spans(list(row.tags))
        samples.append(Sample(list(row.tokens), found, head=f"#{row.id} conf {row.confidence:.3f} "
                              f"{'kept' if row.kept else 'dropped'} ", dropped=not row.kept,
                              notes={e.start: f"{sum(conf[e.start:e.end]) / (e.end - e.start):.2f}" for e in found}))
    labels = [label[2:] for label in m.get("labels", []) if label.startswith("B-")]
    blocks.append(Samples(f"sentences ({sort_title(SORT_KEYS, query, len(rows), len(frame))}); "
                          "an entity shows its mean word confidence", samples, labels))
    return StageSummary("pseudo_label", blocks)


def headline(m: dict) -> str:
    return f"{m['kept']}/{m['sentences']} sentences kept, mean confidence {m['mean_confidence']:.3f}"


VIEW = StageView(summary, headline, sort_keys=SORT_KEYS, sentence_ids=True)
