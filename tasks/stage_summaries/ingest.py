"""What `concner inspect`, the Prefect UI and `concner report` show of the ingest stage's artifact.

Only renders: stage keys leave this module out (tasks/engine/keys.py), so restyling it recomputes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from concner.tasks.engine.artifacts import load_split, sample_split
from concner.tasks.text.conll import counted
from concner.tasks.presentation.summary import Block, Sample, SampleQuery, Samples, StageSummary, StageView, Table, by_id

PRESENTATION_ONLY = True


def headline(metrics: dict) -> str:
    s = metrics["splits"]["source_train"]
    return f"{counted(s['sentences'], 'source sentence')}, {counted(sum(s['entities'].values()), 'entity', 'entities')}"


def target_headline(metrics: dict) -> str:
    parts = [f"{s['sentences']} {name.removeprefix('target_')}" for name, s in metrics["splits"].items()]
    return f"{metrics.get('target_lang')}: " + (", ".join(parts) or "no target files")


def summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    """Both ingest stages: every split's counts, and sample sentences of the split a user reads first."""
    metrics = manifest["metrics"]
    stage = manifest.get("stage", "ingest")
    rows = [[split, str(s["sentences"]), str(s["tokens"]),
             ", ".join(f"{k} {v}" for k, v in s["entities"].items()) or "-", s["file"]]
            for split, s in metrics["splits"].items()]
    blocks: list[Block] = [Table(f"{stage}: corpora", ("split", "sentences", "tokens", "entities", "file"), rows)]
    split = sample_split(metrics["splits"])
    if split is not None:
        sentences = load_split(folder, split)
        chosen = (by_id(sentences, query.sentence_id, split) if query.sentence_id is not None
                  else sentences[: query.limit or 5])
        blocks.append(Samples(f"{split} samples", [Sample(s.tokens, s.entities, head=f"#{s.id} ") for s in chosen],
                              labels=metrics.get("entity_types", [])))
    return StageSummary(stage, blocks)


VIEW = StageView(summary, headline, sentence_ids=True)
TARGET_VIEW = StageView(summary, target_headline, sentence_ids=True)
