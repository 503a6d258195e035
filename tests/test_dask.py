"""--runner dask: branches and sweep members on Prefect's DaskTaskRunner give the sequential run's
artifacts, byte for byte, with each key computed once; a real scheduler + workers on loopback too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from concner.flows.execute import waits_for
from concner.flows.pipeline import plan_run
from concner.flows.runner import runner_overrides
from concner.tasks.engine.config_loading import load_config
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.demo_store import FAST, run_cli

MULTI = REPO / "configs" / "demo-multi.yaml"
DEMO = REPO / "configs" / "demo.yaml"
# the FAST demo settings on fewer sentences: every stage runs, in well under a minute per run
SMALL = (*FAST, "--set", "ingest.sample_size=80", "--set", "ingest.max_unlabeled=60")


def stage_files(root: Path) -> dict[str, str]:
    """sha256 of every file of every artifact, by stage/key/path (manifests left out: they hold times)."""
    store = ArtifactStore(root)
    out = {}
    for stage, key in store.artifacts():
        manifest = store.manifest(stage, key)
        assert manifest is not None, (stage, key)
        assert store.problems(stage, key, full=True) == [], (stage, key)  # the bytes really are those
        for entry in manifest["files"]:
            out[f"{stage}/{key}/{entry['path']}"] = entry["sha256"]
    return out


def keys(record: dict) -> dict[str, str]:
    return {entry: info["key"] for entry, info in record["stages"].items()}


# -- options and config ------------------------------------------------------------------------


def test_runner_options_become_config_overrides():
    assert runner_overrides(None, None) == []
    assert runner_overrides("dask", None) == ["runner.kind=dask"]
    assert runner_overrides(None, "tcp://127.0.0.1:8786") == ["runner.kind=dask", "runner.address=tcp://127.0.0.1:8786"]
    config = load_config(MULTI, runner_overrides("dask", "tcp://10.0.0.5:8786"))
    assert (config.runner.kind, config.runner.address, config.runner.workers) == ("dask", "tcp://10.0.0.5:8786", 2)
    assert load_config(MULTI).runner.kind == "sequential"  # the default path is unchanged


@pytest.mark.parametrize("runner, address, fragment", [
    ("threads", None, "--runner 'threads': expected one of sequential, dask"),
    (None, "127.0.0.1:8786", "expected tcp://HOST:PORT"),
    (None, "tcp://127.0.0.1", "expected tcp://HOST:PORT"),
    (None, "tcp://127.0.0.1:99999", "port 99999 is not between 1 and 65535"),
    ("sequential", "tcp://127.0.0.1:8786", "needs --runner dask"),
])
def test_bad_runner_options_are_named(runner, address, fragment):
    with pytest.raises(UserError, match="--") as err:
        runner_overrides(runner, address)
    assert fragment in str(err.value)


def test_the_config_runner_section_is_validated():
    with pytest.raises(UserError, match="needs runner.kind: dask"):
        load_config(DEMO, ["runner.address=tcp://127.0.0.1:8786"])
    with pytest.raises(UserError, match="tcp://HOST:PORT"):
        load_config(DEMO, ["runner.kind=dask", "runner.address=scheduler:8786"])
    with pytest.raises(UserError, match="runner.workers"):
        load_config(DEMO, ["runner.kind=dask", "runner.workers=0"])


def test_serve_runner_options_replace_the_runner_of_registered_deployments():
    from types import SimpleNamespace

    from concner.flows.deploy import served_copy
    from concner.flows.runner import runner_update

    config = load_config(DEMO, ["runner.workers=3"]).model_dump(mode="json")
    registered = SimpleNamespace(name="demo", parameters={"config": config, "store_root": "/tmp/store"}, schedules=[],
                                 description="demo", tags=["concner"])
    runner = served_copy(registered, runner_update(None, "tcp://127.0.0.1:8786")).parameters["config"]["runner"]
    assert (runner["kind"], runner["address"], runner["workers"]) == ("dask", "tcp://127.0.0.1:8786", 3)
    assert served_copy(registered).parameters["config"]["runner"]["kind"] == "sequential"  # no option: as deployed


def test_branches_wait_only_for_their_own_stages_and_the_shared_ingest(tmp_path):
    plan = plan_run(load_config(MULTI), ArtifactStore(tmp_path))
    entries = [p.entry for p in plan]
    waits = {entries[i]: {entries[j] for j in js} for i, js in enumerate(waits_for(plan))}
    assert waits["ingest"] == set()
    assert waits["ingest_target@es-mt"] == {"ingest"}  # not after the whole es-human branch
    assert waits["train@es-mt"] == {"ingest", "ingest_target@es-mt", "translate@es-mt", "adapt@es-mt", "project@es-mt"}
    assert waits["evaluate@es-human"] == {"ingest"} | {e for e in entries if e.endswith("@es-human")} - {"evaluate@es-human"}
    one_target = plan_run(load_config(DEMO), ArtifactStore(tmp_path))
    assert waits_for(one_target) == [list(range(i)) for i in range(len(one_target))]  # a chain, as sequential


@pytest.mark.slow
def test_a_bad_or_unreachable_address_is_one_clean_error(tmp_path):
    code, out, err = run_cli("run", MULTI, "--store", tmp_path / "store", "--dask-address", "localhost:8786")
    assert code == 2 and "expected tcp://HOST:PORT" in err and "Traceback" not in err + out
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = run_cli("run", MULTI, "--store", tmp_path / "store", "--dask-address", f"tcp://127.0.0.1:{port}")
    assert code == 2, err
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err and "Traceback" not in err + out
    assert not (tmp_path / "store" / "stages").exists()


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sequential_multi(tmp_path_factory, prefect_server) -> tuple[Path, dict]:
    """The two-target demo run the default way (stages one after another in this process)."""
    store = tmp_path_factory.mktemp("multi-sequential")
    code, _, err = run_cli("run", MULTI, "--store", store, *SMALL)
    assert code == 0, err[-3000:]
    record = ArtifactStore(store).list_runs()[-1]
    assert record["status"] == "completed"
    return store, record


def check_same_run(store: Path, sequential: tuple[Path, dict]) -> dict:
    """The run in `store` has the sequential run's keys, files and scores, each key computed once."""
    seq_store, seq_record = sequential
    record = ArtifactStore(store).list_runs()[-1]
    assert record["status"] == "completed", record.get("error")
    assert list(record["stages"]) == list(seq_record["stages"])  # complete, in plan order
    assert keys(record) == keys(seq_record)
    assert {info["status"] for info in record["stages"].values()} == {"computed"}
    assert len(set(keys(record).values())) == len(record["stages"])  # every key once
    assert stage_files(store) == stage_files(seq_store)
    assert record["scores"] == seq_record["scores"]
    # within a branch the order held: a stage started after the one before it had published
    for target in record["targets"]:
        chain = ["ingest"] + [e for e in record["stages"] if e.endswith(f"@{target}")]
        times = [ArtifactStore(store).manifest(record["stages"][e]["stage"], record["stages"][e]["key"]) for e in chain]
        for before, after, name in zip(times, times[1:], chain[1:]):
            assert after["started"] >= before["ended"], name
    return record


