"""Same config + seed -> same bytes: run the demo twice, each into a fresh store and a fresh
Prefect home, as two separate processes, and compare the sha256 of every file under stages/.

    python benchmarks/determinism.py [--out benchmarks/results/determinism.json] [--set KEY=VALUE ...]

Manifests are left out of the byte comparison (they hold start/end times); their recorded file
lists are what is compared, and every recorded sha256 is checked against the bytes on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, timed, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_demo(work: Path, name: str, overrides: list[str]) -> tuple[dict, dict, float]:
    store = work / name
    env = {**os.environ, "PREFECT_HOME": str(work / f"{name}-prefect"), "HF_HUB_OFFLINE": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)
    args = [sys.executable, "-c", "from concner.flows.cli import main; main()", "demo", "--store", str(store)]
    for item in overrides:
        args += ["--set", item]
    _, seconds = timed(lambda: subprocess.run(args, env=env, cwd=work, check=True, capture_output=True))
    record = json.loads(sorted((store / "runs").glob("*.json"))[-1].read_text())
    files = {}
    for entry, info in record["stages"].items():
        folder = store / "stages" / entry / info["key"]
        manifest = json.loads((folder / "manifest.json").read_text())
        for f in manifest["files"]:
            actual = sha256(folder / f["path"])
            assert actual == f["sha256"], f"{folder / f['path']}: bytes differ from the manifest"
            files[f"{entry}/{f['path']}"] = actual
    return record, files, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "determinism.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for both runs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="concner-determinism-"))
    (rec_a, files_a, sec_a), (rec_b, files_b, sec_b) = (run_demo(work, n, args.overrides) for n in ("a", "b"))
    differing = sorted(k for k in files_a.keys() | files_b.keys() if files_a.get(k) != files_b.get(k))
    keys_a = {e: i["key"] for e, i in rec_a["stages"].items()}
    keys_b = {e: i["key"] for e, i in rec_b["stages"].items()}
    result = {
        "what": "concner demo twice, two fresh stores, two processes; sha256 of every file under stages/",
        "overrides": args.overrides,
        "files_compared": len(files_a),
        "files_differing": differing,
        "identical_bytes": not differing and files_a.keys() == files_b.keys(),
        "identical_keys": keys_a == keys_b,
        "identical_scores": rec_a["scores"] == rec_b["scores"],
        "scores": rec_a["scores"].get("evaluate"),
        "seconds": [round(sec_a, 1), round(sec_b, 1)],
        "files": {k: {"a": files_a.get(k), "b": files_b.get(k)} for k in sorted(files_a.keys() | files_b.keys())},
        "machine": machine_info(),
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("files", "machine")}, indent=2))


if __name__ == "__main__":
    main()
