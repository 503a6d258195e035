"""Benchmark: the translation stage's batched translate_sentences vs one generate call per sentence.

    python benchmarks/bench_translate.py [--sentences 500] [--rounds 2] [--max-new-tokens 32]

Model: a random-weight Marian (models.tiny.build_tiny_marian) at opus-mt's shape, d_model 512,
6+6 layers, 8 heads, FFN 2048, with SentencePiece vocabularies learned from the conll2003_en train
sentences (source) and the Spanish side of parallel_en_es (target). init_std=1.0, so outputs vary
with the input and batching/order bugs would show as mismatches. Built once into a cache folder
outside the repository (--cache-dir).

Sentences: the first N sentences of ../shared/data/conll2003_en/train.txt.

Arms, same model, same sentences, same generation settings (greedy, max_new_tokens):
  batched: translate_sentences(..., batch_size=32), exactly what the translate stage calls;
  naive:   a loop with one model.generate per sentence, through the same detokenize -> tokenizer ->
           generate -> batch_decode -> strip -> word_tokenize path as translate_sentences.
The arms run in one process, one torch thread, alternating (batched, naive, batched, naive, ...)
so that a machine shared with other jobs slows both alike; the medians over rounds are reported.
Outputs are compared sentence by sentence. Writes benchmarks/results/translate.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the model is built locally
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread everywhere, for both arms

import torch  # noqa: E402

from concner.models.tiny import build_tiny_marian  # noqa: E402
from concner.tasks.text.conll import read_conll  # noqa: E402
from concner.tasks.nlp.translate import (  # noqa: E402
    _generate_args,
    input_limit,
    load_translator,
    translate_sentences,
)
from concner.tasks.text.wordtok import detokenize, word_tokenize  # noqa: E402
from _common import machine_info, timed, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
RESULT = REPO / "benchmarks" / "results" / "translate.json"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "concner-bench"

D_MODEL, LAYERS, HEADS, VOCAB_PER_SIDE, MAX_POSITIONS, MAX_INPUT_LENGTH = 512, 6, 8, 8000, 256, 128


def build_model(cache_dir: Path) -> tuple[Path, float]:
    """The benchmark's Marian folder (built on first use, then reused) and the seconds it took."""
    start = time.perf_counter()
    src, _ = read_conll(DATA / "conll2003_en" / "train.txt")
    tgt, _ = read_conll(DATA / "parallel_en_es" / "es.txt", repair_tags=True)
    folder = build_tiny_marian(
        [detokenize(s.tokens) for s in src],
        [detokenize(s.tokens) for s in tgt],
        cache_dir / "marian-en-es-d512-l6",
        vocab_size=VOCAB_PER_SIDE,
        d_model=D_MODEL,
        layers=LAYERS,
        heads=HEADS,
        max_position_embeddings=MAX_POSITIONS,
        init_std=1.0,
        seed=0,
    )
    return folder, time.perf_counter() - start


def naive_translate(sentences, model, tokenizer, *, max_new_tokens: int, num_beams: int) -> list[tuple[str, list[str]]]:
    """One generate call per sentence, through translate_sentences' own tokenizer/decoding path."""
    limit = input_limit(model, tokenizer, MAX_INPUT_LENGTH)
    args = _generate_args(model, tokenizer, max_new_tokens, num_beams, None)
    out: list[tuple[str, list[str]]] = []
    for words in sentences:
        text = detokenize(words)
        if not text.strip():
            out.append(("", []))
            continue
        batch = tokenizer([text], padding=True, truncation=True, max_length=limit, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            generated = model.generate(**batch, **args)
        decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)[0].strip()
        out.append((decoded, word_tokenize(decoded)))
    return out


