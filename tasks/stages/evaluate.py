"""Evaluate stage: teacher and student scores side by side, per labeled target set and entity type.

The models are scored where they are trained (train and distill stages); this stage puts the
scores in one table (scores.parquet) and in the run record.
"""

from __future__ import annotations


from concner.tasks.engine.artifacts import SCORES, load_scores
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.stage_summaries import evaluate as shown


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
    SCORES.write(ctx.out, pd.DataFrame(rows))
    ctx.metrics["scores"] = scores
    for key, s in scores.items():
        ctx.log.info("%s: F1 %.4f", key, s["f1"])


STAGE = StageSpec(
    name="evaluate",
    version="1",
    inputs=("train", "distill"),
    params=lambda config: {},
    compute=compute_evaluate,
    outputs=(SCORES,),
    view=shown.VIEW,
    description="teacher and student scores side by side",
)
