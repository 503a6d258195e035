"""Scale-out: a 4-member sweep on the demo data, sequential vs a 2-worker Dask LocalCluster.

    python benchmarks/bench_scale.py [--out benchmarks/results/scale.json] [--set KEY=VALUE ...]
                                     [--grid KEY=V1,V2 ...] [--one-thread] [--rounds N]

Each arm is one `concner sweep` process with its own fresh store and Prefect home (so each pays
for its temporary Prefect server, and the Dask arm for starting its cluster): the default runner,
then `--runner dask` (LocalCluster, 2 worker processes, 1 stage each, torch threads per worker as
in the sequential process). Wall time is the whole command. Then every file of every artifact is
compared by sha256 (manifests left out: they hold times), with the keys and scores of each member.
`--one-thread` adds a Dask arm with `runner.torch_threads=1` (no oversubscription of the cores,
but other bytes than a 2-thread sequential run: CPU float sums depend on the thread count).

`--rounds N` runs the arms N times, interleaved (sequential, dask, ..., sequential, dask, ...), and
reports every wall time and their median: on a shared machine the load of other jobs moves them.

Every arm runs the committed code (`git archive HEAD` unpacked into the work folder, first on
PYTHONPATH, workers included): the code is part of every key, and an edit to the working tree
while the benchmark runs would otherwise change the keys between arms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, timed, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.yaml"
# the tests' FAST demo settings: every stage runs, in about a minute per member on 2 cores
FAST = ["train.epochs=2", "distill.epochs=1", "train.min_selection_f1=null"]
GRID = ["train.lambda_tcl=0,1", "train.lambda_lcl=0,1"]  # 4 members that share ingest..project


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(work: Path) -> tuple[Path, str]:
    """The committed code as an importable `concner` package under work/code; (that folder, the commit)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    tree = work / "tree"
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True)
    tree.mkdir()
    tar_path = work / "tree.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(tree, filter="data")
    code = work / "code"
    package = code / "concner"
    package.mkdir(parents=True)
    (package / "__init__.py").write_bytes((tree / "concner" / "__init__.py").read_bytes())
    for sub in ("flows", "tasks", "models", "configs", "data"):  # the package-dir mapping of pyproject.toml
        if (tree / sub).is_dir():
            os.symlink(tree / sub, package / sub)
    return code, commit


def run_sweep(work: Path, code: Path, name: str, grid: list[str], overrides: list[str],
              extra: list[str]) -> tuple[dict, float]:
    """One `concner sweep` in its own process, store and Prefect home; (its outcome, wall seconds)."""
    store = work / name
    env = {**os.environ, "PREFECT_HOME": str(work / f"{name}-prefect"), "HF_HUB_OFFLINE": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
           "PYTHONPATH": str(code)}
    env.pop("PREFECT_API_URL", None)
    config = work / "tree" / CONFIG.relative_to(ROOT)
    args = [sys.executable, "-c", "from concner.flows.cli import main; main()", "sweep", str(config),
            "--store", str(store), *extra]
    for item in grid:
        args += ["--grid", item]
    for item in overrides:
        args += ["--set", item]
    load_before = os.getloadavg()
    proc, seconds = timed(lambda: subprocess.run(args, env=env, cwd=work, capture_output=True, text=True))
    load_after = os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    sweep = json.loads(sorted((store / "sweeps").glob("sweep-*.json"))[-1].read_text())
    runs = {r["run_id"]: r for r in (json.loads(p.read_text()) for p in (store / "runs").glob("*.json"))}
    members = []
    for member in sweep["members"]:
        run = runs[member["run_id"]]
        members.append({"setting": member["setting"], "status": member["status"], "scores": member["scores"],
                        "keys": {e: i["key"] for e, i in run["stages"].items()},
                        "computed": sorted(e for e, i in run["stages"].items() if i["status"] == "computed")})
    files = {}
    for manifest_path in sorted((store / "stages").glob("*/*/manifest.json")):
        folder = manifest_path.parent
        for f in json.loads(manifest_path.read_text())["files"]:
            actual = sha256(folder / f["path"])
            assert actual == f["sha256"], f"{folder / f['path']}: bytes differ from the manifest"
            files[f"{folder.parent.name}/{folder.name}/{f['path']}"] = actual
    computed = [(e, m["keys"][e]) for m in members for e in m["computed"]]
    versions = {json.loads(p.read_text())["versions"].get("concner") for p in (store / "stages").glob("*/*/manifest.json")}
    return {"members": members, "files": files, "seconds": round(seconds, 1),
            "each_key_computed_once": len(computed) == len(set(computed)),
            "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
            "concner_versions": sorted(map(str, versions))}, seconds