@pytest.mark.slow
def test_two_targets_on_a_local_cluster_give_the_sequential_bytes(sequential_multi, tmp_path):
    code, out, err = run_cli("run", MULTI, "--store", tmp_path / "store", *SMALL, "--runner", "dask")
    assert code == 0, err[-3000:]
    record = check_same_run(tmp_path / "store", sequential_multi)
    workers = {info["worker"] for info in record["stages"].values()}
    assert len(workers) == 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers  # both worker processes


@pytest.mark.slow
def test_sweep_members_at_once_compute_each_shared_key_once(prefect_server, tmp_path):
    store = tmp_path / "store"
    code, out, err = run_cli("sweep", DEMO, "--grid", "train.lambda_tcl=0,1", "--until", "train", "--store", store,
                             *SMALL, "--runner", "dask")
    assert code == 0, err[-3000:]
    runs = ArtifactStore(store).list_runs()
    assert len(runs) == 2 and all(r["status"] == "completed" for r in runs)
    assert [list(r["stages"]) for r in runs] == [["ingest", "ingest_target", "translate", "adapt", "project", "train"]] * 2
    for stage in ("ingest", "ingest_target", "translate", "adapt", "project"):  # shared: one member computed, one reused
        assert len({r["stages"][stage]["key"] for r in runs}) == 1
        assert sorted(r["stages"][stage]["status"] for r in runs) == ["computed", "reused"], stage
    assert runs[0]["stages"]["train"]["key"] != runs[1]["stages"]["train"]["key"]
    assert len(ArtifactStore(store).artifacts()) == 7


