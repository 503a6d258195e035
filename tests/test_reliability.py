"""Records and keys that cannot lie, and bad input that ends in one clean message."""

from __future__ import annotations

from pathlib import Path

import pytest

from concner.tasks.engine.config_loading import config_from_dict, load_config
from concner.tasks.engine.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


def _raw(**sections) -> dict:
    raw = {"name": "t", "source_lang": "en", "target_lang": "es",
           "data": {"source_train": str(SAMPLES / "en_train.conll")}}
    raw.update(sections)
    return raw


def test_translate_key_covers_the_tag_repair_of_the_parallel_file():
    from concner.tasks.stages.translate import translate_params
    from concner.tasks.engine.store import digest_of

    translate = {"backend": "parallel", "parallel_file": str(SAMPLES / "es_train.conll")}
    keys = []
    for repair in (False, True):
        config = config_from_dict(_raw(translate=translate, ingest={"repair_tags": repair}), base_dir=REPO)
        keys.append(digest_of(translate_params(config)))
    assert keys[0] != keys[1]


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"target_lang: es\ndata:\n  source_train: {SAMPLES / 'en_train.conll'}\n" + text)
    return path


def test_an_infinite_or_nan_float_is_rejected_at_its_line(tmp_path):
    path = _yaml(tmp_path, "train:\n  tcl_temperature: .inf\n")
    with pytest.raises(UserError, match=r"run\.yaml, line 5: train\.tcl_temperature: .*finite"):
        load_config(path)
    with pytest.raises(UserError, match=r"--set distill\.temperature=\.nan: distill\.temperature: .*finite"):
        load_config(_yaml(tmp_path, ""), overrides=["distill.temperature=.nan"])


@pytest.mark.parametrize("name", ["en/es", "../../x", ".hidden", ""])
def test_a_run_name_that_is_no_slug_is_rejected_at_its_line(tmp_path, name):
    path = tmp_path / "run.yaml"
    path.write_text(f"name: '{name}'\ntarget_lang: es\ndata:\n  source_train: x.conll\n")
    with pytest.raises(UserError, match=r"run\.yaml, line 1: name: .* is not a run name"):
        load_config(path)
    with pytest.raises(UserError, match=r"--set name=.*: name: "):
        load_config(_yaml(tmp_path, ""), overrides=[f"name={name}"])
    assert load_config(_yaml(tmp_path, ""), overrides=["name=en-es_2.1"]).name == "en-es_2.1"


def test_sigterm_during_a_run_exits_143(monkeypatch):
    """A run ended by SIGTERM exits 128 + 15, as a process killed by it would (Ctrl-C stays 130)."""
    import os
    import signal
    import sys

    import typer

    from concner.flows import cli, commands_run

    def run_then_get_terminated():
        signal.signal(signal.SIGTERM, commands_run._interrupt)  # as `concner run` arms it before its flow
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # never reached: the handler raises

    def interrupted_by_ctrl_c():
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["concner"])
    # the grace at exit after a signal (tests/test_faults.py tests it in processes of its own) is
    # recorded, not armed: this process goes on
    armed = []
    monkeypatch.setattr(cli, "end_by_signal_after", lambda seconds, signum: armed.append(signum))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        for command, expected, grace in ((run_then_get_terminated, 143, [signal.SIGTERM]),
                                         (interrupted_by_ctrl_c, 130, [])):
            armed.clear()
            app = typer.Typer()
            app.command()(command)
            monkeypatch.setattr(cli, "app", app)
            with pytest.raises(SystemExit) as exit_:
                cli.main()
            assert exit_.value.code == expected and armed == grace
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o002, 0o775), (0o077, 0o700)])
def test_a_published_stage_folder_follows_the_umask(tmp_path, umask, mode):
    import os

    from concner.tasks.engine.store import ArtifactStore

    store = ArtifactStore(tmp_path / "store")
    previous = os.umask(umask)
    try:
        with store.writing("ingest", "k1", params={}, inputs={}) as (out, metrics):
            (out / "data.txt").write_text("x")
    finally:
        os.umask(previous)
    assert store.stage_dir("ingest", "k1").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("args", [("runs",), ("verify", "--all"), ("inspect", "latest"), ("report", "latest"),
                                  ("diff", "a", "b")])
def test_a_store_that_is_no_folder_is_one_error_line(tmp_path, args):
    from tests.demo_store import run_cli

    a_file = tmp_path / "store.txt"
    a_file.write_text("not a store")
    for store, problem in ((tmp_path / "missing", "no such store folder"), (a_file, "not a folder")):
        code, out, err = run_cli(*args, "--store", store)
        assert code == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {store}: {problem}") and "--store" in lines[0]
        assert "0 artifacts checked" not in out and "not found" not in err


