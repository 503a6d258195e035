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

from concner.models.encoding import EncodedTable, encode_words, to_device
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

    def prepare(self, model, items: Sequence[tuple[Sentence, np.ndarray]]) -> "DistillBatches":
        return DistillBatches(model.tokenizer, items, self.max_length, device_of(model), self.hard_label_confidence)

    def __call__(self, model, batch: "DistillBatch | Sequence[tuple[Sentence, np.ndarray]]",
                 generator) -> dict[str, torch.Tensor]:
        if not isinstance(batch, DistillBatch):  # a plain list: prepared on the spot
            batch = self.prepare(model, batch).batch(range(len(batch)))
        logits = model(batch.input_ids, batch.attention_mask).logits.float()
        student = logits.flatten(0, 1)[batch.positions]  # [words, C], the teacher's rows in order
        terms = {"distill": distillation_loss(student, batch.teacher, None, kind=self.kind,
                                              temperature=self.temperature)}
        loss = terms["distill"]
        if batch.confident is not None:
            terms["ce_hard"] = torch.nn.functional.cross_entropy(student[batch.confident],
                                                                 batch.teacher[batch.confident].argmax(-1))
            loss = loss + terms["ce_hard"]
        terms["loss"] = loss
        return terms


@dataclass
class DistillBatch:
    input_ids: torch.Tensor  # on the model's device
    attention_mask: torch.Tensor
    positions: torch.Tensor  # flat [rows * width] first-subword positions of the words the teacher labeled
    teacher: torch.Tensor  # [words, C]: the teacher's distribution for each of them, in that order
    confident: torch.Tensor | None  # rows of `teacher` confident enough for the hard-label CE


class DistillBatches:
    """Sentences tokenized once, each with its labeled words' subword positions and teacher rows."""

    def __init__(self, tokenizer, items: Sequence[tuple[Sentence, np.ndarray]], max_length: int,
                 device: torch.device, hard_label_confidence: float | None = None):
        # word indices as "labels" put each word's index on its first subword and -100 elsewhere
        word_index = [list(range(len(s.tokens))) for s, _ in items]
        encoded = encode_words(tokenizer, [s.tokens for s, _ in items], word_index, max_length)
        self.table = EncodedTable(tokenizer, encoded)
        self.lengths = self.table.lengths
        self.device = device
        self.hard_label_confidence = hard_label_confidence
        self.positions: list[np.ndarray] = []  # per sentence: subword positions of its labeled words
        self.teacher: list[np.ndarray] = []  # per sentence: the teacher rows of those words
        for first_subword, (_, probs) in zip(encoded["labels"], items):
            pos = np.flatnonzero(np.asarray(first_subword) != -100)
            words = np.asarray(first_subword)[pos]
            seen = ~np.isnan(probs[words]).any(axis=-1)  # NaN: a word past the teacher's max_length
            self.positions.append(pos[seen])
            self.teacher.append(np.ascontiguousarray(probs[words[seen]], dtype=np.float32))

    def batch(self, indices: Sequence[int]) -> DistillBatch:
        indices = list(indices)
        width = self.table.width(indices)
        host = self.table.rows(indices, width)
        positions = np.concatenate([self.positions[i] + b * width for b, i in enumerate(indices)])
        teacher = torch.from_numpy(np.concatenate([self.teacher[i] for i in indices]))
        confident = None
        if self.hard_label_confidence is not None:
            confident = (teacher.max(dim=-1).values >= self.hard_label_confidence).nonzero().squeeze(1)
        move = lambda t: to_device(t, self.device)  # noqa: E731
        return DistillBatch(move(host["input_ids"]), move(host["attention_mask"]),
                            move(torch.from_numpy(positions).long()), move(teacher),
                            None if confident is None or len(confident) == 0 else move(confident))


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
