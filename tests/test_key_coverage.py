"""Every config field a stage reads while it computes is covered by its key.

Each stage of the demo is computed again from the shared demo store's inputs while the config
fields it reads are recorded; then each field read is set to another value, and the stage's key
material (its parameters, the files it reads, the inputs it depends on) must change. A field
that a stage reads but its key ignores lets a store hand back bytes computed under another
setting: the translate stage once re-read the parallel file with `ingest.repair_tags` while its
key did not cover that setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from concner.flows.plan import read_inputs
from concner.tasks.engine import registry
from concner.tasks.engine.keys import keyed_params
from concner.tasks.engine.stage import StageContext, derive_seed
from concner.tasks.engine.store import ArtifactStore
from tests.config_reads import perturbed, recorded_reads
from tests.demo_store import demo_config

# Fields a stage may read without its key covering them, and why.
NOT_RESULTS = {
    "name": "the run's name labels records, never an artifact's content",
}


def key_inputs(spec, config) -> tuple:
    """What a stage's key is made of that the config decides."""
    reads = spec.reads(config) if spec.reads is not None else {}
    params = keyed_params(spec.params(config), spec.model_params, None)
    return params, {k: tuple(v) for k, v in reads.items()}, read_inputs(spec, config)


def changes_key(spec, config, field: str, scratch: Path) -> bool:
    before = key_inputs(spec, config)
    try:
        after = key_inputs(spec, perturbed(config, field, scratch))
    except Exception:  # the stage's key checks the setting itself (e.g. a file that must exist)
        return True
    return after != before


@pytest.mark.slow
def test_every_config_field_a_stage_reads_while_computing_is_in_its_key(demo_run, tmp_path):
    store = ArtifactStore(demo_run.store)
    config = demo_config()
    uncovered: list[str] = []
    seen: dict[str, set[str]] = {}
    for spec in registry.STAGES:
        manifest = demo_run.manifest(spec.name)
        inputs = {dep: store.stage_dir(dep, key) for dep, key in manifest["inputs"].items()}
        out = tmp_path / spec.name
        out.mkdir()
        ctx = StageContext(config, manifest["params"], derive_seed(config.seed, spec.name), inputs, out, {},
                           store_root=demo_run.store)
        with recorded_reads(config) as reads:
            spec.compute(ctx)
        seen[spec.name] = set(reads)
        for field in sorted(reads - NOT_RESULTS.keys()):
            if not changes_key(spec, config, field, tmp_path):
                uncovered.append(f"{spec.name} reads {field}")
    assert seen["translate"] >= {"ingest.repair_tags"}, seen["translate"]  # the recorder sees the reads
    assert seen["train"] >= {"train.learning_rate", "train.lambda_tcl", "adapt.enabled"}, seen["train"]
    assert not uncovered, "config fields read while computing but not in the stage's key: " + "; ".join(uncovered)


def test_a_translate_key_that_ignored_repair_tags_would_be_caught(tmp_path):
    """The check itself: translate's key with `ingest.repair_tags` left out misses that field."""
    config = demo_config()
    spec = registry.get("translate")
    assert changes_key(spec, config, "ingest.repair_tags", tmp_path)

    def params_without_repair(c):
        params = spec.params(c)
        params.pop("repair_tags")
        return params

    from dataclasses import replace

    blind = replace(spec, params=params_without_repair)
    assert not changes_key(blind, config, "ingest.repair_tags", tmp_path)
    assert changes_key(blind, config, "translate.parallel_file", tmp_path)
