"""Distill stage: a student trained on target text to match the teacher's soft labels.

Loss per batch = distillation(student, teacher distributions) [KL with temperature, or MSE]
+ CE on the teacher's argmax for words whose teacher confidence reaches
distill.hard_label_confidence (when set). The student is scored on every labeled target set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from concner.models.encoding import collate, encode_words
from concner.models.losses import distillation_loss
from concner.tasks.config import RunConfig
from concner.tasks.corpus import Sentence
from concner.tasks.errors import UserError
from concner.tasks.evaluate import device_of, pick_device
from concner.tasks.model_refs import TINY, resolve_encoder
from concner.tasks.pseudo_label import load_pseudo_labels
from concner.tasks.stage import StageContext, StageSpec
from concner.tasks.teacher_stage import dev_set, fit_settings, save_curves, scores_headline, score_target_sets
from concner.tasks.train import fit, seed_everything


@dataclass
class DistillLoss:
    """Soft-label loss for a batch of (sentence, teacher word distributions [n_words, C])."""

    kind: str = "kl"
    temperature: float = 1.0
    hard_label_confidence: float | None = None
    max_length: int = 128

    def __call__(self, model, batch: Sequence[tuple[Sentence, np.ndarray]], generator) -> dict[str, torch.Tensor]:
        # word indices as "labels" put each word's index on its first subword and -100 elsewhere
        word_index = [list(range(len(s.tokens))) for s, _ in batch]
        enc = encode_words(model.tokenizer, [s.tokens for s, _ in batch], word_index, self.max_length)
        tensors = collate(model.tokenizer, enc, range(len(batch)))
        device = device_of(model)
        positions = tensors["labels"]
        mask = positions != -100
        n_labels = batch[0][1].shape[1]
        teacher = torch.zeros(*positions.shape, n_labels)
        for b, (_, probs) in enumerate(batch):
            rows = mask[b].nonzero(as_tuple=True)[0]
            teacher[b, rows] = torch.from_numpy(probs[positions[b, rows]])
        unlabeled = torch.isnan(teacher).any(dim=-1)  # words the teacher did not see (past its max_length)
        mask &= ~unlabeled
        teacher = torch.nan_to_num(teacher, nan=0.0)
        teacher, mask = teacher.to(device), mask.to(device)
        logits = model(tensors["input_ids"].to(device), tensors["attention_mask"].to(device)).logits.float()
        terms = {"distill": distillation_loss(logits, teacher, mask, kind=self.kind, temperature=self.temperature)}
        loss = terms["distill"]
        if self.hard_label_confidence is not None:
            confident = mask & (teacher.max(dim=-1).values >= self.hard_label_confidence)
            if confident.any():
                terms["ce_hard"] = torch.nn.functional.cross_entropy(logits[confident], teacher[confident].argmax(-1))
                loss = loss + terms["ce_hard"]
        terms["loss"] = loss
        return terms


def distill_params(config: RunConfig) -> dict[str, Any]:
    return {**config.distill.model_dump(mode="json"), "encoder": config.distill.encoder or config.train.encoder,
            "seed": config.seed}


def compute_distill(ctx: StageContext) -> None:
    from concner.models.ner_model import ConcNerModel

    d = ctx.config.distill
    sentences, probs, labels = load_pseudo_labels(ctx.inputs["pseudo_label"])
    teacher_labels = ConcNerModel.load(ctx.inputs["train"] / "model").labels
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
    student.save(ctx.out / "model")
    save_curves(result, ctx.out)
    ctx.metrics.update(
        labels=labels,
        encoder=ctx.params["encoder"],
        train_sentences=len(sentences),
        dev_set=dev_name,
        best_epoch=result.best_epoch,
        epochs=result.epochs,
        scores=score_target_sets(student, ctx.inputs, ctx.out, max_length=d.max_length, log=ctx.log,
                                 selected_on=dev_name),
    )


def distill_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    tiny = (config.distill.encoder or config.train.encoder) == TINY
    return {
        "ingest": ("source_dev.*",) + (("source_train.*",) if tiny else ()),
        "ingest_target": ("target_dev.*", "target_test.*") + (("target_unlabeled.*",) if tiny else ()),
        "train": ("model/*",),
    }


STAGE = StageSpec(
    name="distill",
    version="2",
    inputs=("ingest", "ingest_target", "train", "pseudo_label"),
    params=distill_params,
    reads=distill_reads,
    libraries=("torch", "transformers", "seqeval"),
    model_params=("encoder",),
    compute=compute_distill,
    headline=scores_headline,
    description="train the student on the teacher's soft labels over target text",
)
