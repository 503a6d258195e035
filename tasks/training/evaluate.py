"""Prediction with a token classifier and seqeval scoring.

Scores use seqeval's default mode (conlleval: an I-X without B-X starts an entity), which is
what the cross-lingual NER literature reports; every score dict says so in its `mode` field.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from concner.models.encoding import EncodedTable, encode_words, to_device, word_predictions
from concner.tasks.engine.progress import progress_bar


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def predict_probs(
    model,
    sentences: Sequence[Sequence[str]],
    *,
    batch_size: int = 32,
    max_length: int = 128,
    progress: str | None = None,
    uncovered_nan: bool = False,
) -> list[np.ndarray]:
    """Per-word label distributions [n_words, C] (float32) for each sentence, in input order.

    Batches are sorted by length so padding stays small. Words cut by max_length get a confident
    O (see `word_predictions`), what a tagger outputs for them; with `uncovered_nan` their rows
    are NaN instead, so that a soft label is never invented for a word the model did not see.
    """
    if not sentences:
        return []
    model.eval()
    device = device_of(model)
    enc = encode_words(model.tokenizer, sentences, None, max_length)  # one tokenizer call for all
    table = EncodedTable(model.tokenizer, enc)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    out: list[np.ndarray | None] = [None] * len(sentences)

    def read_back(done: list[tuple[list[int], torch.Tensor]]) -> None:
        for idx, probs in done:
            probs = probs.cpu()
            for row, i in enumerate(idx):
                words, covered = word_predictions(probs[row], enc["word_ids"][i], enc["n_words"][i])
                if uncovered_nan:
                    words[~covered] = float("nan")
                out[i] = words.numpy()

    with torch.inference_mode(), progress_bar(progress, len(sentences)) as advance:
        pending: list[tuple[list[int], torch.Tensor]] = []
        for idx in batches:
            rows = table.rows(idx, table.width(idx))
            logits = model(to_device(rows["input_ids"], device), to_device(rows["attention_mask"], device)).logits
            pending.append((idx, torch.softmax(logits.float(), dim=-1)))
            if len(pending) >= READ_BACK_EVERY:  # results wait on the device, read back in groups
                read_back(pending)
                pending = []
            advance(len(idx))
        read_back(pending)
    return out  # type: ignore[return-value]


READ_BACK_EVERY = 32  # batches whose probabilities are copied to the host together


def probs_to_tags(probs: Sequence[np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    return [[labels[j] for j in p.argmax(axis=-1)] for p in probs]


def score_tags(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Micro P/R/F1 and per-type scores (seqeval default mode)."""
    gold, pred = [list(g) for g in gold], [list(p) for p in pred]
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {
        k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": int(v["support"])}
        for k, v in report.items()
        if not k.endswith(" avg")
    }
    return {
        "precision": precision_score(gold, pred, zero_division=0),
        "recall": recall_score(gold, pred, zero_division=0),
        "f1": f1_score(gold, pred, zero_division=0),
        "per_type": per_type,
        "sentences": len(gold),
        "mode": "seqeval default (conlleval)",
    }


def evaluate_model(model, sentences, *, batch_size: int = 32, max_length: int = 128, progress: str | None = None):
    """(scores, predicted tags) of `model` on labeled sentences."""
    probs = predict_probs(model, [s.tokens for s in sentences], batch_size=batch_size, max_length=max_length,
                          progress=progress)
    pred = probs_to_tags(probs, model.labels)
    return score_tags([s.tags for s in sentences], pred), pred
