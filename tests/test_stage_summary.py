"""A stage's summary is rendered by the terminal view, the Prefect markdown and the HTML report
with no code of its own there: a new stage brings only its module and a registry line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from concner.flows.summary_html import summary_html
from concner.flows.ui_artifacts import stage_markdown
from concner.flows.views import show_summary
from concner.tasks.engine import registry
from concner.tasks.engine.stage import StageSpec
from concner.tasks.presentation.summary import (Figures, Histogram, Note, Sample, SampleQuery, Samples, StageSummary, StageView, Table,
                                   select_rows)
from concner.tasks.text.tags import spans


def word_count_summary(manifest: dict, folder: Path, query: SampleQuery) -> StageSummary:
    """What a stage module written after the renderers declares: figures, a table, samples."""
    m = manifest["metrics"]
    tokens, tags = ["Ana", "vive", "en", "Lima"], ["B-PER", "O", "O", "B-LOC"]
    return StageSummary("word_count", [
        Figures("word_count: summary", {"words": m["words"]}),
        Table("words per split", ("split", "words"), [["train", "3"], ["ALL", "3"]], numeric=("words",),
              total_rows=frozenset({1})),
        Samples("samples", [Sample(tokens, spans(tags), head="#0 ", notes={0: "0.9"})], ["PER", "LOC"]),
        Histogram("lengths", [1, 0], [0.0, 0.5, 1.0]),
        Note("a note"),
    ])


@pytest.fixture
def new_stage(monkeypatch, tmp_path) -> Path:
    """A stage the renderers have never heard of, registered with one line, and its artifact."""
    spec = StageSpec(name="word_count", version="1", inputs=(), params=lambda config: {}, compute=lambda ctx: None,
                     view=StageView(word_count_summary))
    monkeypatch.setitem(registry.BY_NAME, "word_count", spec)
    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "word_count", "metrics": {"words": 3}}))
    return tmp_path


def test_a_new_stage_gets_a_terminal_view_from_its_summary(new_stage):
    buffer = io.StringIO()
    manifest = json.loads((new_stage / "manifest.json").read_text())
    show_summary(Console(file=buffer, width=100, color_system=None), new_stage, manifest, None)
    out = buffer.getvalue()
    assert "│ words │ 3 │" in out and "words per split" in out and "a note" in out
    assert "#0 Ana[PER 0.9] vive en Lima[LOC]" in out
    assert "0.00-0.50" in out


def test_a_new_stage_gets_markdown_and_a_report_section_from_its_summary(new_stage):
    markdown = stage_markdown("word_count", "k1", new_stage, "3 words")
    assert "### word_count `k1`" in markdown and "| split | words |" in markdown and "| **ALL** | **3** |" in markdown
    assert "- #0 **Ana**`PER 0.9` vive en **Lima**`LOC`" in markdown
    page = summary_html(word_count_summary({"metrics": {"words": 3}}, new_stage, SampleQuery()))
    assert "<caption>words per split</caption>" in page and "<mark>Ana</mark><sub>PER 0.9</sub>" in page


def test_every_registered_stage_declares_a_summary():
    assert all(spec.view.summary is not None for spec in registry.STAGES)


def test_rows_by_id_and_in_sort_order():
    import pandas as pd

    frame = pd.DataFrame({"id": [0, 1, 2], "score": [0.5, 0.1, 0.5]})
    assert list(select_rows(frame, frame["score"], ascending=True, query=SampleQuery(), default_limit=2,
                            what="rows")["id"]) == [1, 0]
    assert list(select_rows(frame, frame["score"], ascending=True, query=SampleQuery(sentence_id=2), default_limit=2,
                            what="rows")["id"]) == [2]
    with pytest.raises(Exception, match="no sentence with id 7 in rows"):
        select_rows(frame, frame["score"], ascending=True, query=SampleQuery(sentence_id=7), default_limit=2, what="rows")


def test_reading_stage_summaries_loads_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, concner.flows.views, concner.flows.ui_artifacts, concner.flows.summary_html; "
            "bad = [m for m in ('torch', 'transformers', 'seqeval') if m in sys.modules]; assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
