"""Train stage: the ConCNER teacher on source sentences + projected translations.

Loss = CE(source) + CE(projected translation) + lambda_tcl * TCL + lambda_lcl * LCL; with both
lambdas 0 and train.use_translations=false it is the plain source-only baseline.
Output: model/ (a transformers token-classification folder), steps.parquet and epochs.parquet
(training curves), predictions per labeled target set, scores in the manifest.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from concner.tasks.config import RunConfig
from concner.tasks.conll import write_conll
from concner.tasks.corpus import Sentence, entity_types, label_list
from concner.tasks.evaluate import evaluate_model, pick_device
from concner.tasks.ingest import corpus_split
from concner.tasks.model_refs import TINY, resolve_encoder
from concner.tasks.project_stage import load_projected
from concner.tasks.stage import StageContext, StageSpec
from concner.tasks.train import FitResult, FitSettings, TeacherLoss, fit, seed_everything

EVAL_SETS = ("target_dev", "target_test")
EVAL_BATCH_SIZE = 64  # inference only: larger batches than training are cheap and faster


def train_params(config: RunConfig) -> dict[str, Any]:
    return {**config.train.model_dump(mode="json"), "seed": config.seed}


def dev_set(inputs: Mapping[str, Path]) -> tuple[str | None, list[Sentence]]:
    """Target dev when the run has one (the paper's model selection), else source dev."""
    for split in ("target_dev", "source_dev"):
        sentences = corpus_split(inputs, split)
        if sentences:
            return split, sentences
    return None, []


def score_target_sets(model, inputs: Mapping[str, Path], out: Path, *, max_length: int, log) -> dict:
    """Scores on every labeled target set of the run; predictions written as CoNLL beside them."""
    scores = {}
    for split in EVAL_SETS:
        gold = corpus_split(inputs, split)
        if not gold:
            continue
        scores[split], pred = evaluate_model(model, gold, batch_size=EVAL_BATCH_SIZE, max_length=max_length,
                                             progress=f"scoring {split}")
        unknown = sorted(set(entity_types(gold)) - {label[2:] for label in model.labels if label != "O"})
        if unknown:
            scores[split]["types_not_in_model"] = unknown
            log.warning("%s has entity types the model cannot predict: %s", split, ", ".join(unknown))
        write_conll([Sentence(s.id, s.tokens, p) for s, p in zip(gold, pred)], out / f"predictions_{split}.conll")
        log.info("%s: F1 %.4f (P %.4f, R %.4f)", split, scores[split]["f1"], scores[split]["precision"],
                 scores[split]["recall"])
    # a file, not only manifest metrics: downstream keys cover files, and the scores also depend
    # on the gold tags, which the predictions file does not hold
    (out / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return scores


def save_curves(result: FitResult, out: Path) -> None:
    pd.DataFrame(result.steps).to_parquet(out / "steps.parquet", index=False)
    pd.DataFrame(result.epochs).to_parquet(out / "epochs.parquet", index=False)


def fit_settings(section, seed: int) -> FitSettings:
    """The loop settings of a train or distill config section."""
    names = [f.name for f in dataclasses.fields(FitSettings) if f.name != "seed"]
    return FitSettings(**{name: getattr(section, name) for name in names}, seed=seed)


def compute_train(ctx: StageContext) -> None:
    from concner.models.ner_model import ConcNerModel

    t = ctx.config.train
    source = corpus_split(ctx.inputs, "source_train")
    labels = label_list(entity_types(source))
    translations = {s.id: s for s in load_projected(ctx.inputs["project"])} if t.use_translations else {}
    items = [(s, translations.get(s.id)) for s in source]
    encoder = resolve_encoder(t.encoder, ctx.inputs, ctx.store_root)
    seed_everything(ctx.seed)  # the new classifier and heads are random draws too
    model = ConcNerModel.from_encoder(encoder, labels, proj_dim=t.proj_dim, dropout=t.dropout).to(pick_device())
    loss = TeacherLoss({label: i for i, label in enumerate(labels)}, t.max_length, t.lambda_tcl, t.lambda_lcl,
                       t.tcl_temperature, t.lcl_temperature, t.lcl_o_mode, t.lcl_o_ratio, t.lcl_features)
    dev_name, dev = dev_set(ctx.inputs)
    result = fit(model, items, loss, fit_settings(t, ctx.seed), dev=dev or None, log=ctx.log,
                 progress="training teacher")
    model.save(ctx.out / "model")
    save_curves(result, ctx.out)
    ctx.metrics.update(
        labels=labels,
        encoder=t.encoder,
        encoder_path=encoder,
        train_pairs=sum(tgt is not None for _, tgt in items),
        train_sources=len(items),
        dev_set=dev_name,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        epochs=result.epochs,
        final_loss_terms={k: v for k, v in result.steps[-1].items() if k not in ("step", "epoch", "lr")},
        scores=score_target_sets(model, ctx.inputs, ctx.out, max_length=t.max_length, log=ctx.log),
    )


def scores_headline(m: dict) -> str:
    s = m.get("scores", {})
    return ", ".join(f"{k} F1 {100 * v['f1']:.1f}" for k, v in s.items()) or "no labeled target set"


def train_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    target = ["target_dev.*", "target_test.*"] + (["target_unlabeled.*"] if config.train.encoder == TINY else [])
    return {
        "ingest": ("source_train.*", "source_dev.*"),
        "ingest_target": tuple(target),
        "project": ("projected.parquet",) if config.train.use_translations else (),
    }


STAGE = StageSpec(
    name="train",
    version="2",
    inputs=("ingest", "ingest_target", "project"),
    params=train_params,
    reads=train_reads,
    libraries=("torch", "transformers", "seqeval"),
    model_params=("encoder",),
    compute=compute_train,
    headline=scores_headline,
    description="train the teacher: CE + TCL + LCL on source and projected translations",
)
