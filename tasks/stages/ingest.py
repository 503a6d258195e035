"""Ingest stages: read and validate the run's corpora, sample a low-resource source subset.

Two stages, so that the runs of several targets share one source artifact:
- ingest: the labeled source splits (source_train, sampled; source_dev);
- ingest_target: one target's splits (target_unlabeled, target_dev, target_test).
Output of each: one Parquet (a row per sentence) and one IOB2 CoNLL file per split, stats in the manifest.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from concner.tasks.engine.artifacts import SOURCE_SPLITS, SPLIT_CONLL, SPLIT_TABLE, SPLITS, TARGET_SPLITS
from concner.tasks.engine.config import RunConfig
from concner.tasks.text.conll import ReadReport, check_input_file, counted, read_conll, read_unlabeled
from concner.tasks.text.corpus import Sentence, corpus_stats, entity_types, to_frame
from concner.tasks.engine.errors import InputFileError, UserError
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.stage_summaries import ingest as shown
from concner.tasks.engine.store import file_digest

LABELED_SPLITS = ("source_train", "source_dev", "target_dev", "target_test")


def sample_covering_types(sentences: Sequence[Sentence], n: int, seed: int) -> list[Sentence]:
    """N sentences drawn with `seed`, including at least one sentence of every entity type.

    Types are covered first (rarest type first, so one pick can serve several common types),
    then the rest is filled at random. The sample keeps file order and original ids.
    """
    if n >= len(sentences):
        return list(sentences)
    rng = random.Random(seed)
    types = entity_types(sentences)
    if n < len(types):
        raise UserError(f"ingest.sample_size={n} cannot cover the {len(types)} entity types {types} of the source "
                        f"training data: set it to at least {len(types)}")
    by_type: dict[str, list[int]] = {t: [] for t in types}
    for i, s in enumerate(sentences):
        for label in {e.label for e in s.entities}:
            by_type[label].append(i)
    chosen: set[int] = set()
    for t in sorted(types, key=lambda t: len(by_type[t])):
        if not any(i in chosen for i in by_type[t]):
            chosen.add(rng.choice(by_type[t]))
    rest = [i for i in range(len(sentences)) if i not in chosen]
    chosen.update(rng.sample(rest, n - len(chosen)))
    return [sentences[i] for i in sorted(chosen)]


def read_split(config: RunConfig, split: str, path: Path) -> tuple[list[Sentence], ReadReport]:
    opts = dict(max_tokens=config.ingest.max_tokens, long_sentences=config.ingest.long_sentences)
    if split == "target_unlabeled":
        return read_unlabeled(path, fmt=config.data.unlabeled_format, **opts)
    return read_conll(path, labeled=True, repair_tags=config.ingest.repair_tags, **opts)


def split_paths(config: RunConfig, splits: Sequence[str] = SPLITS) -> dict[str, Path]:
    return {split: getattr(config.data, split) for split in splits if getattr(config.data, split) is not None}


def _file_digests(config: RunConfig, splits: Sequence[str]) -> dict[str, str]:
    files = split_paths(config, splits)
    for split, path in files.items():
        check_input_file(path, f"data.{split}")
    # contents, not locations, decide whether the artifact is still valid
    digests = {}
    for split, path in files.items():
        try:
            digests[split] = file_digest(path)
        except OSError as err:
            raise InputFileError(path, f"cannot be read: {err.strerror or err} (data.{split})") from None
    return digests


def reading_params(config: RunConfig) -> dict[str, Any]:
    i = config.ingest
    return {"max_tokens": i.max_tokens, "long_sentences": i.long_sentences, "repair_tags": i.repair_tags}


def ingest_params(config: RunConfig) -> dict[str, Any]:
    return {
        "files": _file_digests(config, SOURCE_SPLITS),
        **reading_params(config),
        "sample_size": config.ingest.sample_size,
        "source_dev_size": None if config.data.source_dev is not None else config.ingest.source_dev_size,
        "sample_seed": config.ingest.sample_seed if config.ingest.sample_seed is not None else config.seed,
    }


def ingest_target_params(config: RunConfig) -> dict[str, Any]:
    return {
        "lang": config.target_lang,  # the artifact is labelled with it (two targets may share files)
        "files": _file_digests(config, TARGET_SPLITS),
        **reading_params(config),
        "unlabeled_format": config.data.unlabeled_format,
        "max_unlabeled": config.ingest.max_unlabeled,
    }


def compute_ingest(ctx: StageContext) -> None:
    ctx.metrics["splits"] = _ingest_splits(ctx, SOURCE_SPLITS)
    ctx.metrics["entity_types"] = sorted(ctx.metrics["splits"]["source_train"]["entities"])


def held_out_dev_size(config: RunConfig, sentences_in_file: int) -> int:
    """Source sentences held out as the selection split when the run has no source_dev file."""
    if config.data.source_dev is not None:
        return 0
    return min(config.ingest.source_dev_size, sentences_in_file // 10)


def hold_out_dev(sentences: Sequence[Sentence], n: int, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """(rest, held-out dev): n sentences drawn with `seed`, both in file order with their ids."""
    if n <= 0:
        return list(sentences), []
    chosen = set(random.Random(f"source-dev:{seed}").sample(range(len(sentences)), n))
    return ([s for i, s in enumerate(sentences) if i not in chosen], [s for i, s in enumerate(sentences) if i in chosen])


def compute_ingest_target(ctx: StageContext) -> None:
    ctx.metrics["target_lang"] = ctx.config.target_lang
    ctx.metrics["splits"] = _ingest_splits(ctx, TARGET_SPLITS)


def _ingest_splits(ctx: StageContext, splits: Sequence[str]) -> dict[str, Any]:
    config = ctx.config
    stats: dict[str, Any] = {}
    for split, path in split_paths(config, splits).items():
        sentences, report = read_split(config, split, path)
        full = len(sentences)
        if split == "source_train":
            # read only here: the target splits' key does not cover the seeds, and need not
            seed = config.seed if config.ingest.sample_seed is None else config.ingest.sample_seed
            # the selection split comes out first, so the sample never holds its sentences
            sentences, held_out = hold_out_dev(sentences, held_out_dev_size(config, full), seed)
            if held_out:
                _write_split(ctx, "source_dev", held_out)
                stats["source_dev"] = {**corpus_stats(held_out), "file": str(path), "sentences_in_file": full,
                                       "held_out_from": "source_train", "read": vars(report)}
                ctx.log.info("ingest source_dev: %s held out of %s for model selection",
                             counted(len(held_out), "sentence"), path)
        if split == "source_train" and config.ingest.sample_size:
            sentences = sample_covering_types(sentences, config.ingest.sample_size, seed)
        if split == "target_unlabeled" and config.ingest.max_unlabeled:
            sentences = sentences[: config.ingest.max_unlabeled]
        _write_split(ctx, split, sentences)
        stats[split] = {**corpus_stats(sentences), "file": str(path), "sentences_in_file": full, "read": vars(report)}
        if report.tags_repaired:
            what = (counted(report.tags_repaired, "I- tag that continues no entity", "I- tags that continue no entity")
                    if report.scheme == "IOB2" else counted(report.tags_repaired, "invalid BIOES sequence"))
            ctx.log.warning("%s: %s repaired (first at line %s)", path, what, report.first_repair_line)
        ctx.log.info("ingest %s: %s from %s", split, counted(len(sentences), "sentence"), path)
    return stats


def _write_split(ctx: StageContext, split: str, sentences: Sequence[Sentence]) -> None:
    SPLIT_TABLE.of(split=split).write(ctx.out, to_frame(sentences))
    SPLIT_CONLL.of(split=split).write(ctx.out, sentences)


STAGE = StageSpec(
    name="ingest",
    version="1",
    inputs=(),
    params=ingest_params,
    compute=compute_ingest,
    outputs=(SPLIT_TABLE, SPLIT_CONLL),
    view=shown.VIEW,
    description="read, validate and sample the labeled source corpus",
)

TARGET_STAGE = StageSpec(
    name="ingest_target",
    version="1",
    inputs=(),
    params=ingest_target_params,
    compute=compute_ingest_target,
    outputs=(SPLIT_TABLE, SPLIT_CONLL),
    view=shown.TARGET_VIEW,
    description="read and validate one target's unlabeled text and labeled dev/test sets",
)
