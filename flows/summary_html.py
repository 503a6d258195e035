"""Any stage's StageSummary as an HTML fragment, for `concner report`: one rendering per block
kind, so a new stage gets its report section from its summary with no code here."""

from __future__ import annotations

import html
from collections.abc import Sequence

from concner.tasks.presentation.summary import Figures, Histogram, Note, Sample, Samples, StageSummary, Table, marked_segments
from concner.tasks.text.tags import Span

SAMPLES = 5  # sample rows per block: the report shows a taste, `concner inspect` the rest

e = html.escape


def _rows(cells: Sequence[Sequence[object]], bold: frozenset[int] = frozenset()) -> str:
    return "".join("<tr>" + "".join(f"<td>{'<b>' if i in bold else ''}{e(str(c))}{'</b>' if i in bold else ''}</td>"
                                    for c in row) + "</tr>" for i, row in enumerate(cells))


def _marked(tokens: Sequence[str], found: Sequence[Span], notes: dict[int, str] | None = None) -> str:
    """Tokens with each entity in <mark> followed by its type (and note)."""
    return " ".join(f"<mark>{e(text)}</mark><sub>{e(label)}</sub>" if label is not None else e(text)
                    for text, label in marked_segments(tokens, found, notes))


def _sample(sample: Sample) -> str:
    text = f"<code>{e(sample.head.strip())}</code> " if sample.head.strip() else ""
    text += _marked(sample.tokens, sample.spans, dict(sample.notes))
    if sample.target is not None:
        text += " → " + _marked(sample.target.tokens, sample.target.spans)
    return f"<li class='{'failed' if sample.dropped else ''}'>{text}</li>"


def summary_html(summary: StageSummary) -> str:
    parts = []
    for block in summary.blocks:
        if isinstance(block, Figures):
            parts.append(f"<table><caption>{e(block.title)}</caption>"
                         + _rows([[k, v] for k, v in block.items.items()]) + "</table>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(c)}</th>" for c in block.columns)
            caption = f"<caption>{e(block.title)}</caption>" if block.title else ""
            foot = f"<p class='note'>{e(block.caption)}</p>" if block.caption else ""
            parts.append(f"<table>{caption}<tr>{head}</tr>{_rows(block.rows, block.total_rows)}</table>{foot}")
        elif isinstance(block, Samples):
            items = "".join(_sample(s) for s in block.rows[:SAMPLES])
            parts.append(f"<p><b>{e(block.title)}</b></p><ul>{items}</ul>")
        elif isinstance(block, Histogram):
            rows = [[f"{block.edges[i]:.2f}-{block.edges[i + 1]:.2f}", n] for i, n in enumerate(block.counts)]
            parts.append(f"<table><caption>{e(block.title)}</caption><tr><th>bin</th><th>count</th></tr>"
                         + _rows(rows) + "</table>")
        elif isinstance(block, Note):
            parts.append(f"<p class='note'>{e(block.text.strip())}</p>")
    return "\n".join(parts)
