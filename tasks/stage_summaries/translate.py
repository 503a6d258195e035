"""What `concner inspect`, the Prefect UI and `concner report` show of the translate stage's artifact.

Only renders: stage keys leave this module out (tasks/engine/keys.py), so restyling it recomputes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from concner.tasks.engine.artifacts import load_translations
from concner.tasks.engine.errors import UserError
from concner.tasks.presentation.summary import Block, Figures, Note, SampleQuery, StageSummary, StageView, Table, select_rows, sort_title
from concner.tasks.text.wordtok import word_tokenize

if TYPE_CHECKING:
    import pandas as pd

PRESENTATION_ONLY = True


def headline(m: dict) -> str:
    q = m.get("quality")
    score = f", chrF {q['chrf']:.1f}" if q else ""
    return f"{m['kept']}/{m['sentences']} translations ({m['backend']}){score}"


# Row orders of the summary (the first is the default) and whether each sorts ascending: each
# direction puts first the rows a user wants to look at (the worst chrF, the longest sentence).
SORT_KEYS = {"id": True, "chrf": True, "length": False}


def chrf_column(frame: pd.DataFrame) -> str | None:
    """The per-sentence chrF column: against a reference when there is one, else round-trip."""
    return next((c for c in ("chrf", "round_trip_chrf") if c in frame.columns), None)


def source_lengths(frame: pd.DataFrame) -> pd.Series:
    """Source length in words (the artifact keeps the source as text)."""
    return frame["source_text"].map(lambda text: len(word_tokenize(text)))


def translation_rows(frame: pd.DataFrame, query: SampleQuery, default_limit: int = 10) -> pd.DataFrame:
    """The translations to show, in the order `query.sort` asks for (`id`, `chrf` lowest first, `length`
    longest first)."""
    sort = query.sort or "id"
    if sort == "chrf":
        column = chrf_column(frame)
        if column is None:
            raise UserError("this translate artifact has no per-sentence chrF (it needs translate.reference_file, "
                            "or translate.reverse_model for round-trip chrF): sort by id or length")
        values = frame[column]
    elif sort == "length":
        values = source_lengths(frame)
    else:
        values = frame["id"]
    return select_rows(frame, values, ascending=SORT_KEYS[sort], query=query, default_limit=default_limit,
                       what="translations")


def translation_flags(row) -> str:
    flags = [name for name in ("empty", "truncated") if bool(getattr(row, name, False))]
    if not row.kept and not row.empty:
        flags.append("dropped (below translate.min_chrf)")
    return ", ".join(flags)


def summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    """Backend and counts, quality figures, and source and translation side by side."""
    m = manifest["metrics"]
    figures: dict[str, object] = {"backend": m.get("backend", "?")}
    if m.get("backend") == "parallel":
        figures["parallel file"] = m.get("parallel_file", "?")
    else:
        figures["model"] = m.get("model", "?")
    figures.update({
        "sentences": m.get("sentences"),
        "kept": m.get("kept"),
        "empty translations": m.get("empty", 0),
        "truncated inputs": m.get("truncated", 0),
        "dropped below min_chrf": m.get("dropped_below_threshold", 0),
    })
    for name, value in (m.get("quality") or {}).items():
        if isinstance(value, (int, float)):
            figures[f"{name} (vs reference)"] = f"{value:.2f}"
    round_trip = m.get("round_trip_chrf")
    if isinstance(round_trip, (int, float)):
        figures["round-trip chrF"] = f"{round_trip:.2f}"
    if m.get("sentences_per_second"):
        figures["speed"] = f"{m['sentences_per_second']} sentences/s ({m.get('seconds')} s)"
    blocks: list[Block] = [Figures("translate: summary", figures)]

    frame = load_translations(folder)
    rows = translation_rows(frame, query)
    score = chrf_column(frame)
    columns = ["id", "source", "translation", "words"] + (["chrF" if score == "chrf" else "rt chrF"] if score else [])
    cells = []
    for row, n_src in zip(rows.itertuples(), source_lengths(rows)):
        line = [str(row.id), row.source_text, row.translation_text or "", f"{n_src}/{len(row.translation_tokens)}"]
        if score:
            line.append(f"{getattr(row, score):.1f}")
        cells.append(line + [translation_flags(row)])
    title = f"translations ({sort_title(SORT_KEYS, query, len(rows), len(frame))})"
    blocks.append(Table(title, columns + ["flags"], cells, numeric=("id", "words", *columns[4:])))
    if not score:
        blocks.append(Note("no per-sentence chrF: set translate.reference_file (or translate.reverse_model)"))
    return StageSummary("translate", blocks)


VIEW = StageView(summary, headline, sort_keys=SORT_KEYS, sentence_ids=True)
