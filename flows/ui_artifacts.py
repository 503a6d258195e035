"""Markdown for the Prefect UI: each stage's summary (key figures, tables, samples), and the run summary.

A user sees what a stage produced in the Prefect UI without opening files. Every stage's markdown
comes from its StageSummary through one generic renderer: no per-stage code here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from concner.tasks.engine.artifacts import load_manifest
from concner.tasks.presentation.summary import Figures, Histogram, Note, Sample, SampleQuery, Samples, StageSummary, Table, marked_segments
from concner.tasks.text.tags import Span

SAMPLES = 5  # sample rows per stage: the UI shows a taste, `concner inspect` the rest


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _marked(tokens: Sequence[str], found: Sequence[Span], notes: dict[int, str] | None = None) -> str:
    """Tokens with entities in bold and their type as a suffix: **Pedro Sánchez**`PER`."""
    return " ".join(f"**{text}**`{label}`" if label is not None else text
                    for text, label in marked_segments(tokens, found, notes))


def _sample(sample: Sample) -> str:
    text = f"{sample.head.strip()} {_marked(sample.tokens, sample.spans, dict(sample.notes))}".strip()
    if sample.target is not None:
        text += f" → {_marked(sample.target.tokens, sample.target.spans)}"
    return text


def summary_markdown(summary: StageSummary) -> str:
    """Any stage's summary as markdown: one rendering per block kind."""
    parts = []
    for block in summary.blocks:
        if isinstance(block, Figures):
            parts.append(_table([block.title, ""], [[k, v] for k, v in block.items.items()]))
        elif isinstance(block, Table):
            title = f"**{block.title}**\n\n" if block.title else ""
            rows = [[f"**{c}**" if i in block.total_rows else c for c in row] for i, row in enumerate(block.rows)]
            caption = f"\n\n_{block.caption}_" if block.caption else ""
            parts.append(title + _table(block.columns, rows) + caption)
        elif isinstance(block, Samples):
            parts.append(f"{block.title}:\n\n" + "\n".join(f"- {_sample(s)}" for s in block.rows[:SAMPLES]))
        elif isinstance(block, Histogram):
            rows = [[f"{block.edges[i]:.2f}-{block.edges[i + 1]:.2f}", n] for i, n in enumerate(block.counts)]
            parts.append(f"{block.title}:\n\n" + _table(["bin", "count"], rows))
        elif isinstance(block, Note):
            parts.append(f"_{block.text.strip()}_")
    return "\n\n".join(parts)


def stage_markdown(stage: str, key: str, folder: Path, headline: str) -> str:
    from concner.tasks.engine.registry import get

    manifest = load_manifest(folder)
    summarize = get(stage).view.summary
    body = summary_markdown(summarize({"stage": stage, **manifest}, folder, SampleQuery(limit=SAMPLES))) if summarize else ""
    return f"### {stage} `{key}`\n\n{headline}\n\n{body}\n\nartifact: `{folder}`"


def run_markdown(record: dict) -> str:
    rows = [[name, info["status"], f"{info['seconds']:.1f}", info.get("headline", ""), info["key"]]
            for name, info in record["stages"].items()]
    return (f"### concner run `{record['run_id']}` ({record['status']})\n\n"
            + _table(["stage", "status", "seconds", "key figure", "key"], rows))
