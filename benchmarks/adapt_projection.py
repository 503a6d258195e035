"""Label projection with the adapted encoder as aligner (`project.aligner_model: adapted`) against
the encoder as it is, English -> Spanish.

For each seed: the base config of recipe.py at N labeled sentences (MiniLM, parallel_en_es with
gold Spanish tags, mwmf at layer 4) with the adapt stage on, run until `project` twice, once per
aligner; the projection is scored against the gold Spanish tags (the project stage's
`projection_quality`, seqeval). Run it on recipe.py's work folder and the adapt artifacts of the
recipe's adapted rows are reused (same config, same keys).

    python benchmarks/adapt_projection.py --work WORK [--size 100] [--seeds 13 14 15] [--set adapt.steps=300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_result  # noqa: E402
from recipe import REPO, base_config, unlabeled_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="work folder (recipe.py's, to reuse its store)")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    parser.add_argument("--unlabeled", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--set", dest="common", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adapt_projection.json")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(args.work / "prefect-adapt-projection"))
    from concner.flows.pipeline import pipeline_flow, run_flow
    from concner.tasks.engine.config_loading import config_from_dict
    from concner.tasks.engine.store import ArtifactStore

    store = ArtifactStore(args.work / "store")
    started = time.time()
    runs: dict[str, dict] = {}
    for seed in args.seeds:
        config = base_config(args.size, unlabeled_file(args.work, args.unlabeled, args.size, seed), args.max_length)
        runs[str(seed)] = {}
        for aligner in ("encoder as is", "adapted"):
            sets = [*args.common, f"seed={seed}", "adapt.enabled=true"]
            if aligner == "adapted":
                sets.append("project.aligner_model=adapted")
            cfg = config_from_dict(config, base_dir=REPO, overrides=sets)
            record = run_flow(pipeline_flow, store, cfg.name, config=cfg.model_dump(mode="json"), until="project")
            metrics = store.manifest("project", record["stages"]["project"]["key"])["metrics"]
            quality = metrics.get("projection_quality") or {}
            runs[str(seed)][aligner] = {"f1": quality.get("f1"), "precision": quality.get("precision"),
                                        "recall": quality.get("recall"), "projection_rate": metrics.get("projection_rate"),
                                        "adapt": record["stages"]["adapt"]["status"]}
            print(f"seed {seed} {aligner}: projection F1 {quality.get('f1')}", flush=True)
    rows = {}
    for aligner in ("encoder as is", "adapted"):
        f1s = [runs[str(s)][aligner]["f1"] for s in args.seeds]
        rows[aligner] = {"f1_per_seed": f1s, "mean": statistics.mean(f1s),
                         "stdev": statistics.stdev(f1s) if len(f1s) > 1 else None}
    write_result(args.out, {
        "setting": {"size": args.size, "seeds": args.seeds, "aligner": "all-MiniLM-L6-v2, mwmf, layer 4",
                    "pairs": "parallel_en_es (N sampled English sentences and their Spanish side)",
                    "score": "seqeval micro F1 of the projected Spanish tags against the gold ones",
                    **({"set": args.common} if args.common else {})},
        "rows": rows, "runs": runs, "wall_seconds": round(time.time() - started, 1),
        "machine": machine_info(with_code=True)})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
