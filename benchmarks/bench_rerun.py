"""What a run that changes nothing costs: the demo's first run, then no-change reruns (median of 3)
with Prefect's temporary server (no PREFECT_API_URL) and with a running one (`prefect server start`).

    python benchmarks/bench_rerun.py [--out benchmarks/results/rerun.json] [--reruns 3]

Every run is a fresh `concner demo` process on the committed code (`git archive HEAD`, as in
bench_scale.py) with its own PREFECT_HOME. Wall time is the whole command, interpreter start
included. For each rerun it records whether torch or transformers were imported (a run that
only reuses should load neither), that the store got one more run record, how many of the run's
stages Prefect's database holds as completed task runs right after the command returned and
within 5 s (a server records them from events, asynchronously: a temporary one stopped at the
process's exit may miss the last ones), and, with the running server, that Prefect got one more flow run.
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, timed, write_result  # noqa: E402
from bench_scale import snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the `concner` command, reporting at the end of main() which heavy modules were loaded
CLI = ("import sys; from concner.flows import cli; run = cli.main\n"
       "def main():\n"
       "    try: run()\n"
       "    finally: print('heavy modules:', [m for m in ('torch', 'transformers') if m in sys.modules], file=sys.stderr)\n"
       "main()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo(env: dict, store: Path) -> dict:
    # cwd: the store's folder, never the repository, whose `concner/` folder would shadow the snapshot
    proc, seconds = timed(lambda: subprocess.run([sys.executable, "-c", CLI, "demo", "--store", str(store)], env=env,
                                                 capture_output=True, text=True, cwd=store.parent))
    if proc.returncode != 0:
        raise SystemExit(f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    heavy = [line for line in proc.stderr.splitlines() if line.startswith("heavy modules:")][-1]
    records = sorted((store / "runs").glob("*.json"))
    latest = json.loads(records[-1].read_text())
    return {"seconds": round(seconds, 2), "heavy_modules": heavy.split(":", 1)[1].strip(),
            "run_records": len(records),
            "computed": [e for e, info in latest["stages"].items() if info["status"] == "computed"],
            "stages": len(latest["stages"]),
            "prefect_task_runs_completed": completed_task_runs(Path(env["PREFECT_HOME"]) / "prefect.db",
                                                               latest.get("prefect_flow_run_id")),
            # a running server records task runs from events, after the command may have returned
            "prefect_task_runs_completed_within_5s": settled_task_runs(Path(env["PREFECT_HOME"]) / "prefect.db",
                                                                       latest.get("prefect_flow_run_id"),
                                                                       len(latest["stages"]))}


def settled_task_runs(db: Path, flow_run_id: str | None, expected: int, wait: float = 5.0) -> int | None:
    deadline = time.monotonic() + wait
    while True:
        count = completed_task_runs(db, flow_run_id)
        if count is None or count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def completed_task_runs(db: Path, flow_run_id: str | None) -> int | None:
    """Task runs of the flow run that Prefect's database holds as completed (None: not known)."""
    if flow_run_id is None or not db.exists():
        return None
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from task_run where flow_run_id = ? and state_type = 'COMPLETED'",
                           (flow_run_id,)).fetchone()[0]


def flow_runs(api: str) -> int:
    request = urllib.request.Request(f"{api}/flow_runs/count", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read()))


def reruns(env: dict, store: Path, n: int, api: str | None = None) -> dict:
    rows = []
    for _ in range(n):
        before = flow_runs(api) if api else None
        row = demo(env, store)
        if api:
            row["prefect_flow_runs_added"] = flow_runs(api) - before
        rows.append(row)
    return {"median_seconds": statistics.median(r["seconds"] for r in rows), "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rerun.json")
    parser.add_argument("--reruns", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_rerun-"))
    code, commit = snapshot(work)
    base = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", "PYTHONPATH": str(code)}
    base.pop("PREFECT_API_URL", None)
    store = work / "store"

    temporary = {**base, "PREFECT_HOME": str(work / "prefect-temporary")}
    first = demo(temporary, store)
    rows = [demo(temporary, store) for _ in range(args.reruns)]
    with_temporary = {"median_seconds": statistics.median(r["seconds"] for r in rows), "runs": rows}

    port = free_port()
    running = {**base, "PREFECT_HOME": str(work / "prefect-running")}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=running, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, cwd=work)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the Prefect server did not start")
                time.sleep(1)
        with_server = reruns({**running, "PREFECT_API_URL": api}, store, args.reruns, api)
    finally:
        server.terminate()
        server.wait(timeout=60)

    result = {
        "benchmark": "bench_rerun.py",
        "commit": commit,
        "first_run": first,
        "no_change_rerun_temporary_server": with_temporary,
        "no_change_rerun_running_server": with_server,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "prefect": metadata.version("prefect"),  # its server and client set most of a rerun's time
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
