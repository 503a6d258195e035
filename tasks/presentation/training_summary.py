"""The summary of a model-training artifact (train: the teacher; distill: the student): settings,
scores on the labeled target sets, epochs, and loss curves. Both stages declare it, and a new stage
that trains a model with the same loop can too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TYPE_CHECKING

from concner.tasks.engine.artifacts import model_folder
from concner.tasks.engine.artifacts import EPOCHS, STEPS
from concner.tasks.presentation.summary import Block, Figures, Note, SampleQuery, StageSummary, StageView, Table, pct

if TYPE_CHECKING:  # pandas loads where a stage reads or writes a table: a rerun that only reuses never does
    import pandas as pd

# Only renders artifacts: stage keys leave this module out (tasks/engine/keys.py), so that an edit
# to how a summary looks never recomputes a stage.
PRESENTATION_ONLY = True

_SPARK = "▁▂▃▄▅▆▇█"
META_COLUMNS = ("step", "epoch", "lr")


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """The curve in `width` block characters (bucket means), scaled between its min and max."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return ""
    buckets = [values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)]
    means = [sum(b) / len(b) for b in buckets if b]
    lo, hi = min(means), max(means)
    if hi == lo:
        return _SPARK[0] * len(means)
    return "".join(_SPARK[round((v - lo) / (hi - lo) * (len(_SPARK) - 1))] for v in means)


def loss_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """First, last and minimum (with its step) of every loss term logged per optimizer step."""
    import pandas as pd

    terms = [c for c in steps.columns if c not in META_COLUMNS]
    rows = []
    for term in terms:
        values = steps[term].astype(float)
        best = int(values.to_numpy().argmin())
        rows.append({"term": term, "first": values.iloc[0], "last": values.iloc[-1], "min": values.min(),
                     "min_step": int(steps["step"].iloc[best]), "curve": sparkline(list(values))})
    return pd.DataFrame(rows)


def scores_table(title: str, scores: dict) -> Table:
    """Per labeled set and entity type: P/R/F1 and support, each set closed by its ALL row."""
    rows: list[list[str]] = []
    totals, ends = set(), set()
    for split, s in scores.items():
        for label, t in sorted(s.get("per_type", {}).items()):
            rows.append([split, label, pct(t["precision"]), pct(t["recall"]), pct(t["f1"]), str(t.get("support", ""))])
        support = sum(t.get("support", 0) for t in s.get("per_type", {}).values())
        totals.add(len(rows))
        ends.add(len(rows))
        rows.append([split, "ALL", pct(s["precision"]), pct(s["recall"]), pct(s["f1"]), str(support)])
    return Table(title, ("set", "type", "P", "R", "F1", "support"), rows, numeric=("P", "R", "F1", "support"),
                 total_rows=frozenset(totals), section_ends=frozenset(ends))


def epochs_table(epochs: pd.DataFrame, best_epoch: int | None) -> Table:
    cols = [c for c in ("epoch", "loss", "dev_precision", "dev_recall", "dev_f1") if c in epochs.columns]
    names = [{"loss": "mean loss"}.get(col, col.replace("dev_", "dev ")) for col in cols]
    rows = []
    for row in epochs.to_dict("records"):
        cells = [f"{int(row['epoch'])}{'*' if row['epoch'] == best_epoch else ''}", f"{row['loss']:.4f}"]
        rows.append(cells + [pct(row[c]) for c in cols[2:]])
    return Table("epochs (* = best, its weights are the saved model)", names, rows, numeric=names)


def loss_table(steps: pd.DataFrame) -> Table:
    rows = [[r["term"], f"{r['first']:.4f}", f"{r['last']:.4f}", f"{r['min']:.4f}", str(r["min_step"]), r["curve"]]
            for r in loss_summary(steps).to_dict("records")]
    return Table(f"loss terms over {len(steps)} steps", ("term", "first", "last", "min", "at step", "curve"), rows,
                 numeric=("first", "last", "min", "at step"))


def model_summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    """The train (teacher) and distill (student) stages: settings, scores, epochs and loss curves."""
    import pandas as pd

    m = manifest["metrics"]
    stage = manifest.get("stage", "train")
    figures = {
        "encoder": m.get("encoder"),
        "labels": " ".join(m.get("labels", [])),
        "training data": (f"{m['train_sources']} source sentences, {m['train_pairs']} with a projected translation"
                          if "train_sources" in m else f"{m.get('train_sentences')} pseudo-labeled sentences"),
        "dev set (model selection)": m.get("dev_set") or "none: the last epoch is kept",
        "best epoch": f"{m.get('best_epoch')} of {len(m.get('epochs', []))}"
                      + (" (stopped early)" if m.get("stopped_early") else ""),
        "model": model_folder(folder),
    }
    if m.get("cuda_graph_error"):
        figures["CUDA graphs"] = f"off after an error: {m['cuda_graph_error']}"
    elif m.get("cuda_graph_shapes"):
        figures["CUDA graphs"] = "batch shapes " + ", ".join(m["cuda_graph_shapes"])
    blocks: list[Block] = [Figures(f"{stage}: summary", figures)]
    if m.get("scores"):
        blocks.append(scores_table("scores on labeled target sets (%)", m["scores"]))
    else:
        blocks.append(Note("no labeled target set in this run: no scores"))
    epochs = EPOCHS.read(folder) if EPOCHS.exists(folder) else pd.DataFrame(m.get("epochs", []))
    if len(epochs):
        blocks.append(epochs_table(epochs, m.get("best_epoch")))
    if STEPS.exists(folder):
        blocks.append(loss_table(STEPS.read(folder)))
    return StageSummary(stage, blocks)


def scores_headline(m: dict) -> str:
    s = m.get("scores", {})
    text = ", ".join(f"{k} F1 {100 * v['f1']:.1f}" for k, v in s.items()) or "no labeled target set"
    return text + (f" (selected on {m['dev_set']})" if m.get("dev_set") else "")


MODEL_VIEW = StageView(model_summary, scores_headline)  # the teacher's (train) and the student's (distill)
