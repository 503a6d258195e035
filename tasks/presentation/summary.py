"""A renderer-neutral summary of one stage's artifact: key figures, tables, sample sentences with
their entity spans, histograms.

A stage declares `summary(manifest, folder, query) -> StageSummary` on its StageSpec; the terminal
view (flows/views.py), the Prefect markdown (flows/ui_artifacts.py) and the HTML report
(flows/report.py) render any summary with one generic renderer each, dispatching on the block
kind, so a new stage gets all three from its own module. Plain data only: no rich, no matplotlib,
nothing that loads torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TYPE_CHECKING, Union

from concner.tasks.engine.errors import UserError
from concner.tasks.text.tags import Span

if TYPE_CHECKING:  # pandas loads where a stage reads or writes a table: a rerun that only reuses never does
    import pandas as pd

# Only renders artifacts: stage keys leave this module out (tasks/engine/keys.py), so that an edit
# to how a summary looks never recomputes a stage.
PRESENTATION_ONLY = True


@dataclass(frozen=True)
class SampleQuery:
    """Which sample rows a summary should hold: one sentence, a row order, a count, a direction.
    `concner inspect --stage` fills it from its options; the UI artifact and the report use the
    default (each summary's own first rows)."""

    sentence_id: int | None = None
    sort: str | None = None
    limit: int | None = None  # None: the summary's own default
    reverse: bool = False


@dataclass(frozen=True)
class Figures:
    """Key figures: label -> value, in display order."""

    title: str
    items: Mapping[str, object]


@dataclass(frozen=True)
class Table:
    """A table of text cells; `numeric` columns are right-aligned; rows in `total_rows` (indices)
    are totals (rendered bold) and `section_ends` close a group of rows."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    numeric: Sequence[str] = ()
    total_rows: frozenset[int] = frozenset()
    section_ends: frozenset[int] = frozenset()
    caption: str = ""


@dataclass(frozen=True)
class Sample:
    """A sentence with its entity spans; `head` precedes it (an id, a confidence), `notes` follow
    a span's type (keyed by span start), `lines` are further labelled renderings of the pair."""

    tokens: Sequence[str]
    spans: Sequence[Span]
    head: str = ""
    notes: Mapping[int, str] = field(default_factory=dict)
    target: "Sample | None" = None  # the other side of a pair (a projection): shown after an arrow
    dropped: bool = False  # a row the stage left out (rendered as a warning)


@dataclass(frozen=True)
class Samples:
    title: str
    rows: Sequence[Sample]
    labels: Sequence[str] = ()  # entity types in colour order


@dataclass(frozen=True)
class Histogram:
    title: str
    counts: Sequence[int]
    edges: Sequence[float]


@dataclass(frozen=True)
class Note:
    """A line of text, e.g. why a table is missing."""

    text: str


Block = Union[Figures, Table, Samples, Histogram, Note]


@dataclass(frozen=True)
class StageSummary:
    stage: str
    blocks: Sequence[Block]


# (manifest, artifact folder, query) -> summary
Summarize = Callable[[dict[str, Any], Path, SampleQuery], StageSummary]


def no_headline(metrics: dict[str, Any]) -> str:
    return ""


@dataclass(frozen=True)
class StageView:
    """How every renderer (terminal, Prefect markdown, HTML report) shows a stage's artifact. It lives
    beside the stage, in tasks/stage_summaries/, outside the stage's key: rewording a view
    recomputes nothing."""

    summary: Summarize | None = None  # None: the artifact's metrics as they are
    headline: Callable[[dict[str, Any]], str] = no_headline  # key figure for summary tables
    # row orders the summary's sample rows accept (`inspect --sort`; the first is the default) and
    # whether each sorts ascending; whether the summary can show one sentence (`inspect --id`)
    sort_keys: Mapping[str, bool] = field(default_factory=dict)
    sentence_ids: bool = False


# -- helpers the stages' summaries share --------------------------------------------------------------


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def by_id(rows: Sequence[Any], sentence_id: int, what: str) -> list[Any]:
    """The one row with that id (rows have `.id`), else a user error naming the ids there are."""
    chosen = [r for r in rows if int(r.id) == sentence_id]
    if not chosen:
        known = f"ids {min(int(r.id) for r in rows)}..{max(int(r.id) for r in rows)}" if rows else "it is empty"
        raise UserError(f"no sentence with id {sentence_id} in {what} ({known})")
    return chosen


def select_rows(frame: pd.DataFrame, sort_values: pd.Series, *, ascending: bool, query: SampleQuery,
                default_limit: int, what: str) -> pd.DataFrame:
    """The rows to show: the one sentence the query's id names, else the first `limit` in sort
    order (ties by id)."""
    if query.sentence_id is not None:
        rows = frame[frame["id"] == query.sentence_id]
        if rows.empty:
            known = f"ids {frame['id'].min()}..{frame['id'].max()}" if len(frame) else "it is empty"
            raise UserError(f"no sentence with id {query.sentence_id} in {what} ({known})")
        return rows
    keyed = frame.assign(_sort=list(sort_values))
    ordered = keyed.sort_values(["_sort", "id"], ascending=[ascending != query.reverse, True],
                                na_position="last", kind="mergesort")
    return ordered.drop(columns="_sort").head(query.limit or default_limit)


def sort_title(sort_keys: Mapping[str, bool], query: SampleQuery, shown: int, total: int) -> str:
    """`10 of 300, by id (ascending)`, or `sentence 12` for one sentence."""
    if query.sentence_id is not None:
        return f"sentence {query.sentence_id}"
    sort = query.sort or next(iter(sort_keys))
    direction = "ascending" if sort_keys[sort] != query.reverse else "descending"
    return f"{shown} of {total}, by {sort} ({direction})"


def marked_segments(tokens: Sequence[str], found: Sequence[Span],
                    notes: Mapping[int, str] | None = None) -> list[tuple[str, str | None]]:
    """A sentence as (text, label) pieces for a renderer to mark: an entity's words with its type
    (and note, keyed by the span's start), every other token with None."""
    out: list[tuple[str, str | None]] = []
    i, starts = 0, {s.start: s for s in found}
    while i < len(tokens):
        if i in starts:
            s = starts[i]
            note = f" {notes[s.start]}" if notes and notes.get(s.start) else ""
            out.append((" ".join(str(t) for t in tokens[s.start:s.end]), s.label + note))
            i = s.end
        else:
            out.append((str(tokens[i]), None))
            i += 1
    return out
