"""Translate stage: give every sampled source sentence a target-language twin, linked by id.

Backends: `marian` (any HF seq2seq model, see tasks/nlp/translate.py) and `parallel` (translations
that already exist: a CoNLL file, possibly with gold target tags, or one sentence per line,
line-aligned with the full source file).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from concner.tasks.engine.artifacts import TRANSLATIONS, load_split, split_stats
from concner.tasks.engine.config import RunConfig
from concner.tasks.text.conll import looks_like_conll, read_aligned_lines, read_conll, read_unlabeled
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.model_refs import TINY, resolve_translator
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.stage_summaries import translate as shown
from concner.tasks.engine.store import file_digest
from concner.tasks.text.wordtok import detokenize



MARIAN_ONLY = ("model", "reverse_model", "batch_size", "max_input_length", "max_new_tokens", "num_beams",
               "target_lang_token")


def translate_params(config: RunConfig) -> dict[str, Any]:
    """Only what changes the translations enters the key: generation settings don't for `parallel`."""
    t = config.translate
    params: dict[str, Any] = t.model_dump(mode="json")
    if t.backend == "parallel":
        if t.parallel_file is None:
            raise UserError("translate.backend=parallel needs translate.parallel_file")
        if not t.parallel_file.is_file():
            raise UserError(f"{t.parallel_file}: file not found (translate.parallel_file)")
        params["parallel_file"] = file_digest(t.parallel_file)
        # sentence i of the parallel file pairs with sentence i of the full source file, which
        # the sampled source artifact alone does not pin down
        params["source_file"] = file_digest(config.data.source_train) if config.data.source_train.is_file() else None
        # a labeled parallel file is read with the ingest repair setting: it decides whether its
        # gold target tags are kept, so two settings must never share translations
        params["repair_tags"] = config.ingest.repair_tags
        for name in MARIAN_ONLY:
            params.pop(name)
    else:
        params["model"] = t.model or default_model(config)
        params.pop("parallel_file")
    if t.reference_file is not None:
        if not t.reference_file.is_file():
            raise UserError(f"{t.reference_file}: file not found (translate.reference_file)")
        params["reference_file"] = file_digest(t.reference_file)
    return params


def default_model(config: RunConfig) -> str:
    from concner.tasks.nlp.translate import default_model_name

    return default_model_name(config.source_lang, config.target_lang)


def read_parallel(path: Path, expected: int, source_path: str, ctx: StageContext) -> tuple[list[list[str]], list | None]:
    """Translation tokens per source sentence, and gold target tags when the file is labeled CoNLL.

    A CoNLL file pairs sentence by sentence; any other file line by line (`read_aligned_lines`:
    an empty line is an empty translation, and only "\n" ends a line). Only `ctx.config` is read,
    so the preflight check passes any object with a `config`.
    """
    tags = None
    if looks_like_conll(path):
        try:
            sentences, _ = read_conll(path, repair_tags=ctx.config.ingest.repair_tags)
            tags = [s.tags for s in sentences]
        except UserError:
            sentences, _ = read_unlabeled(path, fmt="conll")
        unit = "sentences"
    else:
        sentences, _ = read_aligned_lines(path)
        unit = "lines"
    if len(sentences) != expected:
        raise UserError(
            f"{path} has {len(sentences)} {unit} but the source file {source_path} has {expected} sentences: "
            "a parallel file must be aligned sentence by sentence with the source"
            + (" (one line per source sentence, in the same order; an empty line for an empty sentence)"
               if unit == "lines" else "")
        )
    return [s.tokens for s in sentences], tags


