"""Where LCL acts: on a token projection head ("head") or on the classifier's own features ("hidden"),
and the contrastive weights (1 vs 0.1).

The real-data experiment (real_transfer.py) found LCL on the last hidden layer collapsing en->es
transfer F1. This runs the same setting (same store, so ingest/translate/project are reused) for
the LCL rows with each choice of `train.lcl_features`, plus the student of the "head" teacher.

    python benchmarks/lcl_features.py --store /tmp/real/store --unlabeled-file FILE [--seeds 13] [--rows ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_transfer import REPO, base_config, run, unlabeled_file  # noqa: E402

from concner.tasks.store import ArtifactStore  # noqa: E402

ROWS = {
    "+ LCL, hidden": {"train.lambda_tcl": 0, "train.lambda_lcl": 1.0, "train.lcl_features": "hidden"},
    "+ LCL, head": {"train.lambda_tcl": 0, "train.lambda_lcl": 1.0, "train.lcl_features": "head"},
    "+ TCL + LCL, head (teacher)": {"train.lambda_tcl": 1.0, "train.lambda_lcl": 1.0, "train.lcl_features": "head"},
    "+ TCL + LCL, head, lambdas 0.1": {"train.lambda_tcl": 0.1, "train.lambda_lcl": 0.1, "train.lcl_features": "head"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--unlabeled-file", type=Path, default=None,
                        help="reuse the unlabeled file of an earlier run, so its ingest artifact is reused too")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lcl_features.json")
    args = parser.parse_args()

    store = ArtifactStore(args.store)
    unlabeled = args.unlabeled_file or unlabeled_file(args.store, 3000)
    config = base_config(unlabeled, args.epochs, 128)
    results: dict[str, list[float]] = {row: [] for row in [*ROWS, "student of the head teacher"]}
    started = time.time()
    for seed in args.seeds:
        for row, overrides in ROWS.items():
            if row not in args.rows:
                continue
            teacher = row.endswith("(teacher)")
            record = run(store, config, seed, overrides, until=None if teacher else "train")
            results[row].append(record["scores"]["train"]["target_test"]["f1"])
            print(f"seed {seed} {row}: {results[row][-1]:.4f}", flush=True)
            if teacher:
                results["student of the head teacher"].append(record["scores"]["distill"]["target_test"]["f1"])
                print(f"seed {seed} student: {results['student of the head teacher'][-1]:.4f}", flush=True)
    table = {row: {"f1": f1s, "mean": statistics.mean(f1s)} for row, f1s in results.items() if f1s}
    out = {"setting": "as benchmarks/results/real_transfer.json", "epochs": args.epochs, "seeds": args.seeds,
           "rows": table, "wall_seconds": round(time.time() - started, 1)}
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for row, t in table.items():
        print(f"{row:35s} F1 {100 * t['mean']:.2f}")


if __name__ == "__main__":
    main()
