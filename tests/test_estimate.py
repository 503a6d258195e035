"""The time estimates of `concner init` come from the measured benchmark results: the constants
must match benchmarks/results/*.json, and a larger encoder must cost proportionally more."""

from __future__ import annotations

import json

import pytest

from concner.tasks.engine import estimate as est
from concner.tasks.engine.config_loading import config_from_dict
from concner.tasks.engine.model_info import ModelInfo
from tests.conftest import REPO

RESULTS = REPO / "benchmarks" / "results"


def _bench(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def test_constants_are_the_measured_figures():
    recipe = _bench("recipe_cpu_n100")
    # three (size, seed) runs side by side on the machine's cores: each had that share of them
    share = recipe["machine"]["cpu_count"] / len(recipe["runs"])
    assert est.RECIPE_CORE_SHARE == pytest.approx(share)
    teacher, student = recipe["runs"]["100/13"]["ConCNER teacher"], recipe["runs"]["100/13"]["student"]
    stages = teacher["stage_seconds"]
    assert est.TRAIN_S_PER_STEP == pytest.approx(stages["train"] / teacher["train_steps"] * share, rel=1e-3)
    assert est.PSEUDO_S_PER_SENTENCE == pytest.approx(
        stages["pseudo_label"] / student["unlabeled_sentences"] * share, rel=1e-3)
    assert est.DISTILL_S_PER_SENTENCE_EPOCH == pytest.approx(
        stages["distill"] / (student["epochs_run"] * student["unlabeled_sentences"]) * share, rel=1e-3)
    adapted = _bench("recipe_cpu_adapt_n100")
    adapted_share = adapted["machine"]["cpu_count"] / len(adapted["runs"])
    assert adapted_share == pytest.approx(est.RECIPE_CORE_SHARE)
    row = adapted["runs"]["100/13"]["ConCNER teacher, adapted"]
    assert est.ADAPT_SECONDS == pytest.approx(row["stage_seconds"]["adapt"], rel=1e-3)
    assert est.ADAPT_STEPS == row["adapt"]["steps"]
    align = _bench("align")
    assert est.ALIGN_S_PER_PAIR == pytest.approx(align["batched"]["s_per_pair"], rel=1e-2)
    assert est.ALIGN_BENCH_LAYER == align["layer"]
    determinism = _bench("determinism")
    assert est.FLOOR_S_PER_STEP == pytest.approx(determinism["seconds"][0] / 352, rel=1e-3)
    translate = _bench("translate")
    assert est.TRANSLATE_SENTENCES_PER_S == pytest.approx(translate["batched"]["median_sentences_per_s"], rel=1e-3)


def _info(layers: int | None, hidden: int | None) -> ModelInfo:
    return ModelInfo("m", "local", None, layers, hidden, "test")


def test_estimate_scales_with_sizes_and_model():
    config = config_from_dict({"target_lang": "es", "data": {"source_train": "x"},
                               "translate": {"backend": "parallel", "parallel_file": "y"}}, base_dir=REPO)
    minilm = _info(6, 384)
    small = {e.stage: e.seconds for e in est.estimate(config, est.Sizes(500, 3000), minilm, minilm)}
    # the benchmark's own rate comes back: its unlabeled sentences pseudo-labelled in the measured
    # time on its share of the cores, so 3,000 of them on one core of their own
    recipe = _bench("recipe_cpu_n100")
    run = recipe["runs"]["100/13"]
    measured, sentences = run["ConCNER teacher"]["stage_seconds"]["pseudo_label"], run["student"]["unlabeled_sentences"]
    share = recipe["machine"]["cpu_count"] / len(recipe["runs"])
    assert small["pseudo_label"] == pytest.approx(measured * 3000 / sentences * share, rel=1e-2)
    base = {e.stage: e.seconds for e in est.estimate(config, est.Sizes(500, 3000), _info(12, 768), _info(12, 768))}
    assert base["train"] == pytest.approx(8 * small["train"]) and base["distill"] == pytest.approx(8 * small["distill"])
    unknown = {e.stage: e.seconds for e in est.estimate(config, est.Sizes(500, 3000), _info(None, None), minilm)}
    assert unknown["train"] == pytest.approx(base["train"])  # an unknown hub model is assumed base-sized
    more = {e.stage: e.seconds for e in est.estimate(config, est.Sizes(500, 6000), minilm, minilm)}
    assert more["distill"] == pytest.approx(2 * small["distill"])
    assert est.human(30) == "~30 s" and est.human(600) == "~10 min" and est.human(2 * 3600) == "~2.0 h"


def test_tiny_models_are_floored_by_the_measured_demo():
    """The demo (tiny models, 152 teacher + 200 student steps) took 40.6 s: its estimate is of that order."""
    from concner.tasks.engine.bundled import config_path
    from concner.tasks.engine.config_loading import load_config
    from concner.tasks.engine.model_info import describe

    demo = load_config(config_path("demo"))
    tiny = describe("tiny")
    total = sum(e.seconds for e in est.estimate(demo, est.Sizes(300, 400), tiny, tiny))
    assert 20 < total < 60


def test_the_adapt_stage_is_estimated_only_when_it_runs():
    base = {"target_lang": "es", "data": {"source_train": "x"},
            "translate": {"backend": "parallel", "parallel_file": "y"}}
    minilm = _info(6, 384)
    off = {e.stage for e in est.estimate(config_from_dict(base, base_dir=REPO), est.Sizes(500, 3000), minilm, minilm)}
    assert "adapt" not in off
    on = config_from_dict({**base, "adapt": {"enabled": True, "steps": 600, "batch_size": 64}}, base_dir=REPO)
    stages = {e.stage: e.seconds for e in est.estimate(on, est.Sizes(500, 3000), minilm, minilm)}
    # the benchmark's measured adapt, on one core of its own, times twice the steps and twice the batch
    adapted = _bench("recipe_cpu_adapt_n100")
    row = adapted["runs"]["100/13"]["ConCNER teacher, adapted"]
    share = adapted["machine"]["cpu_count"] / len(adapted["runs"])
    measured_steps = row["adapt"]["steps"]
    measured_batch = adapted["setting"]["adapt_defaults"]["batch_size"]  # not among its --set
    assert stages["adapt"] == pytest.approx(
        row["stage_seconds"]["adapt"] * share * (600 / measured_steps) * (64 / measured_batch), rel=1e-3)