def test_a_run_record_cut_in_half_is_named_by_runs_inspect_and_verify(tmp_path):
    from concner.tasks.engine.store import ArtifactStore
    from tests.demo_store import run_cli

    store = ArtifactStore(tmp_path / "store")
    store.save_run({"run_id": "demo-ok", "started": 1.0, "status": "completed", "stages": {}})
    cut = store.save_run({"run_id": "demo-cut", "started": 2.0, "status": "completed", "stages": {}})
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])

    code, out, err = run_cli("runs", "--store", store.root)
    assert code == 0 and "demo-ok" in out
    assert [line for line in err.splitlines() if line.strip()] == [
        next(line for line in err.splitlines() if line.startswith(f"warning: {cut}: unreadable run record"))]

    code, _, err = run_cli("inspect", "demo-cut", "--store", store.root)
    assert code == 2 and str(cut) in err

    code, out, _ = run_cli("verify", "--all", "--store", store.root)
    assert code == 1 and f"UNREADABLE {cut}" in out and "1 unreadable run records" in out
    code, out, _ = run_cli("verify", "demo-ok", "--store", store.root)
    assert code == 1 and f"UNREADABLE {cut}" in out


@pytest.mark.parametrize("reader, text, line", [
    ("conll", "EU\tB-ORG\nrejects\tO\n\nPe\x00ter\tB-PER\n", 4),
    ("conll_unlabeled", "EU\nrejects\n\r\nPe\x00ter\n", 4),
    ("lines", "one sentence here\nanother\x00 one\n", 2),
    ("aligned", "one\n\nthree \x00\n", 3),
])
def test_a_nul_byte_is_an_error_at_its_line(tmp_path, reader, text, line):
    from concner.tasks.text.conll import read_aligned_lines, read_conll, read_unlabeled
    from concner.tasks.engine.errors import InputFileError

    path = tmp_path / "data.txt"
    path.write_bytes(text.encode())
    read = {"conll": read_conll, "conll_unlabeled": lambda p: read_unlabeled(p, fmt="conll"),
            "lines": lambda p: read_unlabeled(p, fmt="lines"), "aligned": read_aligned_lines}[reader]
    with pytest.raises(InputFileError, match=rf"^{path}, line {line}: a NUL byte") as err:
        read(path)
    assert err.value.line == line


def test_a_metric_edited_in_a_manifest_is_caught_by_reuse_and_verify(tmp_path):
    import json

    from concner.tasks.engine.store import MANIFEST, MANIFEST_DIGEST, ArtifactStore
    from tests.demo_store import run_cli

    store = ArtifactStore(tmp_path / "store")
    with store.writing("evaluate", "k1", params={"split": "test"}, inputs={}) as (out, metrics):
        (out / "scores.txt").write_text("f1 0.194\n")
        metrics.update(f1=0.194, per_type={1: 0.5, 10: 0.2, 2: 0.1}, folder=tmp_path)  # int keys, a Path
    assert store.problems("evaluate", "k1") == [] and store.manifest("evaluate", "k1")["metrics"]["f1"] == 0.194

    path = store.stage_dir("evaluate", "k1") / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["metrics"]["f1"] = 0.99  # still valid JSON, files untouched
    path.write_text(json.dumps(manifest, indent=2))
    problems = store.problems("evaluate", "k1")
    assert len(problems) == 1 and f"{path}: edited after it was written" in problems[0]
    assert store.manifest("evaluate", "k1") is None  # what reuse asks: not reused

    code, out, _ = run_cli("verify", "--all", "--store", store.root)
    assert code == 1 and "edited after it was written" in out and "1 corrupt" in out

    del manifest[MANIFEST_DIGEST]  # a manifest written before manifests kept their digest
    path.write_text(json.dumps(manifest, indent=2))
    assert store.problems("evaluate", "k1") == []


def test_bytes_flipped_in_place_are_found_by_run_verify_and_recomputed(cli, demo_run, tmp_path, caplog):
    """16 bytes of the student's weights flipped with size and mtime kept: an ordinary rerun trusts
    the stamp (documented: it hashes only files that changed); `run --verify` re-hashes, names the
    file and recomputes the student."""
    import os
    import shutil

    from concner.tasks.engine.store import ArtifactStore
    from tests.demo_store import FAST

    root = tmp_path / "store"
    shutil.copytree(demo_run.store, root)  # copy2 keeps mtimes: the verification stamps stay valid
    store = ArtifactStore(root)
    weights = store.stage_dir("distill", demo_run.record["stages"]["distill"]["key"]) / "model" / "model.safetensors"
    stat = weights.stat()
    with weights.open("r+b") as f:
        f.seek(stat.st_size // 2)
        block = f.read(16)
        f.seek(stat.st_size // 2)
        f.write(bytes(b ^ 0xFF for b in block))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    demo = REPO / "configs" / "demo.yaml"
    code, out, err = cli("run", demo, "--store", root, *FAST, "--dry-run")
    assert code == 0 and "distill reuse" in " ".join(out.split()), out
    caplog.clear()
    code, out, err = cli("run", demo, "--store", root, *FAST, "--verify")
    assert code == 0, err[-3000:]
    warned = [r.getMessage() for r in caplog.records if "corrupt artifact, recomputed" in r.getMessage()]
    assert len(warned) == 1 and "model.safetensors" in warned[0] and "model.safetensors" not in err, warned
    record = store.list_runs()[-1]
    statuses = {entry: info["status"] for entry, info in record["stages"].items()}
    # the recomputed student has the recorded bytes again, so evaluate's key is unchanged: reused
    assert statuses["distill"] == "computed"
    assert {s for e, s in statuses.items() if e != "distill"} == {"reused"}
    assert store.problems("distill", record["stages"]["distill"]["key"], full=True) == []
