"""The translation stage's core: load a seq2seq model, translate word-tokenized sentences, score them.

Plain functions, no orchestration: the stage module decides what to read and write.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sacrebleu.metrics import BLEU, CHRF
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from concner.tasks.engine.errors import UserError
from concner.tasks.text.wordtok import detokenize, word_tokenize


@dataclass
class TranslationResult:
    """One sentence's translation and what happened on the way."""

    text: str
    tokens: list[str]  # word_tokenize(text)
    input_length: int  # source subwords (special tokens included) before any truncation
    output_length: int  # generated subwords, special tokens excluded
    truncated: bool  # the source was cut to the model's input limit
    empty: bool  # the source was empty: passed through, never sent to the model


# --------------------------------------------------------------------------- loading


def default_model_name(src: str, tgt: str) -> str:
    """The OPUS-MT model for a language pair, e.g. en, es -> Helsinki-NLP/opus-mt-en-es."""
    return f"Helsinki-NLP/opus-mt-{src}-{tgt}"


def pick_device(device: str | None = None) -> str:
    """The requested device, else CUDA when there is one, else CPU."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_like_path(name: str) -> bool:
    # Hub ids look like 'org/name' too, so only explicit paths count as paths.
    return name.startswith((".", "~", os.sep)) or Path(name).expanduser().exists()


def _brief(err: BaseException, limit: int = 300) -> str:
    """The error's text on one line, shortened: transformers' messages run over many lines."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_translator(name_or_path: str, device: str | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) for seq2seq translation from a local folder or a hub name; model in eval mode.

    A hub name is first looked up in the local Hugging Face cache (instant), and only then downloaded.
    Any failure becomes one UserError saying what to pass instead.
    """
    folder_hint = (
        "Set translate.model to a local model folder written by save_pretrained() "
        "(config.json, the weights and the tokenizer files)"
    )
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser().resolve()
        if not path.is_dir():
            raise UserError(f"translation model folder {path} does not exist. {folder_hint}.")
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a model folder: it has no config.json. {folder_hint}.")
        try:
            model, tokenizer = _load(str(path), local_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise UserError(
                f"cannot load a translation model from folder {path} ({_brief(err)}). {folder_hint}."
            ) from None
    else:
        try:
            model, tokenizer = _load(name_or_path, local_only=True)
        except (OSError, ValueError, KeyError):
            if _hub_offline():
                raise UserError(_not_downloadable(name_or_path, folder_hint)) from None
            try:
                model, tokenizer = _load(name_or_path, local_only=False)
            except (OSError, ValueError, KeyError):
                raise UserError(_not_downloadable(name_or_path, folder_hint)) from None
    model.to(pick_device(device))
    model.eval()
    return model, tokenizer


def _load(source: str, *, local_only: bool) -> tuple[Any, Any]:
    # Tokenizer first: it is small, so a bad name fails before the weights are fetched.
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    model = AutoModelForSeq2SeqLM.from_pretrained(source, local_files_only=local_only)
    return model, tokenizer


def _not_downloadable(name: str, folder_hint: str) -> str:
    return (
        f"cannot load translation model {name!r}: it is not a local folder, not in the local Hugging Face "
        f"cache, and it cannot be downloaded (no download is possible here: no network, offline mode, or no "
        f"such model on the hub). {folder_hint}, e.g. translate.model: /models/opus-mt-en-es, "
        f'or to "tiny" for the built-in demo model.'
    )


# --------------------------------------------------------------------------- translating


def input_limit(model: Any, tokenizer: Any, max_input_length: int) -> int:
    """The longest source, in subwords, that can be sent: the caller's limit within the model's own."""
    limits = [max_input_length]
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    # Tokenizers without a limit report a huge sentinel; only believe plausible values.
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < 1_000_000:
        limits.append(tokenizer_max)
    return min(limits)


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yields advance(n); a rich bar over sentences when enabled, a no-op otherwise."""
    if not enabled:
        yield lambda n: None
        return
    columns = (
        TextColumn("translating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("translate", total=total)
        yield lambda n: bar.advance(task, n)


def translate_sentences(
    sentences: Sequence[list[str]],
    model: Any,
    tokenizer: Any,
    *,
    batch_size: int = 16,
    max_input_length: int = 128,
    max_new_tokens: int = 128,
    num_beams: int = 1,
    target_lang_token: str | None = None,
    progress: bool = True,
) -> list[TranslationResult]:
    """Translate word-tokenized sentences; results come back in input order.

    Sentences are detokenized, sorted by subword length (longest first, so batches hold similar
    lengths and an out-of-memory error shows up in the first batch, not the last) and translated
    in batches. Empty sentences are passed through. Sources longer than the input limit are cut by
    the tokenizer and flagged, never left to fail inside generate.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    texts = [detokenize(words) for words in sentences]
    results: list[TranslationResult | None] = [None] * len(texts)
    todo = [i for i, text in enumerate(texts) if text.strip()]
    for i, text in enumerate(texts):
        if not text.strip():
            results[i] = TranslationResult("", [], 0, 0, truncated=False, empty=True)

    limit = input_limit(model, tokenizer, max_input_length)
    lengths: dict[int, int] = {}
    if todo:
        # verbose=False: over-long inputs are expected here and are truncated below, so no warning.
        ids = tokenizer([texts[i] for i in todo], truncation=False, verbose=False)["input_ids"]
        lengths = {i: len(x) for i, x in zip(todo, ids)}
    order = sorted(todo, key=lambda i: (-lengths[i], i))

    generate_args = _generate_args(model, tokenizer, max_new_tokens, num_beams, target_lang_token)
    special_ids = set(tokenizer.all_special_ids)
    with _progress_bar(len(texts), progress) as advance:
        advance(len(texts) - len(todo))
        for start in range(0, len(order), batch_size):
            batch_ids = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in batch_ids],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).to(model.device)
            with torch.inference_mode():
                generated = model.generate(**batch, **generate_args)
            outputs = tokenizer.batch_decode(generated, skip_special_tokens=True)
            for i, seq, text in zip(batch_ids, generated.tolist(), outputs):
                text = text.strip()
                results[i] = TranslationResult(
                    text=text,
                    tokens=word_tokenize(text),
                    input_length=lengths[i],
                    output_length=sum(1 for t in seq if t not in special_ids),
                    truncated=lengths[i] > limit,
                    empty=False,
                )
            advance(len(batch_ids))
    return [r for r in results if r is not None]


def _generate_args(
    model: Any, tokenizer: Any, max_new_tokens: int, num_beams: int, target_lang_token: str | None
) -> dict[str, Any]:
    # The decoder also has position embeddings: keep start token + new tokens within them.
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 2:
        max_new_tokens = min(max_new_tokens, positions - 2)
    # max_length counts the decoder start token. Passing it rather than max_new_tokens is the same
    # limit for encoder-decoder models, minus the warning transformers logs for every batch when
    # the model's generation_config also sets max_length (as OPUS-MT models do).
    args: dict[str, Any] = {"max_length": max_new_tokens + 1, "num_beams": num_beams, "do_sample": False}
    if target_lang_token:
        token_id = tokenizer.convert_tokens_to_ids(target_lang_token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise UserError(
                f"target language token {target_lang_token!r} is not in the translation model's vocabulary "
                f"(for NLLB use codes like 'spa_Latn', for M2M100 '__es__'); unset translate.target_lang_token "
                f"for models that translate into a single language"
            )
        args["forced_bos_token_id"] = token_id
    return args


# --------------------------------------------------------------------------- quality


def score_translations(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[dict[str, Any], list[float]]:
    """Corpus BLEU and chrF (sacrebleu defaults) and per-sentence chrF of hypotheses against references.

    The corpus dict holds bleu, chrf, sentences and, when there were sentences, sacrebleu's
    bleu_signature and chrf_signature. A pair where both sides are empty scores 100 (an empty
    sentence correctly left empty); sacrebleu would give it 0. No sentences at all give 0 scores.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    corpus: dict[str, Any] = {"bleu": 0.0, "chrf": 0.0, "sentences": len(hypotheses)}
    if hypotheses:
        corpus["bleu"] = bleu.corpus_score(list(hypotheses), [list(references)]).score
        corpus["chrf"] = chrf.corpus_score(list(hypotheses), [list(references)]).score
        # sacrebleu can only state its settings after scoring; they make the numbers comparable.
        corpus["bleu_signature"] = str(bleu.get_signature())
        corpus["chrf_signature"] = str(chrf.get_signature())
    per_sentence = [
        100.0 if not h.strip() and not r.strip() else chrf.sentence_score(h, [r]).score
        for h, r in zip(hypotheses, references)
    ]
    return corpus, per_sentence


def round_trip_chrf(sources: Sequence[str], back_translations: Sequence[str]) -> tuple[float, list[float]]:
    """chrF of back-translations against the original sources: (corpus chrF, per-sentence chrF).

    A reference-free quality signal: a sentence that does not survive the round trip was likely
    mistranslated, so its projected labels deserve less trust.
    """
    corpus, per_sentence = score_translations(back_translations, sources)
    return corpus["chrf"], per_sentence
