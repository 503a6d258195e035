"""Run configuration's schema: one YAML file per run, validated by pydantic; unknown keys are errors.

Reading a file, --set overrides and error messages that name the file and line are in
tasks/engine/config_loading.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, field_validator, model_validator
from pydantic import ValidationInfo


# The run config's schema: a setting enters a stage's key as a value, through the
# stage's params (tests/test_key_coverage.py checks every one it reads), so editing this
# module (a message, a check) recomputes nothing (tasks/engine/keys.py).
ENGINE_ONLY = True


class _Section(BaseModel):
    # inf or nan in a float trains without a word (a temperature of inf pins a loss term): never a setting
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Section):
    source_train: Path
    source_dev: Path | None = None
    target_unlabeled: Path | None = None
    target_dev: Path | None = None
    target_test: Path | None = None
    unlabeled_format: Literal["auto", "conll", "lines"] = "auto"


class IngestConfig(_Section):
    sample_size: int | None = Field(None, ge=1, description="low-resource subset of N source sentences")
    sample_seed: int | None = None  # None = the run's seed; fix it to vary training seeds over one sample
    max_tokens: int = Field(200, ge=1)
    long_sentences: Literal["reject", "split"] = "reject"
    repair_tags: bool = False
    max_unlabeled: int | None = Field(None, ge=1)
    # Without data.source_dev, this many labeled source sentences (at most a tenth of the file)
    # are held out *before* sampling, as the selection split: no target labels are needed.
    source_dev_size: int = Field(200, ge=0)
    # The entity types the run expects, e.g. [PER, ORG, LOC]: any other tag type in a labeled file
    # is an error at its line. None: types come from the data, and a type that one labeled file
    # has and another lacks is only a warning (corpora legitimately differ: CoNLL MISC).
    entity_types: list[str] | None = Field(None, min_length=1)

    @field_validator("entity_types")
    @classmethod
    def _types_not_tags(cls, types: list[str] | None) -> list[str] | None:
        for t in types or ():
            if not re.fullmatch(r"\S+", t) or t == "O":
                raise ValueError(f"{t!r} is not an entity type name (one word, e.g. PER)")
            if re.match(r"[BIESLU]-", t):
                raise ValueError(f"list entity types, not tags: write {t[2:]!r}, not {t!r}")
        return types


class TranslateConfig(_Section):
    backend: Literal["marian", "parallel"] = "marian"
    model: str | None = None  # hub name, local folder, or "tiny"; None = Helsinki-NLP/opus-mt-{src}-{tgt}
    parallel_file: Path | None = None  # for backend=parallel: CoNLL or one sentence per line
    reference_file: Path | None = None  # reference translations for BLEU/chrF
    reverse_model: str | None = None  # target->source model for round-trip chrF
    batch_size: int = Field(16, ge=1)
    max_input_length: int = Field(128, ge=8)
    max_new_tokens: int = Field(128, ge=1)
    num_beams: int = Field(4, ge=1)
    target_lang_token: str | None = None
    min_chrf: float | None = Field(None, ge=0, le=100)


class AdaptConfig(_Section):
    """Continued pretraining of train.encoder on the target language before the teacher trains
    (tasks/training/adapt.py). The adapted encoder is the teacher's, the student's (distill.encoder unset)
    and, with project.aligner_model: adapted, the aligner's."""

    enabled: bool = False
    steps: int = Field(1000, ge=1)  # optimizer steps of batch_size examples, drawn by the weights below
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    mask_rate: float = Field(0.15, gt=0, lt=1)
    max_length: int = Field(128, ge=8)
    # each example's objective is drawn with these weights (0 turns one off): masked-LM on target
    # text (unlabeled text + translations), translation-LM on (source, translation) pairs, and
    # masked-LM on source sentences, so that the source language is not forgotten
    target_weight: float = Field(0.5, ge=0)
    tlm_weight: float = Field(0.3, ge=0)
    source_weight: float = Field(0.2, ge=0)
    # target words added to a WordPiece vocabulary (the ones that save the most tokens on the target
    # text), their embeddings the mean of the encoder's pieces of the same word
    new_tokens: int = Field(0, ge=0)
    heldout: int = Field(200, ge=0)  # unlabeled target sentences held out: masked-LM loss before/after


