"""What a stage key covers: code found through imports, local model folders by content."""

from __future__ import annotations

from pathlib import Path

import concner.tasks.engine.keys as keys


def _fake_package(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    files = {
        "concner.fake.stage": "from concner.fake import helper\n\ndef compute():\n    from .lazy import go\n",
        "concner.fake.helper": "X = 1\n",
        "concner.fake.lazy": "def go():\n    return 2\n",
        "concner.fake.unused": "Y = 3\n",
    }
    paths = {}
    for name, source in files.items():
        paths[name] = tmp_path / (name.rsplit(".", 1)[1] + ".py")
        paths[name].write_text(source)
    monkeypatch.setattr(keys, "_module_file", lambda name: str(paths[name]) if name in paths else None)
    return paths


def test_code_fingerprint_follows_imports_including_lazy_and_relative_ones(tmp_path, monkeypatch):
    paths = _fake_package(tmp_path, monkeypatch)
    def fingerprint(module: str) -> str:  # uncached: the files change below (within a run they are read once)
        keys._module_facts.cache_clear()
        return keys.code_fingerprint.__wrapped__(module)

    before = fingerprint("concner.fake.stage")
    paths["concner.fake.unused"].write_text("Y = 4\n")
    assert fingerprint("concner.fake.stage") == before  # not imported: not covered
    paths["concner.fake.lazy"].write_text("def go():\n    return 3\n")  # imported inside a function
    after_lazy = fingerprint("concner.fake.stage")
    assert after_lazy != before
    paths["concner.fake.helper"].write_text("X = 2\n")  # imported as `from package import module`
    assert fingerprint("concner.fake.stage") != after_lazy


def test_local_model_folder_is_keyed_by_content_not_path(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "config.json").write_text('{"hidden_size": 8}')
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    cache = tmp_path / "cache"
    params_a = keys.keyed_params({"encoder": str(a), "lr": 1}, ("encoder",), cache)
    params_b = keys.keyed_params({"encoder": str(b), "lr": 1}, ("encoder",), cache)
    assert params_a == params_b and params_a["encoder"] != str(a)
    assert keys.keyed_params({"encoder": "bert-base-multilingual-cased"}, ("encoder",), cache) == {
        "encoder": "bert-base-multilingual-cased"}

    hashed = []
    real_digest = keys.file_digest
    monkeypatch.setattr(keys, "file_digest", lambda p: hashed.append(p) or real_digest(p))
    keys.keyed_params({"encoder": str(a)}, ("encoder",), cache)
    assert hashed == []  # unchanged folder: the cached digest (path, size, mtime) is used
    (a / "model.safetensors").write_bytes(b"\x01" * 64)  # same size, new content and mtime
    changed = keys.keyed_params({"encoder": str(a)}, ("encoder",), cache)
    assert hashed and changed != params_a


def test_a_module_that_only_renders_is_left_out_of_the_code_fingerprint(tmp_path, monkeypatch):
    """Editing how a summary looks must not recompute the stage (and everything below it)."""
    paths = _fake_package(tmp_path, monkeypatch)
    paths["concner.fake.helper"].write_text("PRESENTATION_ONLY = True\n\ndef table():\n    return 1\n")

    def fingerprint(module: str) -> str:
        keys._module_facts.cache_clear()
        return keys.code_fingerprint.__wrapped__(module)

    before = fingerprint("concner.fake.stage")
    paths["concner.fake.helper"].write_text("PRESENTATION_ONLY = True\n\ndef table():\n    return 2\n")
    assert fingerprint("concner.fake.stage") == before
    paths["concner.fake.helper"].write_text("PRESENTATION_ONLY = False\n\ndef table():\n    return 2\n")
    assert fingerprint("concner.fake.stage") != before


def _stage_fingerprints(monkeypatch, tmp_path: Path, module: str | None = None, edit=None) -> dict[str, str]:
    """Each stage's code fingerprint, with `module`'s source passed through `edit` first."""
    from concner.tasks.engine import registry

    real = keys._module_file
    if module is not None:
        source = Path(real(module)).read_text(encoding="utf-8")
        edited = edit(source)
        assert edited != source, "the edit changed nothing"
        copy = tmp_path / module.rsplit(".", 1)[1]
        copy.mkdir(exist_ok=True)
        path = copy / Path(real(module)).name
        path.write_text(edited, encoding="utf-8")
        monkeypatch.setattr(keys, "_module_file", lambda name: str(path) if name == module else real(name))
    keys._module_facts.cache_clear()
    try:
        return {spec.name: keys.code_fingerprint.__wrapped__(spec.compute.__module__) for spec in registry.STAGES}
    finally:
        monkeypatch.undo()
        keys._module_facts.cache_clear()


def test_engine_messages_and_summaries_are_outside_every_stage_key(tmp_path, monkeypatch):
    """Rewording an error in the config module, editing the store, the errors, the progress bars
    or a summary: no stage is recomputed."""
    before = _stage_fingerprints(monkeypatch, tmp_path)
    edits = {
        "concner.tasks.engine.config": lambda s: s.replace("is not a run name", "is no run name"),
        "concner.tasks.engine.config_loading": lambda s: s.replace("key given twice", "key twice"),
        "concner.tasks.engine.store": lambda s: s + "\n\ndef unused_helper():\n    return 1\n",
        "concner.tasks.engine.errors": lambda s: s.replace("exit_code = 2", "exit_code = 2  # the usual"),
        "concner.tasks.engine.progress": lambda s: s + "\n# a comment\n",
        "concner.tasks.presentation.summary": lambda s: s + "\n# a comment\n",
        "concner.tasks.presentation.training_summary": lambda s: s + "\n# a comment\n",
        "concner.tasks.stage_summaries.translate": lambda s: s.replace("translations (", "sentences ("),
        "concner.tasks.stage_summaries.ingest": lambda s: s + "\n# a comment\n",
    }
    for module, edit in edits.items():
        assert _stage_fingerprints(monkeypatch, tmp_path, module, edit) == before, module


def test_editing_a_loss_or_the_training_loop_changes_the_stages_that_train(tmp_path, monkeypatch):
    """Editing a loss changes train's key; the stages below follow by their inputs' content
    (test_trust.py: recomputed stages key downstream by content)."""
    before = _stage_fingerprints(monkeypatch, tmp_path)
    after = _stage_fingerprints(monkeypatch, tmp_path, "concner.models.losses", lambda s: s + "\nEPS = 1e-9\n")
    changed = {stage for stage in before if after[stage] != before[stage]}
    assert "train" in changed and "ingest" not in changed and "translate" not in changed
    after = _stage_fingerprints(monkeypatch, tmp_path, "concner.tasks.training.train", lambda s: s + "\nX = 1\n")
    changed = {stage for stage in before if after[stage] != before[stage]}
    assert {"train", "distill"} <= changed and "ingest" not in changed
    # derive_seed decides every stage's random draws: tasks/engine/stage.py stays in every key
    after = _stage_fingerprints(monkeypatch, tmp_path, "concner.tasks.engine.stage", lambda s: s + "\nX = 1\n")
    assert all(after[stage] != before[stage] for stage in before)


def test_a_stage_sees_only_the_input_files_its_key_covers(tmp_path, monkeypatch):
    """`reads` is enforced: a stage computes from a view of each input that holds only the files
    it declared, so a file it did not declare (and its key does not cover) cannot be read."""
    from dataclasses import replace

    import pytest

    from concner.flows import stage_task
    from concner.flows.plan import PlannedStage
    from concner.tasks.engine import registry
    from concner.tasks.engine.config import RunConfig
    from concner.tasks.engine.store import ArtifactStore

    store = ArtifactStore(tmp_path / "store")
    with store.writing("ingest", "k1", params={}, inputs={}) as (out, _):
        (out / "declared.txt").write_text("keyed")
        (out / "other.txt").write_text("not keyed")
    with store.declared_view("ingest", "k1", ("declared.*",)) as view:
        assert sorted(p.name for p in view.iterdir()) == ["declared.txt", "manifest.json"]
        assert (view / "declared.txt").read_text() == "keyed"
    assert not view.exists()

    seen = {}

    def compute(ctx):
        seen["declared"] = (ctx.inputs["ingest"] / "declared.txt").read_text()
        (ctx.inputs["ingest"] / "other.txt").read_text()

    spec = replace(registry.get("evaluate"), name="reader", inputs=("ingest",), compute=compute,
                   reads=lambda config: {"ingest": ("declared.*",)})
    monkeypatch.setattr(stage_task.registry, "get", lambda name: spec)
    planned = PlannedStage("reader", "k2", {"ingest": "k1"}, {}, "compute")
    with pytest.raises(FileNotFoundError, match="other.txt"):
        stage_task.compute_stage(RunConfig(target_lang="es", data={"source_train": tmp_path / "x.conll"}), store,
                                 planned)
    assert seen["declared"] == "keyed"
    assert not store.exists("reader", "k2")  # nothing published


def test_a_library_upgrade_changes_the_keys_of_the_stages_that_use_it(demo_run, tmp_path, monkeypatch):
    """Library versions are keyed: the same code and data under another torch is another artifact,
    for exactly the stages that declare torch among their libraries."""
    import shutil

    from concner.flows.plan import plan_run
    from concner.tasks.engine import registry
    from concner.tasks.engine.store import ArtifactStore
    from tests.demo_store import demo_config

    store = ArtifactStore(shutil.copytree(demo_run.store, tmp_path / "store", ignore=shutil.ignore_patterns("runs")))
    config = demo_config()
    before = {s.name: s.key for s in plan_run(config, store)}
    assert before == {name: entry["key"] for name, entry in demo_run.record["stages"].items()}

    real = keys.metadata.version
    monkeypatch.setattr(keys.metadata, "version", lambda name: "99.0" if name == "torch" else real(name))
    keys._library_version.cache_clear()
    try:
        after = {s.name: s.key for s in plan_run(config, store)}
    finally:
        keys._library_version.cache_clear()
    uses_torch = {s.name for s in registry.STAGES if "torch" in s.libraries}
    # a stage below a recomputed one has no key until its inputs exist again (None)
    rekeyed = {name for name in before if after[name] is not None and after[name] != before[name]}
    assert rekeyed <= uses_torch and "translate" in rekeyed
    assert all(after[name] != before[name] for name in uses_torch)
    assert after["ingest"] == before["ingest"] and after["ingest_target"] == before["ingest_target"]
