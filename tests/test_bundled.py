"""The configs and samples ship inside the package (importlib.resources): the demo runs from any
folder, and a built wheel carries them (CI also installs the wheel and runs the demo from it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from concner.tasks.engine.bundled import config_names, config_path, samples_dir
from concner.tasks.engine.config_loading import load_config
from concner.tasks.engine.errors import UserError
from tests.conftest import REPO


def test_bundled_configs_resolve_to_the_bundled_samples():
    assert {"demo", "demo-multi"} <= set(config_names())
    demo = load_config(config_path("demo"))
    assert demo.data.source_train == samples_dir() / "en_train.conll"
    assert demo.translate.parallel_file == samples_dir() / "es_train.conll"
    multi = load_config(config_path("demo-multi.yaml"))
    assert all(t.data.target_unlabeled == samples_dir() / "es_unlabeled.txt" for t in multi.targets)
    with pytest.raises(UserError, match="bundled configs: demo, demo-multi"):
        config_path("nope")


def test_demo_dry_run_from_another_folder(tmp_path: Path, monkeypatch):
    from tests.demo_store import run_cli

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("demo", "--dry-run", "--config", "demo-multi")
    assert code == 0, err
    assert "train@es-human compute" in " ".join(out.split())


def test_the_wheel_carries_configs_and_samples(tmp_path: Path):
    """Built from a copy of the tree (the build writes build/ next to pyproject.toml)."""
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "concner", "flows", "tasks", "models", "configs", "data"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copy(REPO / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("concner-*.whl"))).namelist())
    for config in ("demo.yaml", "demo-multi.yaml"):
        assert f"concner/configs/{config}" in names
    samples = {p.name for p in (REPO / "data" / "samples").iterdir()}
    assert {f"concner/data/samples/{name}" for name in samples} <= names
    # every module of the package, subpackages included (a subpackage missing from pyproject's
    # `packages` is left out of the wheel while the editable install still finds it)
    for folder in ("flows", "tasks", "models"):
        for module in (REPO / folder).rglob("*.py"):
            if "__pycache__" not in module.parts:
                assert f"concner/{module.relative_to(REPO).as_posix()}" in names, module
