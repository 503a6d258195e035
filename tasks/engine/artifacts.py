"""Typed readers of the stages' artifacts: where each file of an artifact lives and how to load it.

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

import numpy as np

from concner.tasks.text.corpus import Sentence, from_frame

if TYPE_CHECKING:  # pandas loads where a stage reads or writes a table: a rerun that only reuses never does
    import pandas as pd

# File names, shared by the stage that writes them and every reader.
MANIFEST = "manifest.json"
TRANSLATIONS = "translations.parquet"
PROJECTED = "projected.parquet"
PROJECTED_CONLL = "projected.conll"
PSEUDO_LABELS = "pseudo_labels.parquet"
PROBS = "probs.npz"
MODEL = "model"  # a model folder (ConcNerModel.save / transformers save_pretrained)
SCORES = "scores.parquet"  # evaluate's table

# Which ingest artifact holds a split: the labeled source splits live in `ingest`, one target's
# splits in `ingest_target` (so several targets share one source artifact).
SOURCE_SPLITS = ("source_train", "source_dev")
TARGET_SPLITS = ("target_unlabeled", "target_dev", "target_test")
SPLITS = SOURCE_SPLITS + TARGET_SPLITS


def split_file(split: str, suffix: str = "parquet") -> str:
    return f"{split}.{suffix}"


def load_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def load_metrics(folder: Path) -> dict[str, Any]:
    """The metrics a stage recorded in its manifest (scores, counts, settings it resolved)."""
    return load_manifest(folder)["metrics"]


# -- ingest, ingest_target -------------------------------------------------------------------------


def load_split(folder: Path, split: str) -> list[Sentence]:
    """A split of an ingest artifact ([] when the run has none)."""
    import pandas as pd

    path = folder / split_file(split)
    return from_frame(pd.read_parquet(path)) if path.exists() else []


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
    """A row per sampled source sentence: id, source_text, translation_tokens/_text, kept, flags."""
    import pandas as pd

    return pd.read_parquet(folder / TRANSLATIONS)


# -- adapt ---------------------------------------------------------------------------------------

ADAPTED_ENCODER = "encoder"  # the adapted encoder: a transformers folder (model and tokenizer)
ADAPT_STEPS = "steps.parquet"


def adapted_encoder(folder: Path) -> Path:
    """The encoder folder of an adapt artifact."""
    return folder / ADAPTED_ENCODER


# -- project ---------------------------------------------------------------------------------------


def load_projected_frame(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A row per sentence pair: alignment, projected tags, per-entity outcomes (JSON), kept flag."""
    import pandas as pd

    return pd.read_parquet(folder / PROJECTED, columns=columns)


def load_projected(folder: Path, *, kept_only: bool = True) -> list[Sentence]:
    """The projected target-language sentences (tags = projected tags), ids of their sources."""
    frame = load_projected_frame(folder)
    if kept_only and len(frame):
        frame = frame[frame["kept"]]
    return [Sentence(int(r.id), list(r.target_tokens), list(r.projected_tags)) for r in frame.itertuples()]


# -- pseudo_label ----------------------------------------------------------------------------------


def load_pseudo_label_frame(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A row per unlabeled sentence: tokens, argmax tags, word and sentence confidence, kept flag."""
    import pandas as pd

    return pd.read_parquet(folder / PSEUDO_LABELS, columns=columns)


def load_pseudo_labels(folder: Path) -> tuple[list[Sentence], list[np.ndarray], list[str]]:
    """Kept sentences (tags = teacher argmax), their word distributions (float32), and the label list."""
    frame = load_pseudo_label_frame(folder)
    data = np.load(folder / PROBS)
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
    return folder / MODEL


def load_scores(folder: Path) -> dict[str, Any]:
    """A trained model's scores per labeled target set ({} when the run has none)."""
    return load_metrics(folder).get("scores", {})