def compare(a: dict, b: dict) -> dict:
    differing = sorted(k for k in a["files"].keys() | b["files"].keys() if a["files"].get(k) != b["files"].get(k))
    return {
        "files_compared": len(a["files"]),
        "files_differing": differing[:20],
        "identical_bytes": not differing,
        "identical_keys": [m["keys"] for m in a["members"]] == [m["keys"] for m in b["members"]],
        "identical_scores": [m["scores"] for m in a["members"]] == [m["scores"] for m in b["members"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    parser.add_argument("--set", dest="overrides", action="append", default=None,
                        help=f"config override for every arm (default: {' '.join(FAST)})")
    parser.add_argument("--grid", action="append", default=None, help=f"sweep grid (default: {' '.join(GRID)})")
    parser.add_argument("--one-thread", action="store_true", help="also a Dask arm with runner.torch_threads=1")
    parser.add_argument("--rounds", type=int, default=1, help="run the arms this many times, interleaved")
    args = parser.parse_args()
    overrides = FAST if args.overrides is None else args.overrides
    grid = GRID if args.grid is None else args.grid
    work = Path(tempfile.mkdtemp(prefix="concner-scale-"))
    code, commit = snapshot(work)
    arms = {"sequential": [], "dask": ["--runner", "dask"]}
    if args.one_thread:
        arms["dask_torch_threads_1"] = ["--runner", "dask", "--set", "runner.torch_threads=1"]
    outcome: dict[str, dict] = {}  # the first round's outcome per arm
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    for round_ in range(args.rounds):
        for name, extra in arms.items():
            print(f"{name} (round {round_ + 1}) ...", flush=True)
            result_, seconds = run_sweep(work, code, f"{name}-{round_ + 1}", grid, overrides, extra)
            runs[name].append(result_)
            outcome.setdefault(name, result_)
            print(f"{name}: {seconds:.1f} s", flush=True)
    seq, dask = outcome["sequential"], outcome["dask"]
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    result = {
        "what": "concner sweep of 4 members on the demo data (configs/demo.yaml), one process per arm, fresh "
                "store and Prefect home each; wall time of the whole command (temporary Prefect server and "
                "the Dask cluster's start included)",
        "grid": grid,
        "overrides": overrides,
        "members": len(seq["members"]),
        "commit": commit,
        "runner_dask": {"cluster": "LocalCluster", "workers": 2, "threads_per_worker": 1,
                        "torch_threads_per_worker": "as the sequential process (torch default here)"},
        "rounds": args.rounds,
        "seconds": {name: [r["seconds"] for r in rs] for name, rs in runs.items()},
        "median_seconds": median,
        "speedup_dask": round(median["sequential"] / median["dask"], 2),
        "dask_vs_sequential": compare(seq, dask),
        "every_round_identical_to_sequential_round_1": {
            name: all(compare(seq, r)["identical_bytes"] for r in rs) for name, rs in runs.items()},
        "each_key_computed_once": {name: all(r["each_key_computed_once"] for r in rs) for name, rs in runs.items()},
        "loadavg_before": {name: [r["loadavg_before"] for r in rs] for name, rs in runs.items()},
        "loadavg_after": {name: [r["loadavg_after"] for r in rs] for name, rs in runs.items()},
        "members_detail": [{"setting": m["setting"], "status": m["status"], "computed": m["computed"],
                            "scores": m["scores"]} for m in dask["members"]],
        "machine": machine_info(),
    }
    if args.one_thread:
        one = outcome["dask_torch_threads_1"]
        result["speedup_dask_torch_threads_1"] = round(median["sequential"] / median["dask_torch_threads_1"], 2)
        result["dask_torch_threads_1_vs_sequential"] = compare(seq, one)
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "members_detail")}, indent=2))


if __name__ == "__main__":
    main()
