"""Pseudo-label stage: the teacher labels the unlabeled target text with soft distributions.

Output: pseudo_labels.parquet (a row per sentence: tokens, argmax tags, word confidences,
sentence confidence, kept flag) and probs.npz (float16 [total words, labels] plus sentence
offsets: compact, and exactly what distillation reads).
Word confidence = the teacher's top probability; sentence confidence = the mean over its words.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any


from concner.tasks.engine.artifacts import (
    MODEL,
    PROBS,
    PROJECTED,
    PSEUDO_LABELS,
    corpus_split,
    load_projected,
    split_stats,
)
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.stage_summaries import pseudo_label as shown
from concner.tasks.text.tags import spans

if TYPE_CHECKING:  # pandas loads where a stage reads or writes a table: a rerun that only reuses never does
    import pandas as pd


def pseudo_label_params(config: RunConfig) -> dict[str, Any]:
    # the teacher reads at most train.max_length subwords per sentence: it changes the labels
    return {**config.pseudo_label.model_dump(mode="json"), "max_length": config.train.max_length}


def filter_mask(frame: pd.DataFrame, *, min_confidence: float | None, require_entity: bool,
                max_sentences: int | None) -> pd.Series:
    import pandas as pd

    kept = pd.Series(True, index=frame.index)
    if min_confidence is not None:
        kept &= frame["confidence"] >= min_confidence
    if require_entity:
        kept &= frame["entities"] > 0
    if max_sentences is not None:
        kept &= kept.cumsum() <= max_sentences
    return kept


def compute_pseudo_label(ctx: StageContext) -> None:
    import numpy as np
    import pandas as pd

    from concner.models.ner_model import ConcNerModel
    from concner.tasks.training.evaluate import pick_device, predict_probs, probs_to_tags

    p = ctx.config.pseudo_label
    sentences = corpus_split(ctx.inputs, "target_unlabeled")
    if not sentences:
        raise UserError("pseudo-labeling needs unlabeled target text: set data.target_unlabeled")
    excluded = 0
    if p.exclude_translations and "project" in ctx.inputs:
        seen = {tuple(s.tokens) for s in load_projected(ctx.inputs["project"])}
        kept = [s for s in sentences if tuple(s.tokens) not in seen]
        excluded = len(sentences) - len(kept)
        sentences = kept
        if excluded:
            ctx.log.info("pseudo_label: %d unlabeled sentences are translations the teacher trained on: left out",
                         excluded)
        if not sentences:
            raise UserError("every unlabeled target sentence is a translation the teacher trained on: give other "
                            "target text (data.target_unlabeled) or set pseudo_label.exclude_translations=false")
    teacher = ConcNerModel.load(MODEL.path(ctx.inputs["train"])).to(pick_device())
    # words past the teacher's max_length get NaN rows: no label is invented for them, the
    # student's loss skips them and they do not count towards a sentence's confidence
    probs = predict_probs(teacher, [s.tokens for s in sentences], batch_size=p.batch_size,
                          max_length=ctx.params["max_length"], progress="pseudo-labeling", uncovered_nan=True)
    covered = [~np.isnan(pr).any(axis=-1) for pr in probs]
    filled = [np.nan_to_num(pr, nan=0.0) for pr in probs]
    tags = probs_to_tags(filled, teacher.labels)  # uncovered words: all zeros, argmax O
    word_conf = [np.where(c, f.max(axis=-1), np.nan) for f, c in zip(filled, covered)]
    frame = pd.DataFrame({
        "id": [s.id for s in sentences],
        "tokens": [s.tokens for s in sentences],
        "tags": tags,
        "word_confidence": [c.astype(np.float32) for c in word_conf],
        "covered": [c.tolist() for c in covered],
        "confidence": [float(np.nanmean(c)) if c.size and not np.isnan(c).all() else 0.0 for c in word_conf],
        "entities": [len(spans(t)) for t in tags],
    })
    frame["kept"] = filter_mask(frame, min_confidence=p.min_confidence, require_entity=p.require_entity,
                                max_sentences=p.max_sentences)
    PSEUDO_LABELS.write(ctx.out, frame)
    offsets = np.cumsum([0] + [len(pr) for pr in probs])
    PROBS.write(ctx.out, probs=np.concatenate(probs).astype(np.float16), offsets=offsets,
                labels=np.array(teacher.labels))
    kept = frame[frame["kept"]]
    per_type: Counter = Counter(s.label for t in kept["tags"] for s in spans(t))
    hist, edges = np.histogram(frame["confidence"], bins=10, range=(0, 1))
    ctx.metrics.update(
        labels=teacher.labels,
        sentences=len(frame),
        words_not_labeled=int(sum((~c).sum() for c in covered)),  # cut by the teacher's max_length
        excluded_translations=excluded,
        kept=len(kept),
        dropped=len(frame) - len(kept),
        entities=dict(sorted(per_type.items())),
        mean_confidence=float(frame["confidence"].mean()),
        confidence_histogram={"counts": hist.tolist(), "edges": edges.round(2).tolist()},
        tags_ignored=bool(split_stats(ctx.inputs["ingest_target"], "target_unlabeled").get("read", {}).get("tags_ignored")),
    )


STAGE = StageSpec(
    name="pseudo_label",
    version="1",
    inputs=("ingest_target", "train", "project"),
    params=pseudo_label_params,
    reads=lambda config: {"ingest_target": ("target_unlabeled.*",), "train": ("model/*",),
                          "project": (PROJECTED.file,) if config.pseudo_label.exclude_translations else ()},
    libraries=("torch", "transformers"),
    compute=compute_pseudo_label,
    outputs=(PSEUDO_LABELS, PROBS),
    view=shown.VIEW,
    description="label unlabeled target text with the teacher's soft distributions",
)