def compute_translate(ctx: StageContext) -> None:
    import pandas as pd

    config, t = ctx.config, ctx.config.translate
    ingest_dir = ctx.inputs["ingest"]
    source = load_split(ingest_dir, "source_train")
    rows: dict[str, list] = {"id": [s.id for s in source], "source_text": [detokenize(s.tokens) for s in source]}
    started = time.time()
    if t.backend == "parallel":
        info = source_file_info(ingest_dir)
        if info["read"]["sentences_split"]:
            raise UserError("translate.backend=parallel needs unsplit source sentences: set ingest.long_sentences=reject")
        tokens, gold = read_parallel(t.parallel_file, info["sentences_in_file"], info["file"], ctx)
        rows["translation_tokens"] = [tokens[s.id] for s in source]
        rows["translation_text"] = [detokenize(x) for x in rows["translation_tokens"]]
        rows["gold_tags"] = [gold[s.id] for s in source] if gold else [None] * len(source)
        rows["empty"] = [not x for x in rows["translation_tokens"]]
        rows["truncated"] = [False] * len(source)
        ctx.metrics.update(backend="parallel", parallel_file=str(t.parallel_file), gold_target_tags=gold is not None)
    else:
        from concner.tasks.nlp.translate import load_translator, translate_sentences

        name = resolve_translator(t.model or default_model(config), ctx.inputs, ctx.store_root)
        model, tokenizer = load_translator(name)
        results = translate_sentences(
            [s.tokens for s in source], model, tokenizer, batch_size=t.batch_size,
            max_input_length=t.max_input_length, max_new_tokens=t.max_new_tokens, num_beams=t.num_beams,
            target_lang_token=t.target_lang_token, progress=True,
        )
        rows["translation_text"] = [r.text for r in results]
        rows["translation_tokens"] = [r.tokens for r in results]
        rows["gold_tags"] = [None] * len(source)
        rows["input_length"] = [r.input_length for r in results]
        rows["output_length"] = [r.output_length for r in results]
        rows["truncated"] = [r.truncated for r in results]
        rows["empty"] = [r.empty for r in results]
        ctx.metrics.update(backend="marian", model=t.model or default_model(config), model_path=name,
                           weights_sha256=_weights_digest(Path(name)),
                           generation={k: getattr(t, k) for k in ("num_beams", "max_new_tokens", "max_input_length", "batch_size")})
        if t.reverse_model:
            from concner.tasks.nlp.translate import round_trip_chrf

            back_name = resolve_translator(t.reverse_model, ctx.inputs, ctx.store_root, reverse=True)
            back_model, back_tok = load_translator(back_name)
            back = translate_sentences(rows["translation_tokens"], back_model, back_tok, batch_size=t.batch_size,
                                       max_input_length=t.max_input_length, max_new_tokens=t.max_new_tokens,
                                       num_beams=t.num_beams, progress=True)
            corpus_chrf, per_sentence = round_trip_chrf(rows["source_text"], [b.text for b in back])
            rows["round_trip_chrf"] = per_sentence
            ctx.metrics["round_trip_chrf"] = corpus_chrf
    seconds = time.time() - started
    if t.reference_file is not None:
        from concner.tasks.nlp.translate import score_translations

        info = source_file_info(ingest_dir)
        ref_tokens, _ = read_parallel(t.reference_file, info["sentences_in_file"], info["file"], ctx)
        references = [detokenize(ref_tokens[s.id]) for s in source]
        corpus, per_sentence = score_translations(rows["translation_text"], references)
        rows["chrf"] = per_sentence
        ctx.metrics["quality"] = corpus
    frame = pd.DataFrame(rows)
    score_column = "chrf" if "chrf" in frame else "round_trip_chrf" if "round_trip_chrf" in frame else None
    frame["kept"] = ~frame["empty"]
    if t.min_chrf is not None and score_column:
        frame["kept"] &= frame[score_column] >= t.min_chrf
    TRANSLATIONS.write(ctx.out, frame)
    ctx.metrics.update(
        sentences=len(frame),
        kept=int(frame["kept"].sum()),
        dropped_below_threshold=int((~frame["kept"] & ~frame["empty"]).sum()),
        empty=int(frame["empty"].sum()),
        truncated=int(frame["truncated"].sum()),
        seconds=round(seconds, 2),
        sentences_per_second=round(len(frame) / seconds, 2) if seconds > 0 else None,
    )


def source_file_info(ingest_dir: Path) -> dict:
    """The ingest stats of the full source file: its path and sentence count, before sampling."""
    return split_stats(ingest_dir, "source_train")


def _weights_digest(folder: Path) -> str | None:
    """Hash of the weight files, so a manifest says exactly which model translated."""
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(file_digest(f).encode())
    return h.hexdigest()


def translate_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    t = config.translate
    tiny = t.backend == "marian" and TINY in (t.model, t.reverse_model)  # built from the target text too
    return {"ingest": ("source_train.*",), "ingest_target": ("target_unlabeled.*",) if tiny else ()}


STAGE = StageSpec(
    name="translate",
    version="1",
    inputs=("ingest", "ingest_target"),
    params=translate_params,
    reads=translate_reads,
    libraries=("torch", "transformers", "sacrebleu"),
    model_params=("model", "reverse_model"),
    compute=compute_translate,
    outputs=(TRANSLATIONS,),
    view=shown.VIEW,
    description="translate source sentences (MarianMT or an existing parallel file)",
)
