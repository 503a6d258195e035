"""`concner predict MODEL FILE`: tag a text file with an exported token-classification model.

MODEL is any folder `save_pretrained` wrote for a token classifier: a stage's `model/` folder
(teacher: stages/train/<key>/model, student: stages/distill/<key>/model; ConcNerModel.load reads
it) or a plain transformers folder without concner's sentence head. FILE is CoNLL (the first
column is read as tokens, any tag column is ignored) or plain text with one sentence per line
(word-tokenized like the pipeline's unlabeled text); the format is detected.

Output: tab-separated `token<TAB>tag` lines in IOB2, a blank line after each sentence. By
default it is written beside the input as `<FILE stem>.pred.conll` (a file the user can score or
feed back to `concner` as data); `--out -` writes it to stdout for piping, with the progress
bar and summary on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

import torch
from torch import Tensor, nn

from concner.tasks.text.corpus import Sentence
from concner.tasks.engine.errors import UserError
from concner.tasks.text.tags import TagError, parse_tag, spans, to_iob2

STDOUT = "-"
HEAD_CONFIG = "sentence_head.json"  # marks a ConcNerModel folder (see models/ner_model.py)
_NO_LIMIT = 100_000  # tokenizers without a known limit report a huge model_max_length


class TaggerOutput(NamedTuple):
    logits: Tensor  # [B, T, C], label order = the tagger's `labels`


class HFTagger(nn.Module):
    """A plain transformers token classifier behind the interface `predict_probs` uses:
    `.tokenizer`, `.labels` and forward(input_ids, attention_mask).logits.

    Its labels are reordered so that "O" comes first: predict_probs gives words cut off by
    max_length a confident label 0, which must be "O" (concner's own models put it first;
    other models need not).
    """

    def __init__(self, token_model: nn.Module, tokenizer, labels: Sequence[str]):
        super().__init__()
        self.token_model = token_model
        self.tokenizer = tokenizer
        order = [labels.index("O")] + [i for i, label in enumerate(labels) if label != "O"]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        self._labels = [labels[i] for i in order]

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TaggerOutput:
        # keywords, not positions: the positional order of forward() differs between architectures
        logits = self.token_model(input_ids=input_ids, attention_mask=attention_mask).logits
        return TaggerOutput(logits.index_select(-1, self.order))


@dataclass
class LoadedTagger:
    model: nn.Module  # ConcNerModel or HFTagger
    kind: str  # "concner" or "transformers"
    scheme: str  # "IOB" or "BIOES": the label scheme the model emits
    max_positions: int | None  # subwords the model can take, when it says


@dataclass
class PredictSummary:
    model: Path
    kind: str
    input: Path
    input_format: str  # "conll" or "lines"
    tags_ignored: bool
    out: Path | None  # None: stdout
    sentences: int
    tokens: int
    max_length: int
    truncated: int  # sentences with words past max_length subwords (tagged O)
    entities: dict[str, int] = field(default_factory=dict)


def check_labels(labels: Sequence[str], folder: Path) -> str:
    """The model's tag scheme; a model whose labels are not entity tags cannot write CoNLL."""
    try:
        prefixes = {parse_tag(label)[0] for label in labels}
    except TagError:
        raise UserError(
            f"{folder}: the model's labels ({', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''}) are not "
            "IOB/BIOES entity tags like O, B-PER, I-PER: set id2label in its config.json"
        ) from None
    if "O" not in labels:
        raise UserError(f"{folder}: the model has no 'O' label ({', '.join(labels)}): not an entity tagger")
    return "BIOES" if prefixes & {"E", "S"} else "IOB"


def _model_config(folder: Path) -> dict:
    if not folder.exists():
        raise UserError(f"{folder}: model folder not found")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; MODEL is a model folder such as <store>/stages/distill/<key>/model")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder} is not a model folder: config.json is missing "
                        "(expected a folder written by save_pretrained, e.g. a stage's model/)")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{config_file}: unreadable model config ({err})") from None


def load_tagger(folder: str | Path) -> LoadedTagger:
    """Load a concner model folder, or any transformers token-classification folder, for tagging."""
    folder = Path(folder)
    config = _model_config(folder)
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith("ForTokenClassification") for a in architectures):
        raise UserError(f"{folder} holds a {architectures[0]} model, not a token classifier "
                        "(…ForTokenClassification): it cannot tag entities")
    if (folder / HEAD_CONFIG).is_file():
        from concner.models.ner_model import ConcNerModel

        model, kind = ConcNerModel.load(folder), "concner"
    else:
        model, kind = _load_hf(folder), "transformers"
    scheme = check_labels(model.labels, folder)
    if model.labels[0] != "O":  # a ConcNerModel folder someone relabelled: see HFTagger
        model = HFTagger(model.token_model, model.tokenizer, model.labels)
    positions = getattr(model.token_model.config, "max_position_embeddings", None)
    limits = [n for n in (positions, model.tokenizer.model_max_length) if isinstance(n, int) and n < _NO_LIMIT]
    return LoadedTagger(model, kind, scheme, min(limits) if limits else None)


