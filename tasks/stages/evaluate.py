"""Evaluate stage: teacher and student scores side by side, per labeled target set and entity type.

The models are scored where they are trained (train and distill stages); this stage puts the
scores in one table (scores.parquet) and in the run record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TYPE_CHECKING

from concner.tasks.artifacts import SCORES, load_scores
from concner.tasks.stage import StageContext, StageSpec
from concner.tasks.summary import Block, Note, SampleQuery, StageSummary, Table, pct

if TYPE_CHECKING:  # pandas loads where a stage reads or writes a table: a rerun that only reuses never does
    import pandas as pd

MODELS = {"teacher": "train", "student": "distill"}


def compute_evaluate(ctx: StageContext) -> None:
    import pandas as pd

    rows, scores = [], {}
    for model, stage in MODELS.items():
        for split, s in load_scores(ctx.inputs[stage]).items():
            scores[f"{model}/{split}"] = {k: s[k] for k in ("precision", "recall", "f1", "mode")}
            rows.append({"model": model, "set": split, "type": "ALL", "precision": s["precision"],
                         "recall": s["recall"], "f1": s["f1"], "support": None})
            for typ, t in s["per_type"].items():
                rows.append({"model": model, "set": split, "type": typ, **t})
    pd.DataFrame(rows).to_parquet(ctx.out / SCORES, index=False)
    ctx.metrics["scores"] = scores
    for key, s in scores.items():
        ctx.log.info("%s: F1 %.4f", key, s["f1"])


def _headline(m: dict) -> str:
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
    import pandas as pd

    scores = pd.read_parquet(folder / SCORES)
    if scores.empty:
        return StageSummary("evaluate", [Note("no labeled target set in this run: nothing to compare")])
    wide = comparison_frame(scores)
    models = [m for m in ("teacher", "student") if f"{m}_f1" in wide.columns]
    blocks: list[Block] = [comparison_table(split, rows, models) for split, rows in wide.groupby("set", sort=False)]
    return StageSummary("evaluate", blocks)


STAGE = StageSpec(
    name="evaluate",
    version="1",
    inputs=("train", "distill"),
    params=lambda config: {},
    compute=compute_evaluate,
    headline=_headline,
    summary=summary,
    description="teacher and student scores side by side",
)
