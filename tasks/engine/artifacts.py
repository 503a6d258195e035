"""The catalog of the stages' artifacts: every file a stage publishes, named once with its kind
(tasks/engine/artifact_kinds.py: how it is written and read), and typed readers over them.

A downstream stage (and a view) reads an upstream artifact through these functions, never by
importing the producing stage's module: a stage module then imports only what it computes with,
and its code fingerprint (tasks/engine/keys.py) covers the reader it uses, not another stage's compute.
Nothing here loads torch, transformers or seqeval: reading must stay cheap for a run that
reuses every stage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TYPE_CHECKING

from concner.tasks.engine.artifact_kinds import Arrays, Document, ModelFolder, Table, TaggedText
from concner.tasks.text.corpus import Sentence, from_frame

if TYPE_CHECKING:  # pandas and numpy load where a stage reads or writes a table: a rerun that only reuses never does
    import numpy as np
    import pandas as pd

MANIFEST = "manifest.json"  # written by the store (tasks/engine/store.py), not by a stage

# -- ingest, ingest_target: a table and its CoNLL twin per split
SPLIT_TABLE = Table("{split}.parquet", "a row per sentence: id, tokens, tags", optional=True)
SPLIT_CONLL = TaggedText("{split}.conll", "the same sentences as CoNLL text", optional=True)
# -- translate
TRANSLATIONS = Table("translations.parquet", "a row per sampled source sentence: id, source_text, "
                     "translation_tokens/_text, kept, quality flags")
# -- adapt
ADAPTED_ENCODER = ModelFolder("encoder", "the adapted encoder and its tokenizer", optional=True)
ADAPT_STEPS = Table("steps.parquet", "a row per logged step: losses", optional=True)
# -- project
PROJECTED = Table("projected.parquet", "a row per sentence pair: alignment, projected tags, per-entity "
                  "outcomes (JSON), kept flag")
PROJECTED_CONLL = TaggedText("projected.conll", "the kept target-language training sentences")
# -- train (the teacher), distill (the student)
MODEL = ModelFolder("model", "the trained model (transformers layout, plus the sentence head)")
STEPS = Table("steps.parquet", "a row per logged step: each loss term")
EPOCHS = Table("epochs.parquet", "a row per epoch: selection score")
SCORES_JSON = Document("scores.json", "seqeval scores per labeled target set")
PREDICTIONS = TaggedText("predictions_{split}.conll", "the model's tags on a labeled target set", optional=True)
# -- pseudo_label
PSEUDO_LABELS = Table("pseudo_labels.parquet", "a row per unlabeled sentence: tokens, argmax tags, word and "
                      "sentence confidence, kept flag")
PROBS = Arrays("probs.npz", "float16 [total words, labels] word distributions, sentence offsets, label list")
# -- evaluate
SCORES = Table("scores.parquet", "a row per model, set and entity type: precision, recall, F1, support")

# Which ingest artifact holds a split: the labeled source splits live in `ingest`, one target's
# splits in `ingest_target` (so several targets share one source artifact).
SOURCE_SPLITS = ("source_train", "source_dev")
TARGET_SPLITS = ("target_unlabeled", "target_dev", "target_test")
SPLITS = SOURCE_SPLITS + TARGET_SPLITS


def load_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def load_metrics(folder: Path) -> dict[str, Any]:
    """The metrics a stage recorded in its manifest (scores, counts, settings it resolved)."""
    return load_manifest(folder)["metrics"]


# -- ingest, ingest_target -------------------------------------------------------------------------


def load_split(folder: Path, split: str) -> list[Sentence]:
    """A split of an ingest artifact ([] when the run has none)."""
    table = SPLIT_TABLE.of(split=split)
    return from_frame(table.read(folder)) if table.exists(folder) else []


def corpus_split(inputs: Mapping[str, Path], split: str) -> list[Sentence]:
    """A split from a stage's inputs: source splits from `ingest`, target splits from `ingest_target`."""
    folder = inputs.get("ingest" if split in SOURCE_SPLITS else "ingest_target")
    return load_split(folder, split) if folder is not None else []


def sample_split(splits: Mapping[str, Any]) -> str | None:
    """The split whose sentences a view of an ingest artifact shows: the source sample for
    `ingest`; for `ingest_target` its labeled test set, else dev, else the unlabeled text."""
    return next((s for s in ("source_train", "target_test", "target_dev", "target_unlabeled") if s in splits), None)


def split_stats(folder: Path, split: str) -> dict[str, Any]:
    """An ingest artifact's recorded stats of one split ({} when it has none): for source_train the
    full file's path and sentence count before sampling, for every split what reading it found."""
    return load_metrics(folder)["splits"].get(split, {})


# -- translate -------------------------------------------------------------------------------------


def load_translations(folder: Path) -> pd.DataFrame:
    return TRANSLATIONS.read(folder)


# -- adapt ---------------------------------------------------------------------------------------

def adapted_encoder(folder: Path) -> Path:
    """The encoder folder of an adapt artifact."""
    return ADAPTED_ENCODER.path(folder)


# -- project ---------------------------------------------------------------------------------------


def load_projected_frame(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return PROJECTED.read(folder, columns)


def load_projected(folder: Path, *, kept_only: bool = True) -> list[Sentence]:
    """The projected target-language sentences (tags = projected tags), ids of their sources."""
    frame = load_projected_frame(folder)
    if kept_only and len(frame):
        frame = frame[frame["kept"]]
    return [Sentence(int(r.id), list(r.target_tokens), list(r.projected_tags)) for r in frame.itertuples()]


# -- pseudo_label ----------------------------------------------------------------------------------


def load_pseudo_label_frame(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return PSEUDO_LABELS.read(folder, columns)


def load_pseudo_labels(folder: Path) -> tuple[list[Sentence], list[np.ndarray], list[str]]:
    """Kept sentences (tags = teacher argmax), their word distributions (float32), and the label list."""
    frame = load_pseudo_label_frame(folder)
    import numpy as np

    data = PROBS.read(folder)
    offsets, all_probs = data["offsets"], data["probs"]
    sentences, probs = [], []
    for row_index, row in enumerate(frame.itertuples()):
        if row.kept:
            sentences.append(Sentence(int(row.id), list(row.tokens), list(row.tags)))
            probs.append(all_probs[offsets[row_index] : offsets[row_index + 1]].astype(np.float32))
    return sentences, probs, [str(label) for label in data["labels"]]


# -- train, distill --------------------------------------------------------------------------------


def model_folder(folder: Path) -> Path:
    """The saved model of a train (teacher) or distill (student) artifact."""
    return MODEL.path(folder)


def load_scores(folder: Path) -> dict[str, Any]:
    """A trained model's scores per labeled target set ({} when the run has none)."""
    return load_metrics(folder).get("scores", {})
