"""The student's loss: distillation from the teacher's word distributions (+ optional hard-label CE),
with its batches prepared once (see models/encoding.EncodedTable).

Two forms of the same loss: `DistillLoss.__call__` gathers the labelled words' rows (what runs on
a CPU, and on a GPU without graphs); `DistillLoss.graph_step` computes it over fixed-shape dense
tensors (`DistillBatches.static_batch`), which a CUDA graph can capture (tasks/training/cuda_graphs.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from concner.models.encoding import EncodedTable, encode_words, to_device
from concner.models.losses import distillation_loss, weighted_distillation_loss
from concner.tasks.training.cuda_graphs import graph_width
from concner.tasks.text.corpus import Sentence
from concner.tasks.training.evaluate import device_of


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

    def graph_step(self, model) -> "DenseDistillStep":
        """The loss over `DistillBatches.static_batch` tensors, as a module whose parameters are the
        student classifier's (what `tasks/cuda_graphs.GraphedSteps` captures, forward and backward)."""
        return DenseDistillStep(model, self.kind, self.temperature, self.hard_label_confidence is not None)


class DenseDistillStep(torch.nn.Module):
    """Student classifier + distillation loss on dense [rows, width(, C)] tensors; returns the loss
    terms as a tuple in the order of `names`. Only the token classifier runs: the contrastive heads
    of ConcNerModel get no gradient from this loss anyway."""

    def __init__(self, model, kind: str, temperature: float, hard_labels: bool):
        super().__init__()
        self.token_model = model.token_model
        self.encoder_mask = model._encoder_mask  # a bound method, not a submodule: no head parameters
        self.kind, self.temperature, self.hard_labels = kind, temperature, hard_labels
        self.names = ("loss", "distill") + (("ce_hard",) if hard_labels else ())

    def forward(self, input_ids, attention_mask, teacher, weight, confident) -> tuple[torch.Tensor, ...]:
        logits = self.token_model(input_ids=input_ids, attention_mask=self.encoder_mask(attention_mask)).logits.float()
        distill = weighted_distillation_loss(logits, teacher, weight, kind=self.kind, temperature=self.temperature)
        if not self.hard_labels:
            return distill, distill
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), teacher.argmax(-1).flatten(), reduction="none")
        ce_hard = (ce * confident.flatten()).sum() / confident.sum().clamp_min(1.0)
        return distill + ce_hard, distill, ce_hard


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
        self.max_width = max_length
        self.n_labels = items[0][1].shape[-1] if items else 0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
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

    def static_batch(self, indices: Sequence[int], rows: int, width_multiple: int,
                     generator=None) -> tuple[torch.Tensor, ...]:
        """The batch as dense tensors of a fixed shape, for `DenseDistillStep`: (input_ids,
        attention_mask [rows, width], teacher [rows, width, C], weight, confident [rows, width]).

        `rows` rows (a short last batch gets rows of padding, weight 0) and the width rounded up
        to `width_multiple` columns (at most max_length), so that a training run meets only a
        few shapes and each is captured once. Where no labelled word starts, the teacher row is
        uniform and the weight 0; a padding row attends to its first position only, since a row
        that attends to nothing gives NaN, and NaN * 0 is still NaN. `generator` is unused (the
        student's loss draws nothing); it is there because the loop hands one to every loss's batches."""
        indices = list(indices)
        width = self.table.width(indices)
        width = graph_width(width, width_multiple, self.max_width)
        host = self.table.rows(indices, width)
        n, c = len(indices), self.n_labels
        input_ids = torch.full((rows, width), self.pad_id, dtype=host["input_ids"].dtype)
        attention_mask = torch.zeros((rows, width), dtype=host["attention_mask"].dtype)
        input_ids[:n], attention_mask[:n], attention_mask[n:, 0] = host["input_ids"], host["attention_mask"], 1
        teacher = np.full((rows, width, c), 1.0 / max(c, 1), dtype=np.float32)
        weight = np.zeros((rows, width), dtype=np.float32)
        for b, i in enumerate(indices):
            teacher[b, self.positions[i]] = self.teacher[i]
            weight[b, self.positions[i]] = 1.0
        confident = np.zeros((rows, width), dtype=np.float32)
        if self.hard_label_confidence is not None:
            confident = weight * (teacher.max(axis=-1) >= self.hard_label_confidence)
        move = lambda t: to_device(t, self.device)  # noqa: E731
        return (move(input_ids), move(attention_mask), move(torch.from_numpy(teacher)), move(torch.from_numpy(weight)),
                move(torch.from_numpy(np.ascontiguousarray(confident, dtype=np.float32))))
