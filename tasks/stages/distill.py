"""Distill stage: a student trained on target text to match the teacher's soft labels.

Loss per batch = distillation(student, teacher distributions) [KL with temperature, or MSE]
+ CE on the teacher's argmax for words whose teacher confidence reaches
distill.hard_label_confidence (when set). The student is scored on every labeled target set.
"""

from __future__ import annotations

from typing import Any

from concner.tasks.engine.artifacts import EPOCHS, MODEL, PREDICTIONS, SCORES_JSON, STEPS, load_pseudo_labels
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.model_refs import ADAPTED, TINY, resolve_encoder, student_encoder
from concner.tasks.training.model_training import dev_set, fit_settings, graph_metrics, save_curves, score_target_sets
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.presentation.training_summary import MODEL_VIEW


def distill_params(config: RunConfig) -> dict[str, Any]:
    return {**config.distill.model_dump(mode="json"), "encoder": student_encoder(config), "seed": config.seed}


def compute_distill(ctx: StageContext) -> None:
    # the loop's libraries load here, not with the module: a run that reuses every stage never
    # imports torch or transformers
    from concner.models.ner_model import ConcNerModel
    from concner.tasks.training.distill_loss import DistillLoss
    from concner.tasks.training.evaluate import pick_device
    from concner.tasks.training.train import fit, seed_everything

    d = ctx.config.distill
    sentences, probs, labels = load_pseudo_labels(ctx.inputs["pseudo_label"])
    teacher_labels = ConcNerModel.load(MODEL.path(ctx.inputs["train"])).labels
    if labels != teacher_labels:
        raise UserError(
            f"pseudo-labels use labels {labels} but the teacher has {teacher_labels}: "
            "the teacher artifact comes from an incompatible label set; rerun with --force pseudo_label"
        )
    if not sentences:
        raise UserError("no pseudo-labeled sentence passed the pseudo_label filters; relax them")
    encoder = resolve_encoder(ctx.params["encoder"], ctx.inputs, ctx.store_root)
    seed_everything(ctx.seed)  # the student's new classifier and heads are random draws too
    student = ConcNerModel.from_encoder(encoder, labels).to(pick_device())
    loss = DistillLoss(d.loss, d.temperature, d.hard_label_confidence, d.max_length)
    dev_name, dev = dev_set(ctx.inputs, d.select_on)
    result = fit(student, list(zip(sentences, probs)), loss, fit_settings(d, ctx.seed), dev=dev or None,
                 log=ctx.log, progress="distilling student")
    MODEL.write(ctx.out, student)
    save_curves(result, ctx.out)
    ctx.metrics.update(
        labels=labels,
        encoder=ctx.params["encoder"],
        train_sentences=len(sentences),
        dev_set=dev_name,
        best_epoch=result.best_epoch,
        epochs=result.epochs,
        **graph_metrics(result),
        scores=score_target_sets(student, ctx.inputs, ctx.out, max_length=d.max_length, log=ctx.log,
                                 selected_on=dev_name),
    )


def distill_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    encoder = student_encoder(config)
    tiny = encoder == TINY
    return {
        "adapt": ("encoder/*",) if encoder == ADAPTED else (),
        "ingest": ("source_dev.*",) + (("source_train.*",) if tiny else ()),
        "ingest_target": ("target_dev.*", "target_test.*") + (("target_unlabeled.*",) if tiny else ()),
        "train": ("model/*",),
    }


STAGE = StageSpec(
    name="distill",
    role="student",
    version="2",
    inputs=("ingest", "ingest_target", "adapt", "train", "pseudo_label"),
    params=distill_params,
    reads=distill_reads,
    libraries=("torch", "transformers", "seqeval"),
    model_params=("encoder",),
    compute=compute_distill,
    outputs=(MODEL, STEPS, EPOCHS, SCORES_JSON, PREDICTIONS),
    view=MODEL_VIEW,
    description="train the student on the teacher's soft labels over target text",
)