@pytest.mark.slow
def test_a_user_error_on_a_worker_is_one_message_and_exit_2(prefect_server, tmp_path):
    """The teacher guard fails train on a worker: one `error:` line, exit 2, the record says so."""
    from tests.test_trust import _concner, _env, _test_server_url

    proc = subprocess.run(
        _concner("run", DEMO, "--store", tmp_path / "store", "--until", "train", *SMALL,
                 "--set", "train.min_selection_f1=0.99", "--runner", "dask"),
        env=_env(tmp_path, _test_server_url()), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train" in errors[0], output[-3000:]
    assert "Traceback" not in output and "NoneType: None" not in output
    guard = errors[0].split("error: ", 1)[1][:60]
    assert output.count(guard) == 1, output[-3000:]  # no echo from Prefect on the worker or in the flow
    record = ArtifactStore(tmp_path / "store").list_runs()[-1]
    assert record["status"] == "failed" and record["failed_stage"] == "train" and record["user_error"]
    assert list(record["stages"]) == ["ingest", "ingest_target", "translate", "adapt", "project"]


# -- a real scheduler and two workers on loopback -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dask(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "dask", *args]


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, then SIGKILL what is left; wait for all."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 20
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def loopback_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1 (free ports), this test's
    environment (PREFECT_HOME, HF_HUB_OFFLINE, this Python with concner installed); all stopped
    at the end, also when the test fails."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> None:
        log = open(logs / f"{name}.log", "w")
        procs.append(subprocess.Popen(args, env=dict(os.environ), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))  # its own group: stopped with all its children
        log.close()

    try:
        start("scheduler", _dask("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                 "--no-dashboard", "--idle-timeout", "900"))  # idle-timeout: a last resort
        for i in range(2):
            start(f"worker{i}", _dask("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                                      "--no-dashboard", "--name", f"w{i}", "--death-timeout", "60"))
        deadline = time.time() + 120
        while True:
            try:
                with Client(address, timeout=5, set_as_default=False) as client:
                    client.wait_for_workers(2, timeout=max(deadline - time.time(), 1))
                break
            except (OSError, TimeoutError):
                if time.time() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("dask cluster did not start: " + "\n".join(
                        f"{f.name}: {f.read_text()[-1500:]}" for f in sorted(logs.iterdir())))
                time.sleep(1)
        yield address, [p.pid for p in procs[1:]]
    finally:
        _stop(procs)
        assert all(p.poll() is not None for p in procs), "a dask process outlived the test"


@pytest.mark.slow
def test_two_targets_on_a_scheduler_and_two_workers_on_loopback(sequential_multi, loopback_cluster, tmp_path):
    address, worker_pids = loopback_cluster
    code, out, err = run_cli("run", MULTI, "--store", tmp_path / "store", *SMALL, "--dask-address", address)
    assert code == 0, err[-3000:]
    assert f"dask: 2 workers at {address}" in err
    record = check_same_run(tmp_path / "store", sequential_multi)
    assert record["config"]["runner"] == {"kind": "dask", "address": address, "workers": 2, "threads_per_worker": 1,
                                          "torch_threads": None}
    used = {int(info["worker"].rsplit(":", 1)[1]) for info in record["stages"].values()}
    assert used <= set(worker_pids) and used  # computed by the workers this test started, not in-process


def _descendants(root: int) -> list[int]:
    """pids of every process below `root` (read from /proc)."""
    from tests.test_trust import process_dirs

    children: dict[int, list[int]] = {}
    for proc in process_dirs():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to follow the cluster's processes")
def test_kill_9_during_a_dask_run_leaves_no_process_and_the_rerun_recovers(prefect_server, tmp_path):
    from tests.test_trust import _env, statuses

    store_root = tmp_path / "store"
    store = ArtifactStore(store_root)
    cmd = [sys.executable, "-c", "from concner.flows.cli import main; main()", "run", str(DEMO), "--store",
           str(store_root), "--runner", "dask", *SMALL]
    # no PREFECT_API_URL: a temporary server as well as the local cluster's processes hang off the run
    proc = subprocess.Popen(cmd, env=_env(tmp_path, None), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline and not list((store_root / "stages" / "train").glob(".*.tmp-*")):
        assert proc.poll() is None, "the run ended before training started"
        time.sleep(0.05)
    below = _descendants(proc.pid)
    assert len(below) >= 3  # the temporary server and the workers at least
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_running(pid) for pid in below):
        time.sleep(0.2)
    assert [pid for pid in below if _running(pid)] == []  # nothing of the run keeps computing or serving
    killed = store.list_runs()[-1]
    assert killed["status"] == "running" and killed["current_stage"] == "train"

    code, _, err = run_cli("run", DEMO, "--store", store_root, "--runner", "dask", *SMALL)
    assert code == 0, err[-3000:]
    runs = {r["run_id"]: r for r in store.list_runs()}
    assert runs[killed["run_id"]]["status"] == "interrupted" and runs[killed["run_id"]]["failed_stage"] == "train"
    rerun = store.list_runs()[-1]
    assert statuses(rerun)["project"] == "reused" and statuses(rerun)["train"] == "computed"
    assert not list((store_root / "stages").glob("*/.*"))  # the killed writer's temp folder is gone
