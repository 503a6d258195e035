"""Train stage: the ConCNER teacher on source sentences + projected translations.

Loss = CE(source) + CE(projected translation) + lambda_tcl * TCL + lambda_lcl * LCL; with both
lambdas 0 and train.use_translations=false it is the plain source-only baseline.
Output: model/ (a transformers token-classification folder), steps.parquet and epochs.parquet
(training curves), predictions per labeled target set, scores in the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from concner.tasks.engine.artifacts import EPOCHS, MODEL, PREDICTIONS, SCORES_JSON, STEPS, PROJECTED, corpus_split, load_projected
from concner.tasks.engine.config import RunConfig
from concner.tasks.text.corpus import Sentence, entity_types, label_list
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.model_refs import TINY, resolve_encoder, teacher_encoder
from concner.tasks.training.model_training import (EVAL_BATCH_SIZE, dev_set, fit_settings, graph_metrics, save_curves,
                                          score_target_sets)
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.presentation.training_summary import MODEL_VIEW
from concner.tasks.text.tags import spans

if TYPE_CHECKING:  # the loop's modules load torch: imported where a stage computes, not with this module
    from concner.tasks.training.train import FitSettings


def train_params(config: RunConfig) -> dict[str, Any]:
    return {**config.train.model_dump(mode="json"), "seed": config.seed}


class TeacherDidNotLearn(UserError):
    """The guard: a teacher this weak must not feed pseudo-labeling."""


# below a tenth of the gold entities predicted, a teacher has learned (almost) nothing, whatever its F1
MIN_PREDICTED_ENTITY_RATIO = 0.1


def check_teacher(model, split: str | None, dev: Sequence[Sentence], *, max_length: int, min_f1: float | None,
                  settings: FitSettings, steps: int, log) -> dict | None:
    """Score the selected teacher on its selection split and stop the run when it learned nothing.

    Returns the selection figures (recorded apart from the results: this split chose the epoch)."""
    if not dev:
        log.warning("no selection split (no source_dev, and too few source sentences to hold one out): "
                    "the last epoch is kept and the teacher is not checked")
        return None
    from concner.tasks.training.evaluate import evaluate_model

    scores, pred = evaluate_model(model, dev, batch_size=EVAL_BATCH_SIZE, max_length=max_length)
    predicted = sum(len(spans(p)) for p in pred)
    gold = sum(len(spans(s.tags)) for s in dev)
    figures = {"split": split, "f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
               "predicted_entities": predicted, "gold_entities": gold, "mode": scores["mode"]}
    if min_f1 is not None and (scores["f1"] < min_f1 or predicted < MIN_PREDICTED_ENTITY_RATIO * gold):
        raise TeacherDidNotLearn(
            f"the teacher learned (almost) nothing: on its selection split {split} it predicts {predicted} "
            f"entities for {gold} gold ones, F1 {100 * scores['f1']:.1f} (floor: train.min_selection_f1 = "
            f"{min_f1}, and at least {MIN_PREDICTED_ENTITY_RATIO:.0%} of the gold entities), after {steps} "
            f"optimizer steps at learning rate {settings.learning_rate}. Pseudo-labels from it would be noise. "
            "Try more steps (train.epochs, train.min_steps), another train.learning_rate, smaller "
            "train.lambda_tcl / train.lambda_lcl, or check the projected labels (`concner inspect latest --stage "
            "project`); to go on anyway: --set train.min_selection_f1=null")
    return figures


def compute_train(ctx: StageContext) -> None:
    from concner.models.ner_model import ConcNerModel
    from concner.tasks.training.evaluate import pick_device
    from concner.tasks.training.train import TeacherLoss, fit, seed_everything

    t = ctx.config.train
    source = corpus_split(ctx.inputs, "source_train")
    labels = label_list(entity_types(source))
    translations = {s.id: s for s in load_projected(ctx.inputs["project"])} if t.use_translations else {}
    items = [(s, translations.get(s.id)) for s in source]
    encoder = resolve_encoder(teacher_encoder(ctx.config), ctx.inputs, ctx.store_root)
    seed_everything(ctx.seed)  # the new classifier and heads are random draws too
    model = ConcNerModel.from_encoder(encoder, labels, proj_dim=t.proj_dim, dropout=t.dropout).to(pick_device())
    loss = TeacherLoss({label: i for i, label in enumerate(labels)}, t.max_length, t.lambda_tcl, t.lambda_lcl,
                       t.tcl_temperature, t.lcl_temperature, t.lcl_o_mode, t.lcl_o_ratio, t.lcl_features,
                       t.balance)
    dev_name, dev = dev_set(ctx.inputs, t.select_on)
    settings = fit_settings(t, ctx.seed)
    result = fit(model, items, loss, settings, dev=dev or None, log=ctx.log, progress="training teacher")
    selection = check_teacher(model, dev_name, dev, max_length=t.max_length, min_f1=t.min_selection_f1,
                              settings=settings, steps=len(result.steps), log=ctx.log)
    MODEL.write(ctx.out, model)
    save_curves(result, ctx.out)
    ctx.metrics.update(
        labels=labels,
        encoder=f"{t.encoder} (adapted)" if ctx.config.adapt.enabled else t.encoder,
        encoder_path=encoder,
        train_pairs=sum(tgt is not None for _, tgt in items),
        train_sources=len(items),
        dev_set=dev_name,
        selection=selection,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        epochs=result.epochs,
        final_loss_terms={k: v for k, v in result.steps[-1].items() if k not in ("step", "epoch", "lr")},
        **graph_metrics(result),
        scores=score_target_sets(model, ctx.inputs, ctx.out, max_length=t.max_length, log=ctx.log,
                                 selected_on=dev_name),
    )


def train_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    target = ["target_dev.*", "target_test.*"] + (["target_unlabeled.*"] if config.train.encoder == TINY else [])
    return {
        "ingest": ("source_train.*", "source_dev.*"),  # source_dev: the selection split by default
        "ingest_target": tuple(target),
        "project": (PROJECTED.file,) if config.train.use_translations else (),
        "adapt": ("encoder/*",) if config.adapt.enabled else (),
    }


STAGE = StageSpec(
    name="train",
    role="teacher",
    version="2",
    inputs=("ingest", "ingest_target", "adapt", "project"),
    params=train_params,
    reads=train_reads,
    libraries=("torch", "transformers", "seqeval"),
    model_params=("encoder",),
    compute=compute_train,
    outputs=(MODEL, STEPS, EPOCHS, SCORES_JSON, PREDICTIONS),
    view=MODEL_VIEW,
    description="train the teacher: CE + TCL + LCL on source and projected translations",
)