def _load_hf(folder: Path) -> HFTagger:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    try:
        token_model = AutoModelForTokenClassification.from_pretrained(str(folder), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    # OSError: missing weights/tokenizer files; ValueError: a config transformers cannot map to a
    # token classifier or tokenizer
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a token classifier from {folder}: {err}") from None
    id2label = token_model.config.id2label
    labels = [id2label[i] for i in range(len(id2label))]
    check_labels(labels, folder)
    return HFTagger(token_model, tokenizer, labels)


def read_input(path: Path, fmt: str = "auto") -> tuple[list[Sentence], str, bool]:
    """Sentences of FILE, its format (detected for "auto"), and whether a tag column was ignored."""
    from concner.tasks.text.conll import read_unlabeled

    if fmt not in ("auto", "conll", "lines"):
        raise UserError(f"--format {fmt}: choose auto, conll or lines")
    # detection needs a blank line to see CoNLL: a one-sentence CoNLL file reads as lines unless --format conll
    sentences, report = read_unlabeled(path, fmt=fmt)  # InputFileError (a UserError) names file and line
    return sentences, "lines" if report.separator == "lines" else "conll", report.tags_ignored


def count_truncated(tokenizer, sentences: Sequence[Sentence], max_length: int) -> int:
    """Sentences longer than max_length subwords: their last words get no prediction (tagged O)."""
    from concner.models.encoding import encode_words

    truncated = 0
    for start in range(0, len(sentences), 256):
        batch = [s.tokens for s in sentences[start : start + 256]]
        truncated += sum(encode_words(tokenizer, batch, None, max_length)["truncated"])
    return truncated


def tag_sentences(tagger: LoadedTagger, sentences: Sequence[Sentence], *, batch_size: int, max_length: int,
                  progress: str | None) -> list[list[str]]:
    """IOB2 tags per sentence: the model's argmax, read as IOB2 the way conlleval reads a tagger's output."""
    from concner.tasks.training.evaluate import pick_device, predict_probs, probs_to_tags

    model = tagger.model.to(pick_device())
    probs = predict_probs(model, [s.tokens for s in sentences], batch_size=batch_size, max_length=max_length,
                          progress=progress)
    # argmax tags can be ill-formed (an I-X after O, a BIOES E- without B-): repaired, never rejected
    return [to_iob2(tags, tagger.scheme, repair=True)[0] for tags in probs_to_tags(probs, model.labels)]


def write_predictions(sentences: Sequence[Sentence], tags: Sequence[Sequence[str]], fh: TextIO) -> None:
    for sentence, sentence_tags in zip(sentences, tags):
        for token, tag in zip(sentence.tokens, sentence_tags):
            fh.write(f"{token}\t{tag}\n")
        fh.write("\n")


def default_output(path: Path) -> Path:
    return path.with_name(path.stem + ".pred.conll")


def _write_atomic(target: Path, sentences: Sequence[Sentence], tags: Sequence[Sequence[str]]) -> None:
    """Write through a temporary file so a failure never leaves half a prediction file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            write_predictions(sentences, tags, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def predict_file(model_dir: str | Path, input_path: str | Path, out: str | Path | None = None, *,
                 batch_size: int = 32, max_length: int = 128, fmt: str = "auto",
                 progress: bool = True) -> PredictSummary:
    """Tag `input_path` with the model in `model_dir`; write IOB2 CoNLL to `out` ('-' = stdout)."""
    model_dir, input_path = Path(model_dir), Path(input_path)
    if batch_size < 1 or max_length < 3:  # 3: [CLS] + one subword + [SEP]
        raise UserError("--batch-size must be at least 1 and --max-length at least 3")
    to_stdout = str(out) == STDOUT
    target = None if to_stdout else Path(out) if out is not None else default_output(input_path)
    if target is not None and target.resolve() == input_path.resolve():
        raise UserError(f"{target}: the output would overwrite the input file; choose another --out")
    sentences, fmt, tags_ignored = read_input(input_path, fmt)  # first: a bad file fails before weights load
    tagger = load_tagger(model_dir)
    if tagger.max_positions is not None:
        max_length = min(max_length, tagger.max_positions)
    tags = tag_sentences(tagger, sentences, batch_size=batch_size, max_length=max_length,
                         progress=None if to_stdout or not progress else f"tagging {input_path.name}")
    if to_stdout:
        write_predictions(sentences, tags, sys.stdout)
        sys.stdout.flush()
    else:
        _write_atomic(target, sentences, tags)
    entities = Counter(span.label for sentence_tags in tags for span in spans(sentence_tags))
    return PredictSummary(
        model=model_dir, kind=tagger.kind, input=input_path, input_format=fmt, tags_ignored=tags_ignored,
        out=target, sentences=len(sentences), tokens=sum(len(s.tokens) for s in sentences), max_length=max_length,
        truncated=count_truncated(tagger.model.tokenizer, sentences, max_length), entities=dict(sorted(entities.items())),
    )


def summary_lines(summary: PredictSummary) -> list[str]:
    """What `concner predict` tells the user after tagging."""
    where = "stdout" if summary.out is None else str(summary.out)
    ents = ", ".join(f"{k} {v}" for k, v in summary.entities.items()) or "none"
    lines = [
        f"tagged {summary.sentences} sentences ({summary.tokens} tokens, {summary.input_format} input) with the "
        f"{summary.kind} model {summary.model}",
        f"entities: {ents}",
        f"predictions (IOB2 CoNLL): {where}",
    ]
    if summary.tags_ignored:
        lines.append("note: the input's tag column was ignored")
    if summary.truncated:
        lines.append(f"warning: {summary.truncated} sentences are longer than {summary.max_length} subwords; "
                     "their words past that are tagged O (raise --max-length)")
    return lines
