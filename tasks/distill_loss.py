"""The student's loss: distillation from the teacher's word distributions (+ optional hard-label CE),
with its batches prepared once (see models/encoding.EncodedTable)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from concner.models.encoding import EncodedTable, encode_words, to_device
from concner.models.losses import distillation_loss
from concner.tasks.corpus import Sentence
from concner.tasks.evaluate import device_of


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