def batched_translate(sentences, model, tokenizer, *, batch_size: int, max_new_tokens: int, num_beams: int):
    results = translate_sentences(
        sentences, model, tokenizer, batch_size=batch_size, max_input_length=MAX_INPUT_LENGTH,
        max_new_tokens=max_new_tokens, num_beams=num_beams, progress=False,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--naive-sentences", type=int, default=None,
                        help="time the naive arm on the first K sentences only (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds, each batched then naive")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder, build_s = build_model(args.cache_dir)
    model, tokenizer = load_translator(str(folder), device="cpu")
    n_params = sum(p.numel() for p in model.parameters())
    corpus, _ = read_conll(DATA / "conll2003_en" / "train.txt")
    sentences = [s.tokens for s in corpus[: args.sentences]]
    n = len(sentences)
    n_naive = min(n, args.naive_sentences or n)
    settings = dict(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)

    # warm-up: first calls pay for lazy initialisation (allocator, kernels, generation config)
    batched_translate(sentences[:8], model, tokenizer, batch_size=args.batch_size, **settings)
    naive_translate(sentences[:2], model, tokenizer, **settings)

    batched_times, naive_times = [], []
    batched_out = naive_out = None
    for r in range(args.rounds):
        batched_out, t = timed(lambda: batched_translate(sentences, model, tokenizer, batch_size=args.batch_size, **settings))
        batched_times.append(t)
        print(f"round {r + 1}: batched {t:.1f} s ({n / t:.1f} sent/s)", flush=True)
        naive_out, t = timed(lambda: naive_translate(sentences[:n_naive], model, tokenizer, **settings))
        naive_times.append(t)
        print(f"round {r + 1}: naive   {t:.1f} s ({n_naive / t:.2f} sent/s)", flush=True)

    batched_sps = [n / t for t in batched_times]
    naive_sps = [n_naive / t for t in naive_times]
    identical_text = sum(batched_out[i].text == naive_out[i][0] for i in range(n_naive))
    identical_tokens = sum(batched_out[i].tokens == naive_out[i][1] for i in range(n_naive))
    mismatched = [i for i in range(n_naive) if (batched_out[i].text, batched_out[i].tokens) != naive_out[i]]
    # A mismatch could be a bug (order, mapping) or float noise: a padded batch runs other matmul
    # shapes than a single sentence, and greedy argmax flips on a near tie. translate_sentences with
    # batch_size=1 has no padding: if it agrees with the naive loop there, the batch numerics did it.
    unpadded = batched_translate([sentences[i] for i in mismatched], model, tokenizer, batch_size=1, **settings)
    unpadded_agree = sum((r.text, r.tokens) == naive_out[i] for r, i in zip(unpadded, mismatched))
    out_lengths = [r.output_length for r in batched_out]
    med_b, med_n = statistics.median(batched_sps), statistics.median(naive_sps)
    result = {
        "sentences": n,
        "source": "first sentences of conll2003_en/train.txt",
        "model": {
            "kind": "MarianMTModel, random weights (models.tiny.build_tiny_marian)",
            "d_model": D_MODEL,
            "encoder_layers": LAYERS,
            "decoder_layers": LAYERS,
            "heads": HEADS,
            "ffn_dim": 4 * D_MODEL,
            "vocab_size": model.config.vocab_size,
            "sentencepiece_vocab_per_side": VOCAB_PER_SIDE,
            "parameters": n_params,
            "init_std": 1.0,
            "build_or_cache_load_s": round(build_s, 2),
            "folder": str(folder),
        },
        "settings": {
            "batch_size": args.batch_size,
            "num_beams": args.num_beams,
            "max_new_tokens": args.max_new_tokens,
            "max_input_length": MAX_INPUT_LENGTH,
            "do_sample": False,
            "device": "cpu",
            "rounds": args.rounds,
            "order": "interleaved in one process: batched, naive, batched, naive, ...",
            "warm_up": "one small untimed call per arm before the rounds",
        },
        "batched": {
            "sentences": n,
            "seconds": [round(t, 3) for t in batched_times],
            "sentences_per_s": [round(x, 3) for x in batched_sps],
            "median_seconds": round(statistics.median(batched_times), 3),
            "median_sentences_per_s": round(med_b, 3),
        },
        "naive": {
            "sentences": n_naive,
            "subset_note": None if n_naive == n else f"naive arm timed on the first {n_naive} of the {n} sentences",
            "seconds": [round(t, 3) for t in naive_times],
            "sentences_per_s": [round(x, 3) for x in naive_sps],
            "median_seconds": round(statistics.median(naive_times), 3),
            "median_sentences_per_s": round(med_n, 3),
        },
        "speedup_median": round(med_b / med_n, 2),
        "speedup_per_round": [round(b / a, 2) for a, b in zip(naive_sps, batched_sps)],
        "target_speedup": 3.0,
        "meets_target": med_b / med_n >= 3.0,
        "outputs": {
            "compared": n_naive,
            "identical_text": identical_text,
            "identical_tokens": identical_tokens,
            "mismatched_indices": mismatched,
            "mismatched_identical_with_batch_size_1": unpadded_agree,
            "mismatch_note": (
                "every mismatch is reproduced exactly by translate_sentences with batch_size=1 (no padding): "
                "float noise of padded-batch matmuls flipping a near-tie greedy argmax of the random model, "
                "not an order or mapping error"
                if unpadded_agree == len(mismatched)
                else "some mismatches persist with batch_size=1: investigate (order/mapping?)"
            ),
            "distinct_outputs": len({r.text for r in batched_out}),
            "mean_output_subwords": round(sum(out_lengths) / max(1, len(out_lengths)), 2),
            "outputs_reaching_length_limit": sum(1 for x in out_lengths if x >= args.max_new_tokens - 1),
            "length_note": "the random model never emits </s> early: every output runs to the length limit "
                           "(max_new_tokens including the forced </s>), so batching wastes no steps on finished "
                           "sentences; a trained model with varied output lengths gives batching somewhat "
                           "less of an edge. Outputs are degenerate repetitions, but the first token depends "
                           "on the input, so order or mapping errors would still show",
        },
        "machine": {
            **machine_info(),
            "shared": True,
            "note": "2-core machine shared with other CPU-heavy jobs running in the background; absolute "
                    "times are inflated and noisy, the interleaved ratio is the comparable figure",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    write_result(RESULT, result)
    print(f"{n} sentences, Marian d{D_MODEL} L{LAYERS} ({n_params / 1e6:.1f} M params), {torch.get_num_threads()} thread(s)")
    print(f"  batched (bs {args.batch_size}): median {med_b:.2f} sent/s; naive: median {med_n:.2f} sent/s "
          f"({n_naive} sentences); speedup {med_b / med_n:.1f}x")
    print(f"  identical outputs: {identical_text}/{n_naive} text, {identical_tokens}/{n_naive} tokens; "
          f"mismatches reproduced by batch_size=1: {unpadded_agree}/{len(mismatched)}")
    print(f"  written to {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
