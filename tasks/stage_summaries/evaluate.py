"""What `concner inspect`, the Prefect UI and `concner report` show of the evaluate stage's artifact.

Only renders: stage keys leave this module out (tasks/engine/keys.py), so restyling it recomputes nothing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from concner.tasks.engine.artifacts import SCORES
from concner.tasks.presentation.summary import Block, Note, SampleQuery, StageSummary, StageView, Table, pct

if TYPE_CHECKING:
    import pandas as pd

PRESENTATION_ONLY = True


def headline(m: dict) -> str:
    return ", ".join(f"{k} F1 {100 * v['f1']:.1f}" for k, v in m["scores"].items()) or "no labeled target set"


def comparison_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """scores.parquet (a row per model, set, type) as a row per set and type with teacher and student side by side."""
    wide = scores.pivot_table(index=["set", "type"], columns="model", values=["precision", "recall", "f1"],
                              aggfunc="first")
    wide.columns = [f"{model}_{metric}" for metric, model in wide.columns]
    support = scores.dropna(subset=["support"]).groupby(["set", "type"])["support"].first()
    wide = wide.join(support).reset_index()
    # ALL last within each set, where a total belongs
    wide["_all"] = wide["type"] == "ALL"
    return wide.sort_values(["set", "_all", "type"]).drop(columns="_all").reset_index(drop=True)


def comparison_table(split: str, rows: pd.DataFrame, models: list[str]) -> Table:
    """One labeled set: P/R/F1 of each model per type, the student's F1 gain, and the entity support."""
    # one-letter model prefixes keep the nine columns inside an 80-column terminal
    columns = ["type"] + [f"{model[0].upper()} {metric}" for model in models for metric in ("P", "R", "F1")]
    columns += (["Δ F1"] if len(models) == 2 else []) + ["n"]
    total = int(rows["support"].fillna(0).sum()) if "support" in rows else 0
    cells, totals = [], set()
    for r in rows.to_dict("records"):
        line: list[str] = [r["type"]]
        for model in models:
            line += [pct(r[f"{model}_precision"]), pct(r[f"{model}_recall"]), pct(r[f"{model}_f1"])]
        if len(models) == 2:
            line.append(f"{100 * (r['student_f1'] - r['teacher_f1']):+.1f}")
        support = r.get("support")
        if r["type"] == "ALL":
            support = total
            totals.add(len(cells))
        line.append("" if support is None or math.isnan(support) else str(int(support)))
        cells.append(line)
    return Table(f"{split}: teacher vs student (%)", columns, cells, numeric=columns[1:], total_rows=frozenset(totals),
                 caption="T = teacher (train), S = student (distill), n = gold entities; seqeval default (conlleval)")


def summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    """Per labeled set, teacher and student side by side per entity type."""
    scores = SCORES.read(folder)
    if scores.empty:
        return StageSummary("evaluate", [Note("no labeled target set in this run: nothing to compare")])
    wide = comparison_frame(scores)
    models = [m for m in ("teacher", "student") if f"{m}_f1" in wide.columns]
    blocks: list[Block] = [comparison_table(split, rows, models) for split, rows in wide.groupby("set", sort=False)]
    return StageSummary("evaluate", blocks)


VIEW = StageView(summary, headline)
