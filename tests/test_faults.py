"""Faults: a store that cannot be written, a disk that fills up during a stage, SIGTERM."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.test_trust import SMALL, _concner, _env, _running, _server_children

DEMO = REPO / "configs" / "demo.yaml"


def test_store_that_cannot_be_written_is_one_clean_error(cli, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    code, out, err = cli("run", DEMO, "--store", blocker / "store", *SMALL)
    assert code == 2
    assert err.count("is a file, not a folder") == 1 and "Traceback" not in err + out
    assert str(blocker / "store") in err


def test_disk_full_during_a_stage_leaves_nothing_half_written(cli, tmp_path, monkeypatch):
    import concner.tasks.engine.store as store_module

    real_publish = store_module.ArtifactStore._publish

    def full_disk(tmp: Path, final: Path) -> None:
        if final.parent.name == "translate":
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "translations.parquet"))
        real_publish(tmp, final)

    monkeypatch.setattr(store_module.ArtifactStore, "_publish", staticmethod(full_disk))
    root = tmp_path / "store"
    code, out, err = cli("run", DEMO, "--store", root, "--until", "translate", *SMALL)
    assert code == 2, err[-2000:]
    assert err.count("No space left on device") == 1 and "Traceback" not in err
    assert "cannot write to the store" in err
    record = ArtifactStore(root).list_runs()[-1]
    assert record["status"] == "failed" and record["failed_stage"] == "translate"
    assert not (root / "stages" / "translate").exists() or not list((root / "stages" / "translate").iterdir())
    monkeypatch.undo()
    code, out, err = cli("run", DEMO, "--store", root, "--until", "translate", *SMALL)
    assert code == 0, err[-2000:]
    assert ArtifactStore(root).list_runs()[-1]["stages"]["translate"]["status"] == "computed"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the server process")
def test_sigterm_during_training_is_recorded_and_cleans_up(tmp_path):
    root = tmp_path / "store"
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(_concner("run", DEMO, "--store", root, "--until", "train", *SMALL),
                                env=_env(tmp_path, None), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and not list((root / "stages" / "train").glob(".*.tmp-*")):
        assert proc.poll() is None, "the run ended before training started"
        time.sleep(0.05)
    servers = _server_children(proc.pid)
    assert servers, "no temporary Prefect server found for the run"
    os.kill(proc.pid, signal.SIGTERM)
    try:
        status = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the run did not end within 120 s of SIGTERM; its output:\n" + log.read_text(errors="replace")[-4000:])
    # 143: main() exited as a process ended by SIGTERM; -SIGTERM: the exit hung in Prefect's services
    # and the signal's default action ended it after EXIT_GRACE_S (test_a_hung_exit_after_a_signal...)
    assert status in (143, -signal.SIGTERM), log.read_text(errors="replace")[-4000:]
    deadline = time.time() + 15  # stopped by Prefect at exit, or by the watchdog once the run is gone
    while _running(servers) and time.time() < deadline:
        time.sleep(0.2)
    assert _running(servers) == []
    record = ArtifactStore(root).list_runs()[-1]
    assert record["status"] == "interrupted" and record["failed_stage"] == "train"
    assert not list((root / "stages").glob("*/.*"))  # the temp folder went with the interrupted writer


@pytest.mark.slow
def test_a_user_error_inside_a_stage_is_printed_once(prefect_server, tmp_path):
    """Not caught by preflight: the teacher guard fails the train stage after training (its floor
    set out of reach here); Prefect must not echo the message."""
    from tests.test_trust import _test_server_url

    proc = subprocess.run(
        _concner("run", DEMO, "--store", tmp_path / "store", "--until", "train", *SMALL,
                 "--set", "adapt.enabled=false", "--set", "train.min_selection_f1=1.0"),
        env=_env(tmp_path, _test_server_url()), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert output.count("the teacher learned (almost) nothing") == 1, output[-3000:]
    assert "Traceback" not in output and "NoneType: None" not in output
    assert "Loading weights" not in output  # no progress bars spliced into the log lines of a pipe
    record = ArtifactStore(tmp_path / "store").list_runs()[-1]
    assert record["status"] == "failed" and record["failed_stage"] == "train"
    assert not (tmp_path / "store" / "stages" / "train").exists() or not list((tmp_path / "store" / "stages" / "train").iterdir())


@pytest.fixture
def small_filesystem(tmp_path):
    """A 3 MB tmpfs: too small for the demo's artifacts. Skipped where it cannot be mounted."""
    import shutil

    mount = shutil.which("mount")
    where = tmp_path / "small-fs"
    where.mkdir()
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root and mount(8)")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.slow
def test_a_real_full_disk_is_one_message_and_nothing_half_written(cli, small_filesystem):
    """The disk fills while a stage writes (safetensors wraps the OS error in its own type)."""
    root = small_filesystem / "store"
    code, out, err = cli("demo", "--store", root, "--set", "train.epochs=1", "--set", "distill.epochs=1",
                         "--set", "train.min_selection_f1=null")
    assert code == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write to the store" in errors[0] and "No space left on device" in errors[0], err
    assert err.count("No space left on device") == 1 and "Traceback" not in err
    record = ArtifactStore(root).list_runs()[-1]
    assert record["status"] == "failed" and record["user_error"]
    failed = record["failed_stage"]
    assert failed in errors[0]
    assert not list((root / "stages").glob("*/.*"))  # no temporary folder left behind
    assert not list((root / "stages" / failed).iterdir())  # nothing of the failed stage published


def test_a_hung_exit_after_a_signal_is_ended_by_the_signal(tmp_path):
    """A process told to terminate ends even when something holds its exit forever (here a thread
    that never finishes; in runs, Prefect's services waiting on their API)."""
    script = ("import signal, sys, threading\n"
              "from concner.flows.cli import end_by_signal_after\n"
              "threading.Thread(target=threading.Event().wait).start()\n"
              "end_by_signal_after(0.5, signal.SIGTERM)\n"
              "sys.exit(143)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=30)
    assert proc.returncode == -signal.SIGTERM


def test_a_process_that_goes_on_after_a_signalled_command_is_not_ended(tmp_path):
    """main() also runs inside longer-lived processes (these tests): the grace starts at the exit."""
    script = ("import signal, sys, time\n"
              "from concner.flows.cli import end_by_signal_after\n"
              "end_by_signal_after(0.3, signal.SIGTERM)\n"
              "time.sleep(1.5)\n"  # the process carries on past the grace: it must not be ended
              "sys.exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=30)
    assert proc.returncode == 0
