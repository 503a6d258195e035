"""What the two model-training stages (train: the teacher; distill: the student) share: the
selection split, the loop settings, the saved curves and the scores on the labeled target sets.

Here rather than in either stage's module, so that neither stage imports the other. The loop's
modules load torch: they are imported inside the functions that run it, not with this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from concner.tasks.engine.artifacts import EPOCHS, PREDICTIONS, SCORES_JSON, STEPS, corpus_split
from concner.tasks.text.corpus import Sentence, entity_types

if TYPE_CHECKING:
    from concner.tasks.engine.config import LoopConfig
    from concner.tasks.training.train import FitResult, FitSettings

EVAL_SETS = ("target_dev", "target_test")
EVAL_BATCH_SIZE = 64  # inference only: larger batches than training are cheap and faster


def dev_set(inputs: Mapping[str, Path], select_on: str = "source_dev") -> tuple[str | None, list[Sentence]]:
    """The selection split: source dev by default (held out of the labeled source data when the
    run has no source_dev file), target dev only when the config asks for it (train.select_on)."""
    sentences = corpus_split(inputs, select_on)
    return (select_on, sentences) if sentences else (None, [])


def score_target_sets(model, inputs: Mapping[str, Path], out: Path, *, max_length: int, log,
                      selected_on: str | None = None) -> dict:
    """Scores on every labeled target set of the run but the selection split (its score chose the
    epoch, so it is no result); predictions written as CoNLL beside them."""
    from concner.tasks.training.evaluate import evaluate_model

    scores = {}
    for split in EVAL_SETS:
        if split == selected_on:
            continue
        gold = corpus_split(inputs, split)
        if not gold:
            continue
        scores[split], pred = evaluate_model(model, gold, batch_size=EVAL_BATCH_SIZE, max_length=max_length,
                                             progress=f"scoring {split}")
        unknown = sorted(set(entity_types(gold)) - {label[2:] for label in model.labels if label != "O"})
        if unknown:
            scores[split]["types_not_in_model"] = unknown
            log.warning("%s has entity types the model cannot predict: %s", split, ", ".join(unknown))
        PREDICTIONS.of(split=split).write(out, [Sentence(s.id, s.tokens, p) for s, p in zip(gold, pred)])
        log.info("%s: F1 %.4f (P %.4f, R %.4f)", split, scores[split]["f1"], scores[split]["precision"],
                 scores[split]["recall"])
    # a file, not only manifest metrics: downstream keys cover files, and the scores also depend
    # on the gold tags, which the predictions file does not hold
    SCORES_JSON.write(out, scores)
    return scores


def save_curves(result: FitResult, out: Path) -> None:
    STEPS.write(out, result.steps)
    EPOCHS.write(out, result.epochs)


def graph_metrics(result: FitResult) -> dict:
    """On a GPU, the batch shapes the loop replayed as CUDA graphs, and why it went on without them
    if it did (nothing on a CPU): a fallback is a warning in the log, and kept in the manifest too."""
    return {k: v for k, v in (("cuda_graph_shapes", result.cuda_graph_shapes),
                              ("cuda_graph_error", result.cuda_graph_error)) if v}


def fit_settings(section: LoopConfig, seed: int) -> FitSettings:
    """The loop settings of a train or distill config section: every field of FitSettings but the
    seed is a LoopConfig field (tests/test_training_loop.py), so none silently keeps a default."""
    from concner.tasks.training.train import FitSettings

    names = {f.name for f in dataclasses.fields(FitSettings)} - {"seed"}
    return FitSettings(**section.model_dump(include=names), seed=seed)
