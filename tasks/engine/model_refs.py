"""Model references in configs: a hub name, a local folder, or `tiny`.

`tiny` builds a small random-weight model from the run's own ingested text (cached under
`<store>/models/`), so the demo and tests run the real code paths without downloading weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from concner.tasks.engine.artifacts import corpus_split
# package: references resolve in model_info, which the key code reads too (no import circle)
from concner.tasks.engine.model_info import PACKAGE_PREFIX, local_model_path  # noqa: F401

TINY = "tiny"
ADAPTED = "adapted"  # the adapt stage's encoder (its artifact's encoder/ folder)


def teacher_encoder(config) -> str:
    """The reference the teacher starts from: the adapt stage's encoder when adapt is on, else
    train.encoder. The one place that decides it, for the train stage and the student's default."""
    return ADAPTED if config.adapt.enabled else config.train.encoder


def student_encoder(config) -> str:
    """distill.encoder, else the teacher's encoder."""
    return config.distill.encoder or teacher_encoder(config)


def _texts(inputs: Mapping[str, Path], split: str) -> list[str]:
    return [" ".join(s.tokens) for s in corpus_split(inputs, split)]


def tiny_cache(store_root: Path | None, kind: str, *text_groups: list[str]) -> Path:
    """One folder per distinct input text, so runs of different corpora never rebuild each other's models."""
    from concner.tasks.engine.keys import code_fingerprint

    # the builder's code too: a changed tiny model must not be served from an older build
    payload = code_fingerprint("concner.models.tiny") + "\x00" + "\x00".join("\n".join(g) for g in text_groups)
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
    return (store_root or Path("artifacts")) / "models" / f"{kind}-{digest}"


def resolve_encoder(ref: str, inputs: Mapping[str, Path], store_root: Path | None) -> str:
    """The encoder for alignment and NER; `tiny` = a small BERT whose vocabulary covers both languages;
    `adapted` = the adapt stage's output (an input of the stage asking)."""
    if ref == ADAPTED:
        from concner.tasks.engine.artifacts import adapted_encoder

        # the folder in the store, not the compute view's links to it: its path goes into manifests
        return str((adapted_encoder(inputs["adapt"]) / "config.json").resolve().parent)
    if ref != TINY:
        return local_model_path(ref)
    from concner.models.tiny import build_tiny_encoder

    texts = _texts(inputs, "source_train") + _texts(inputs, "target_unlabeled")
    folder = tiny_cache(store_root, "encoder", texts)
    with _building(folder):
        return str(build_tiny_encoder(texts, folder))


def resolve_translator(ref: str, inputs: Mapping[str, Path], store_root: Path | None, *, reverse: bool = False) -> str:
    """A seq2seq translator; `tiny` = a small random Marian with SentencePiece on the run's text."""
    if ref != TINY:
        return local_model_path(ref)
    from concner.models.tiny import build_tiny_marian

    src, tgt = _texts(inputs, "source_train"), _texts(inputs, "target_unlabeled")
    if reverse:
        src, tgt = tgt, src
    folder = tiny_cache(store_root, "marian", src, tgt)
    with _building(folder):
        return str(build_tiny_marian(src, tgt, folder))


def _building(folder: Path):
    """One builder per tiny-model folder at a time: stages running side by side (Dask workers,
    two processes on one store) that need the same model wait for it instead of replacing it
    while the other reads it."""
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder.parent / f".{folder.name}.lock"))