class ProjectConfig(_Section):
    # a hub name, a local folder, `tiny`, or `adapted`: the adapt stage's encoder (needs adapt.enabled)
    aligner_model: str = "bert-base-multilingual-cased"
    layer: int = Field(8, ge=0)
    method: Literal["mwmf", "itermax", "inter"] = "mwmf"
    batch_size: int = Field(32, ge=1)
    keep: Literal["all", "complete"] = "all"


class LoopConfig(_Section):
    """The training loop's settings, shared by the teacher's (`train`) and the student's (`distill`)."""

    # At most this many epochs; early stopping on the selection split can end training sooner.
    epochs: int = Field(10, ge=1)
    # The schedule is sized in optimizer steps: 100-1,000 labeled sentences give 7-63 steps per
    # epoch, and 3 epochs of 500 sentences (96 steps at 3e-5) learned nothing on a held-out pair.
    # More epochs are run when `epochs` would give fewer steps than this (early stopping on the
    # selection split still ends training when it stops improving).
    min_steps: int = Field(150, ge=0)
    batch_size: int = Field(16, ge=1)
    # batches of similar-length sentences: less padding, so faster steps (mostly on a GPU); off by
    # default because it changes which sentences share a batch
    length_buckets: bool = False
    # torch.compile the training forward pass: fewer, fused GPU kernels; the first steps pay the
    # compilation (tens of seconds), so it pays on long runs on a GPU only
    compile: bool = False
    # on a GPU, each batch shape's forward and backward (the loss terms and their balancing) is
    # captured once as a CUDA graph and replayed; no effect on a CPU, off when compile is on
    cuda_graphs: bool = True
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(128, ge=8)
    patience: int | None = Field(2, ge=1)
    # model selection: the source dev split (zero-shot premise) unless the user asks for target_dev
    select_on: Literal["source_dev", "target_dev"] = "source_dev"


