"""Preflight: read every input file a run names and check them together, before any stage starts.

A bad input then ends the run before Prefect starts and before anything is written to the store,
with one message naming the file and line. The checks that need two files at once live here:
entity types that one labeled file has and another lacks, `ingest.sample_size` against the
corpus, a parallel file against the source. Files are read with the readers the stages use
(`ingest.read_split`, the translate stage's `read_parallel`), so what passes here reads there.

Warnings come back as strings (the CLI prints each once); errors raise UserError/InputFileError.
Reading CoNLL files of ~15k sentences takes about a second; each file is read once per call,
however many targets share it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from concner.tasks.engine.config import RunConfig
from concner.tasks.text.conll import ReadReport, check_input_file, read_conll
from concner.tasks.text.corpus import Sentence
from concner.tasks.engine.errors import InputFileError, UserError
from concner.tasks.stages.ingest import LABELED_SPLITS, read_split, sample_covering_types, split_paths

TYPES_HINT = "list the expected types in ingest.entity_types to make any other type an error"


@dataclass
class _Seen:
    """One entity type in one file: how many entities, and the line of the first."""

    count: int
    first_line: int


def check_inputs(config: RunConfig) -> list[str]:
    """Read and check every data file of every target of `config`; the warnings, each once.

    Raises UserError / InputFileError for the first error found.
    """
    return list(dict.fromkeys(_checked(config).warnings))


def _checked(config: RunConfig, stages: set[str] | None = None) -> "Preflight":
    check = Preflight(stages)
    for _branch, branch_config in config.branches():
        check.branch(branch_config)
    return check


class Preflight:
    def __init__(self, stages: set[str] | None = None) -> None:
        self.stages = stages  # the stages the run will go through (None: all); models only they load are checked
        self.warnings: list[str] = []
        self.notes: list[str] = []  # settings that do nothing (tasks/engine/config_checks.py), not problems
        self._reads: dict[tuple, tuple[list[Sentence], ReadReport]] = {}
        self._parallel: dict[tuple, tuple[list[list[str]], list | None]] = {}

    # ------------------------------------------------------------------ reading (cached)

    def read(self, config: RunConfig, split: str, path: Path) -> tuple[list[Sentence], ReadReport]:
        i = config.ingest
        unlabeled = split == "target_unlabeled"
        key = (str(path), unlabeled, i.max_tokens, i.long_sentences, i.repair_tags,
               config.data.unlabeled_format if unlabeled else None)
        if key not in self._reads:
            check_input_file(path, f"data.{split}")
            self._reads[key] = read_split(config, split, path)
        return self._reads[key]

    def read_parallel(self, config: RunConfig, path: Path, what: str, expected: int,
                      source: Path) -> tuple[list[list[str]], list | None]:
        from concner.tasks.stages.translate import read_parallel

        key = (str(path), config.ingest.repair_tags, expected, str(source))
        if key not in self._parallel:
            check_input_file(path, what)
            # the stage's own reader; it reads nothing from its context but the config
            self._parallel[key] = read_parallel(path, expected, str(source), SimpleNamespace(config=config))
        return self._parallel[key]

    # ------------------------------------------------------------------ one target

    def branch(self, config: RunConfig) -> None:
        corpora: dict[str, tuple[Path, list[Sentence]]] = {}
        reports: dict[str, ReadReport] = {}
        for split, path in split_paths(config).items():
            sentences, report = self.read(config, split, path)
            corpora[split], reports[split] = (path, sentences), report
            if split != "target_unlabeled":
                self._repairs(split, path, report)
        train_path, train = corpora["source_train"]
        _has_entities(config, train_path, train)
        self._sample_size(config, train_path, train)
        self._entity_types(config, {s: corpora[s] for s in LABELED_SPLITS if s in corpora})
        self._translations(config, train_path, train, reports["source_train"])
        from concner.tasks.engine.config_checks import check_config  # models and settings, after the files

        unlabeled = corpora.get("target_unlabeled")
        self.notes.extend(check_config(config, unlabeled=(unlabeled[0], len(unlabeled[1])) if unlabeled else None,
                                       source_train=len(train), stages=self.stages))
        _model_folders(config, self.stages)

    def _repairs(self, split: str, path: Path, report: ReadReport) -> None:
        n, line = report.tags_repaired, report.first_repair_line
        if not n:
            return
        if report.scheme == "IOB2":
            self.warnings.append(
                f"{path}, line {line}: {n} I- tag{'s' if n > 1 else ''} continue{'' if n > 1 else 's'} no entity "
                f"(an I-X after O, at a sentence start or after another type; first at this line) although the "
                f"file is IOB2 (its B- tags start entities); each is read as conlleval reads it, as the start "
                f"of an entity (data.{split})"
            )
        else:
            self.warnings.append(
                f"{path}, line {line}: {n} invalid BIOES sequence{'s' if n > 1 else ''} repaired as conlleval "
                f"reads them (ingest.repair_tags: true); the first is in the sentence starting at this line "
                f"(data.{split})"
            )

    def _sample_size(self, config: RunConfig, path: Path, train: list[Sentence]) -> None:
        n = config.ingest.sample_size
        if not n:
            return
        if n >= len(train):
            self.warnings.append(
                f"ingest.sample_size {n} >= {len(train)} sentences in {path}: using all {len(train)}")
            return
        seed = config.seed if config.ingest.sample_seed is None else config.ingest.sample_seed
        sample_covering_types(train, n, seed)  # raises when n cannot cover every entity type

    def _translations(self, config: RunConfig, train_path: Path, train: list[Sentence], report: ReadReport) -> None:
        t = config.translate
        if t.backend == "parallel":
            if t.parallel_file is None:
                raise UserError("translate.backend=parallel needs translate.parallel_file")
            if report.long_sentences:
                line, tokens = report.first_long
                many = f"{report.long_sentences} sentences" if report.long_sentences > 1 else "a sentence"
                raise UserError(
                    f"{train_path}, line {line}: translate.backend=parallel needs unsplit source sentences, but "
                    f"{many} of this file {'are' if report.long_sentences > 1 else 'is'} longer than "
                    f"ingest.max_tokens={config.ingest.max_tokens} (the first here, {tokens} tokens): set "
                    "ingest.long_sentences=reject (and raise ingest.max_tokens if needed)")
            _, gold = self.read_parallel(config, t.parallel_file, "translate.parallel_file", len(train), train_path)
            if gold is not None and config.ingest.entity_types:
                sentences, _ = read_conll(t.parallel_file, repair_tags=config.ingest.repair_tags)
                _types_in(t.parallel_file, sentences, config.ingest.entity_types, "translate.parallel_file")
        if t.reference_file is not None:
            self.read_parallel(config, t.reference_file, "translate.reference_file", len(train), train_path)

    # ------------------------------------------------------------------ entity types

    def _entity_types(self, config: RunConfig, labeled: dict[str, tuple[Path, list[Sentence]]]) -> None:
        """Types of every labeled split: any type outside ingest.entity_types is an error; a type in
        a dev/test split that source_train lacks, or in source_train and no other labeled split, a warning."""
        allowed = config.ingest.entity_types
        seen = {split: _types_in(path, sentences, allowed, f"data.{split}")
                for split, (path, sentences) in labeled.items()}
        train_path, train = labeled["source_train"][0], seen["source_train"]
        others = {split: types for split, types in seen.items() if split != "source_train"}
        for split, types in others.items():
            path = labeled[split][0]
            for typ, s in sorted(types.items()):
                if typ not in train:
                    self.warnings.append(
                        f"entity type {typ}: {_entities(s.count)} in data.{split} ({path}, first at line "
                        f"{s.first_line}) but none in data.source_train ({train_path}): the model cannot learn "
                        f"it, so every {typ} there counts as missed. Fix the tags if that is a mistake; {TYPES_HINT}"
                    )
        if not others:
            return
        for typ, s in sorted(train.items()):
            if not any(typ in types for types in others.values()):
                where = ", ".join(f"data.{split} ({labeled[split][0]})" for split in others)
                self.warnings.append(
                    f"entity type {typ}: {_entities(s.count)} in data.source_train ({train_path}, first at line "
                    f"{s.first_line}) but none in {where}: the model learns it, but no labeled split scores it "
                    f"(usual when the corpora differ, e.g. CoNLL's MISC); {TYPES_HINT}"
                )


def _key_place(config: RunConfig, key: str) -> str:
    place = config.place(*key.split("."))
    return f"{place}: {key}" if place else key


def _has_entities(config: RunConfig, path: Path, train: Sequence[Sentence]) -> None:
    """A labeled source without a single entity: one error now, instead of a warning per type the
    other splits have and the teacher failing its guard after the stages before it have run."""
    if any(s.entities for s in train):
        return
    raise UserError(f"{_key_place(config, 'data.source_train')}: {path}: no entities in {len(train)} sentences "
                    "(every tag is O, or there is no tag column): the teacher learns from these tags; give a "
                    "labeled file with tags such as B-PER")


# what from_pretrained needs beside config.json: weights in one of the formats transformers reads
# (sharded ones through their index), and a tokenizer (a fast tokenizer's file, or a vocabulary)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model",
                   "tokenizer.model", "source.spm")
ENCODER_KEYS = ("train.encoder", "project.aligner_model", "distill.encoder")


def _model_folders(config: RunConfig, stages: set[str] | None) -> None:
    """An encoder or aligner folder with config.json but no weights or no tokenizer: caught here,
    not when its stage loads it after the stages before it have run."""
    from concner.tasks.engine.config_checks import MODEL_STAGES, model_keys
    from concner.tasks.engine.model_info import describe

    for key, ref in model_keys(config).items():
        if key not in ENCODER_KEYS or (stages is not None and not MODEL_STAGES[key] & stages):
            continue
        info = describe(ref)
        if info.kind != "local" or info.path is None:
            continue
        lacks = [f"no {what} ({' or '.join(names[:2])}, ...)"
                 for what, names in (("weights", WEIGHT_FILES), ("tokenizer files", TOKENIZER_FILES))
                 if not any((info.path / name).is_file() for name in names)]
        if lacks:
            raise UserError(f"{_key_place(config, key)}: model {ref!r}: {info.path} holds config.json but "
                            f"{' and '.join(lacks)}: save the model and its tokenizer there with save_pretrained")


def _entities(n: int) -> str:
    return f"{n} entit{'ies' if n != 1 else 'y'}"


def _types_in(path: Path, sentences: Sequence[Sentence], allowed: Sequence[str] | None, what: str) -> dict[str, _Seen]:
    """Entity count and first line per type; a type outside `allowed` (when given) is an error at its line."""
    seen: dict[str, _Seen] = {}
    for sentence in sentences:
        for span in sentence.entities:
            line = sentence.line + span.start
            if allowed is not None and span.label not in allowed:
                raise InputFileError(
                    path,
                    f"entity type {span.label!r} ({what}) is not one of "
                    f"ingest.entity_types {list(allowed)}: fix the tag, or add the type to ingest.entity_types",
                    line,
                )
            if span.label in seen:
                seen[span.label].count += 1
            else:
                seen[span.label] = _Seen(1, line)
    return seen


def check_store(root: Path) -> None:
    """The artifact store must be a folder this process can write, or one it can create.

    Checked before the run starts: once inside the Prefect flow, a failed write is logged by
    Prefect with a traceback before the CLI can print its one message.
    """
    root = Path(root)
    existing = root
    while not existing.exists() and existing != existing.parent:  # exists() is False below a file too
        existing = existing.parent
    what = "it" if existing == root else str(existing)
    hint = "give another --store (or CONCNER_STORE, or `store:` in the config)"
    if not existing.is_dir():
        raise UserError(f"artifact store {root}: {what} is a file, not a folder; {hint}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"artifact store {root}: {what} is not writable; {hint}")


def check_and_warn(config: RunConfig, console: Any, store: Path | None = None,
                   stages: set[str] | None = None) -> list[str]:
    """check_inputs (and check_store), printing each warning once in yellow to `console` (stderr).

    `stages`: the stages the run goes through (e.g. up to --until); None: all of them."""
    if store is not None:
        check_store(store)
    check = _checked(config, stages)
    warnings = list(dict.fromkeys(check.warnings))
    for warning in warnings:
        console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    for note in dict.fromkeys(check.notes):
        console.print(f"note: {note}", style="dim", highlight=False, markup=False, soft_wrap=True)
    return warnings
