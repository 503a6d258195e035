"""Rough time per stage from the corpus sizes and the models' sizes, before anything runs.

The figures are measured throughputs on this project's benchmark machine (2 CPU cores, no GPU,
torch 2.13 CPU, other jobs sometimes running), taken from `benchmarks/results/*.json`
(tests/test_estimate.py checks that the constants below still match those files), for
all-MiniLM-L6-v2 (6 layers, width 384). Other encoders are scaled by layers x width^2 (the
cost of a transformer layer grows with the square of its width); a hub model whose config is
not available locally is assumed to be base-sized (12 layers, width 768: 8x MiniLM). Expect
+-2x: real sentence lengths, early stopping, machine load and a GPU (far faster) all move them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.model_info import ModelInfo

# benchmarks/results/recipe_cpu_n100.json, runs["100/13"]["ConCNER teacher"]: three (size, seed) runs
# shared the 2 cores (recipe.py --jobs 3, one torch thread each), so a run had 2/3 of a core; the
# figures below are scaled to one core of its own
RECIPE_CORE_SHARE = 2 / 3
# stage_seconds.train = 702.62 s for train_steps = 154 (100 pairs, batch 16 pairs = 32 sentences
# with translations, TCL + LCL, max_length 64), per-epoch scoring included
TRAIN_S_PER_STEP = 702.62 / 154 * RECIPE_CORE_SHARE
TRAIN_BENCH_BATCH = 16
# ... stage_seconds.pseudo_label = 27.14 s for 1,000 unlabeled sentences
PSEUDO_S_PER_SENTENCE = 27.14 / 1000 * RECIPE_CORE_SHARE
# ... stage_seconds.distill = 1138.32 s for the student's 10 epochs (runs["100/13"]["student"].epochs_run)
# over 1,000 sentences (batch 32, max_length 64)
DISTILL_S_PER_SENTENCE_EPOCH = 1138.32 / (10 * 1000) * RECIPE_CORE_SHARE
# benchmarks/results/recipe_cpu_adapt_n100.json, runs["100/13"]["ConCNER teacher, adapted"]: the adapt
# stage's seconds for its steps (batch 32, max_length 64, the same 2/3-core share), load and held-out
# loss included
ADAPT_SECONDS, ADAPT_STEPS, ADAPT_BENCH_BATCH = 1836.37, 300, 32
ADAPT_S_PER_STEP = ADAPT_SECONDS / ADAPT_STEPS * RECIPE_CORE_SHARE
# benchmarks/results/align.json: batched.s_per_pair = 0.0149 (300 real pairs, layer 5, all methods)
ALIGN_S_PER_PAIR = 0.0149
ALIGN_BENCH_LAYER = 5
# benchmarks/results/translate.json: batched.median_sentences_per_s = 15.2 (Marian d512, 6+6 layers,
# greedy, batch 32); beam search costs about num_beams times as much
TRANSLATE_SENTENCES_PER_S = 15.182
TRANSLATE_BENCH_LAYERS, TRANSLATE_BENCH_WIDTH = 12, 512
# benchmarks/results/determinism.json: seconds[0] = 40.6 for the whole demo (tiny models): 152 teacher
# + 200 student steps. Small models are bound by per-step overheads, not by layers x width^2: no
# training step is estimated below this
FLOOR_S_PER_STEP = 40.6 / (152 + 200)
# README "Reliability": the readers take about a second per 15k-sentence file
INGEST_S_PER_SENTENCE = 1 / 15000

BENCH_LAYERS, BENCH_WIDTH = 6, 384  # all-MiniLM-L6-v2
ASSUMED_LAYERS, ASSUMED_WIDTH = 12, 768  # a base-sized encoder (mBERT, XLM-R base)
SOURCE = "benchmarks/results/*.json: all-MiniLM-L6-v2 on a 2-core CPU, scaled by layers x width^2"


@dataclass(frozen=True)
class Sizes:
    """Sentence counts the stages will see."""

    source_train: int  # labeled source sentences trained on (after the dev hold-out and the sample)
    target_unlabeled: int  # pseudo-labelled and distilled on
    labeled_eval: int = 0  # dev/test sentences scored after each epoch (small next to training)


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    seconds: float
    basis: str  # what the figure was computed from, for the plan


def compute_factor(layers: int | None, width: int | None, bench_layers: int = BENCH_LAYERS,
                   bench_width: int = BENCH_WIDTH) -> float:
    """Cost relative to the benchmark model: layers x width^2 (unknown: a base-sized model)."""
    layers = ASSUMED_LAYERS if layers is None else layers
    width = ASSUMED_WIDTH if width is None else width
    return (layers * width * width) / (bench_layers * bench_width * bench_width)


def _epochs(n: int, batch: int, epochs: int, min_steps: int) -> tuple[int, int]:
    """(epochs run, optimizer steps) as the training loops size them: at least min_steps steps."""
    per_epoch = max(1, math.ceil(n / batch))
    run = max(epochs, math.ceil(min_steps / per_epoch))
    return run, run * per_epoch


def estimate(config: RunConfig, sizes: Sizes, encoder: ModelInfo, aligner: ModelInfo,
             translator: ModelInfo | None = None, student: ModelInfo | None = None) -> list[StageEstimate]:
    """Seconds per stage for one target of `config` (upper-ish: early stopping can end training sooner)."""
    t, d = config.train, config.distill
    out = [StageEstimate("ingest", 1 + INGEST_S_PER_SENTENCE * (sizes.source_train + sizes.target_unlabeled),
                         "read and validated")]
    if config.translate.backend == "parallel":
        out.append(StageEstimate("translate", 1.0, "read from translate.parallel_file"))
    else:
        layers = width = None
        if translator is not None and translator.known:
            layers, width = translator.layers, translator.hidden
        factor = compute_factor(layers, width, TRANSLATE_BENCH_LAYERS, TRANSLATE_BENCH_WIDTH) if layers else 1.0
        seconds = sizes.source_train / TRANSLATE_SENTENCES_PER_S * factor * config.translate.num_beams
        out.append(StageEstimate("translate", seconds, f"{sizes.source_train} sentences, "
                                 f"{config.translate.num_beams} beam(s), {TRANSLATE_SENTENCES_PER_S:.1f} sentences/s "
                                 "for an opus-mt-sized Marian with 1 beam"))
    enc = compute_factor(encoder.layers, encoder.hidden)
    if config.adapt.enabled:
        a = config.adapt
        per_step = ADAPT_S_PER_STEP * enc * (a.batch_size / ADAPT_BENCH_BATCH)
        out.append(StageEstimate("adapt", a.steps * max(per_step, FLOOR_S_PER_STEP),
                                 f"{a.steps} steps of {a.batch_size} masked sentences"))
    layer = min(config.project.layer, aligner.layers) if aligner.layers is not None else config.project.layer
    align_factor = compute_factor(layer, aligner.hidden if aligner.known else None, ALIGN_BENCH_LAYER)
    out.append(StageEstimate("project", sizes.source_train * ALIGN_S_PER_PAIR * align_factor,
                             f"{sizes.source_train} pairs through {layer} layers of the aligner"))
    epochs, steps = _epochs(sizes.source_train, t.batch_size, t.epochs, t.min_steps)
    per_step = TRAIN_S_PER_STEP * enc * (t.batch_size / TRAIN_BENCH_BATCH) * (1.0 if t.use_translations else 0.5)
    out.append(StageEstimate("train", steps * max(per_step, FLOOR_S_PER_STEP), f"up to {epochs} epochs = {steps} steps of {t.batch_size} "
                             f"sentence{' pairs' if t.use_translations else 's'}"))
    out.append(StageEstimate("pseudo_label", sizes.target_unlabeled * PSEUDO_S_PER_SENTENCE * enc,
                             f"{sizes.target_unlabeled} unlabeled sentences"))
    student = student or encoder
    d_epochs, d_steps = _epochs(sizes.target_unlabeled, d.batch_size, d.epochs, d.min_steps)
    distill = sizes.target_unlabeled * d_epochs * DISTILL_S_PER_SENTENCE_EPOCH * compute_factor(student.layers,
                                                                                                student.hidden)
    out.append(StageEstimate("distill", max(distill, d_steps * FLOOR_S_PER_STEP),
                             f"up to {d_epochs} epochs over {sizes.target_unlabeled} sentences"))
    out.append(StageEstimate("evaluate", 1.0, "scores already computed by train and distill"))
    return out


def human(seconds: float) -> str:
    """'~40 s', '~12 min', '~2.5 h' (rounded: these are estimates)."""
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"