class TrainConfig(LoopConfig):
    encoder: str = "bert-base-multilingual-cased"
    use_translations: bool = True
    # With 3 epochs, 17 of 18 rows at 500 and 1,000 sentences were still improving on source dev at
    # their last epoch; with 10, at N=500 CE + translations scored 47.8 instead of 44.4 on the
    # target test and the teacher 48.2 instead of 43.2 (README, "The training recipe"). At 100
    # sentences min_steps gives 22 epochs anyway.
    epochs: int = Field(10, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    lambda_tcl: float = Field(1.0, ge=0)
    lambda_lcl: float = Field(1.0, ge=0)
    tcl_temperature: float = Field(0.1, gt=0)
    lcl_temperature: float = Field(0.1, gt=0)
    lcl_o_mode: Literal["keep", "subsample", "exclude_anchor"] = "subsample"
    lcl_o_ratio: float = Field(1.0, gt=0)
    # "head": LCL on the token head's projection (SupCon practice); "hidden": on the classifier's
    # own input features. Kept selectable because the two behave very differently (README table).
    lcl_features: Literal["head", "hidden"] = "head"
    # grad_norm: TCL's and LCL's gradients at the encoder output are capped at lambda x CE's
    balance: Literal["grad_norm", "none"] = "grad_norm"
    proj_dim: int = Field(128, ge=1)
    # the guard: a teacher scoring below this F1 on its selection split fails the train stage
    # (null: no guard); also fails when it predicts under a tenth of the gold entities there
    min_selection_f1: float | None = Field(0.05, ge=0, le=1)


class PseudoLabelConfig(_Section):
    batch_size: int = Field(32, ge=1)
    # drop unlabeled sentences that are (token for token) translations the teacher trained on:
    # the student must learn from target text the teacher has not seen with projected labels
    exclude_translations: bool = True
    min_confidence: float | None = Field(None, ge=0, le=1)
    require_entity: bool = False
    max_sentences: int | None = Field(None, ge=1)


class DistillConfig(LoopConfig):
    encoder: str | None = None  # None = the teacher's encoder
    loss: Literal["kl", "mse"] = "kl"
    temperature: float = Field(1.0, gt=0)
    hard_label_confidence: float | None = Field(None, ge=0, le=1)
    # a cap, not a schedule: early stopping on the selection split ends distillation. With 3, the
    # student's best epoch was its last in 8 of 9 runs of the en-es recipe; with 20, every run
    # stopped on its own, at 7-14 epochs (benchmarks/results/recipe_gpu.json and
    # student_unlabeled_3000_gpu.json; README, "The training recipe")
    epochs: int = Field(20, ge=1)


DASK_ADDRESS = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def check_dask_address(address: str) -> str:
    """A Dask scheduler address, `tcp://HOST:PORT` (or `tls://`); ValueError saying what is wrong."""
    match = DASK_ADDRESS.fullmatch(address.strip())
    if match is None:
        raise ValueError(f"{address!r} is not a Dask scheduler address: expected tcp://HOST:PORT, "
                         "e.g. tcp://10.0.0.5:8786 (what `dask scheduler` prints)")
    if not 0 < int(match.group(3)) < 65536:
        raise ValueError(f"{address!r}: port {match.group(3)} is not between 1 and 65535")
    return address.strip()


class RunnerConfig(_Section):
    """How the stages run: `sequential` (one after another in this process, the default) or `dask`
    (through prefect-dask: independent branches and sweep members at once, on a LocalCluster of
    `workers` processes, or on the existing cluster whose scheduler is at `address`). Not part of
    any key: both give the same artifacts."""

    kind: Literal["sequential", "dask"] = "sequential"
    address: str | None = None  # tcp://HOST:PORT of a running `dask scheduler`; None: a LocalCluster
    workers: int = Field(2, ge=1)  # LocalCluster worker processes (sized for a 2-core machine)
    threads_per_worker: int = Field(1, ge=1)  # stages per worker process at once
    # torch threads per worker; None: as many as torch uses in the process that starts the run, so
    # the bytes equal a sequential run's (CPU float sums depend on the thread count)
    torch_threads: int | None = Field(None, ge=1)

    @field_validator("address")
    @classmethod
    def _address_form(cls, address: str | None) -> str | None:
        return None if address is None else check_dask_address(address)

    @model_validator(mode="after")
    def _address_needs_dask(self) -> "RunnerConfig":
        if self.address is not None and self.kind != "dask":
            raise ValueError("runner.address is the scheduler of a Dask cluster: it needs runner.kind: dask")
        return self


def _partial(section: type[_Section], name: str) -> type[_Section]:
    """`section` with every field optional and unset by default: a per-target override of it."""
    fields: dict[str, Any] = {k: (f.annotation | None, None) for k, f in section.model_fields.items()}
    return create_model(name, __base__=_Section, **fields)


TranslateOverride = _partial(TranslateConfig, "TranslateOverride")
TARGET_DATA_FIELDS = ("target_unlabeled", "target_dev", "target_test", "unlabeled_format")


class TargetDataConfig(_Section):
    target_unlabeled: Path | None = None
    target_dev: Path | None = None
    target_test: Path | None = None
    unlabeled_format: Literal["auto", "conll", "lines"] = "auto"


class TargetConfig(_Section):
    """One target of a multi-target run: its language, its own target-side files, and the
    translate settings that differ from the run's (usually the model or the parallel file)."""

    lang: str
    name: str | None = None  # the branch's name in the run record; default: lang
    data: TargetDataConfig = TargetDataConfig()
    # only the fields given here change; null means "the run's value"
    translate: TranslateOverride = TranslateOverride()  # type: ignore[valid-type]

    @property
    def branch(self) -> str:
        return self.name or self.lang


class RunConfig(_Section):
    name: str = "run"
    source_lang: str = "en"
    target_lang: str | None = None  # required unless `targets` lists several
    targets: list[TargetConfig] = []
    seed: int = 13
    store: Path | None = None
    data: DataConfig
    ingest: IngestConfig = IngestConfig()
    translate: TranslateConfig = TranslateConfig()
    adapt: AdaptConfig = AdaptConfig()
    project: ProjectConfig = ProjectConfig()
    train: TrainConfig = TrainConfig()
    pseudo_label: PseudoLabelConfig = PseudoLabelConfig()
    distill: DistillConfig = DistillConfig()
    runner: RunnerConfig = RunnerConfig()  # how stages run (sequential, or on Dask); enters no key
    # where each key came from (file line or --set), for checks made after loading (tasks/engine/config_checks.py)
    _where: Any = PrivateAttr(default=None)
    _prefix: tuple[str, ...] = PrivateAttr(default=())

    def remember_origins(self, where: Any) -> None:
        """Keep where each key came from (tasks/engine/config_loading.py's Origins) for `place`."""
        self._where = where

    def place(self, *path: str) -> str | None:
        """Where a key was set ("run.yaml, line 12" or "--set k=v"); None for a default or an unknown origin."""
        if self._where is None:
            return None
        place, _ = self._where(tuple(path), self._prefix)
        return None if place == self._where.source else place

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, name: str) -> str:
        # the name becomes part of run ids and file names in the store: a '/' or '..' would write
        # outside runs/, and a leading '.' would hide the record
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
            raise ValueError(f"{name!r} is not a run name: use letters, digits, '_', '.' and '-' "
                             "(not starting with '.'), e.g. en-es")
        return name

    @field_validator("source_lang", "target_lang")
    @classmethod
    def _lang_not_empty(cls, lang: str | None) -> str | None:
        if lang is not None and not lang.strip():
            raise ValueError("empty language code: give one such as en, es, de")
        return lang

    @field_validator("target_lang")
    @classmethod
    def _target_differs(cls, lang: str | None, info: ValidationInfo) -> str | None:
        _check_differs(lang, info.data.get("source_lang"))
        return lang

    @model_validator(mode="after")
    def _selection_split_is_given(self) -> "RunConfig":
        if "target_dev" in (self.train.select_on, self.distill.select_on):
            devs = [t.data.target_dev for t in self.targets] if self.targets else [self.data.target_dev]
            if any(d is None for d in devs):
                raise ValueError("select_on: target_dev needs data.target_dev (for every target); "
                                 "the default, source_dev, needs no target labels")
        return self

    @model_validator(mode="after")
    def _adapted_needs_adapt(self) -> "RunConfig":
        if self.project.aligner_model == "adapted" and not self.adapt.enabled:
            raise ValueError("project.aligner_model: adapted uses the adapt stage's encoder: it needs adapt.enabled: true")
        if "adapted" in (self.train.encoder, self.distill.encoder) and not self.adapt.enabled:
            raise ValueError("encoder `adapted` is the adapt stage's encoder: it needs adapt.enabled: true "
                             "(train.encoder names the encoder to adapt)")
        if self.train.encoder == "adapted":
            raise ValueError("train.encoder names the encoder to start from (adapted with adapt.enabled: true), "
                             "not `adapted`")
        return self

    @model_validator(mode="after")
    def _targets_are_named_once(self) -> "RunConfig":
        if not self.targets:
            if not self.target_lang:
                raise ValueError("target_lang is required (or list several targets under `targets`)")
            return self
        branches = [t.branch for t in self.targets]
        bad = [b for b in branches if not re.fullmatch(r"[A-Za-z0-9_.-]+", b)]
        if bad:  # the name becomes part of record entries (`train@de`) and file names
            raise ValueError(f"targets: names may hold only letters, digits, '_', '.', '-' (got {bad})")
        if len(set(branches)) != len(branches):
            raise ValueError(f"targets: every target needs a distinct name (got {branches}); set `name`")
        if self.target_lang:
            raise ValueError("give either target_lang (one target) or targets (several), not both")
        shared = [f for f in TARGET_DATA_FIELDS[:3] if getattr(self.data, f) is not None]
        if shared:
            raise ValueError(f"with `targets`, give {', '.join('data.' + f for f in shared)} per target")
        return self

    @property
    def target_langs(self) -> list[str]:
        """The target languages, for labels: ["es"], or one per target of a multi-target run."""
        return [t.lang for t in self.targets] if self.targets else [str(self.target_lang)]

    def branches(self) -> list[tuple[str | None, "RunConfig"]]:
        """(branch name, single-target config) per target; one (None, self) for a one-target run.

        A branch config is the run's config with that target's language, files and translate
        settings in place: the stages of a branch never know that other targets exist, so a
        target's artifacts are the same (same keys) whether it runs alone or beside others.
        """
        if not self.targets:
            return [(None, self)]
        return [(target.branch, self.branch_config(target)) for target in self.targets]

    def branch_config(self, target: TargetConfig) -> "RunConfig":
        base = self.model_dump()
        raw = {**base, "targets": [], "target_lang": target.lang,
               "data": {**base["data"], **target.data.model_dump()},
               "translate": {**base["translate"], **target.translate.model_dump(exclude_none=True)}}
        branch = RunConfig.model_validate(raw)
        branch._where, branch._prefix = self._where, ("targets", str(self.targets.index(target)))
        return branch


def same_language(lang: str | None, source: str | None) -> str | None:
    if lang and source and lang.strip().casefold() == source.strip().casefold():
        return (f"{lang!r} is the same language as source_lang: the pipeline transfers from the source "
                "language to a different target language; set it to the language of the target files")
    return None


def _check_differs(lang: str | None, source: str | None) -> None:
    problem = same_language(lang, source)
    if problem:
        raise ValueError(problem)
