"""Evaluate stage: teacher and student scores side by side, per labeled target set and entity type.

The models are scored where they are trained (train and distill stages); this stage puts the
scores in one table (scores.parquet) and in the run record.
"""

from __future__ import annotations

import json

import pandas as pd

from concner.tasks.stage import StageContext, StageSpec

MODELS = {"teacher": "train", "student": "distill"}


def compute_evaluate(ctx: StageContext) -> None:
    rows, scores = [], {}
    for model, stage in MODELS.items():
        manifest = json.loads((ctx.inputs[stage] / "manifest.json").read_text(encoding="utf-8"))
        for split, s in manifest["metrics"].get("scores", {}).items():
            scores[f"{model}/{split}"] = {k: s[k] for k in ("precision", "recall", "f1", "mode")}
            rows.append({"model": model, "set": split, "type": "ALL", "precision": s["precision"],
                         "recall": s["recall"], "f1": s["f1"], "support": None})
            for typ, t in s["per_type"].items():
                rows.append({"model": model, "set": split, "type": typ, **t})
    pd.DataFrame(rows).to_parquet(ctx.out / "scores.parquet", index=False)
    ctx.metrics["scores"] = scores
    for key, s in scores.items():
        ctx.log.info("%s: F1 %.4f", key, s["f1"])


def _headline(m: dict) -> str:
    return ", ".join(f"{k} F1 {100 * v['f1']:.1f}" for k, v in m["scores"].items()) or "no labeled target set"


STAGE = StageSpec(
    name="evaluate",
    version="1",
    inputs=("train", "distill"),
    params=lambda config: {},
    compute=compute_evaluate,
    headline=_headline,
    description="teacher and student scores side by side",
)
