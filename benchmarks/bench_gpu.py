"""GPU benchmark of the three training/inference stages at mBERT's shape (run by hand on a GPU).

    python benchmarks/bench_gpu.py --label after [--eager] [--length-buckets] [--out benchmarks/results/gpu.json]

The encoder is a random-weight BERT of mBERT's shape (12 layers, hidden 768, 12 heads) built by
models/tiny.py from the demo samples' text, as in the scale issue's measurement: what is timed is
the loop, not what the weights know. The data are the demo samples cycled to the sizes of that
measurement: 500 source sentences with their translations (the teacher), 8,382 unlabeled
sentences (pseudo-labeling, then the student). For each stage the script records wall seconds,
optimizer steps per second, and the GPU's utilisation sampled every 0.1 s through NVML (the
share of time a kernel was running, as nvidia-smi reports it). The student's loop replays CUDA
graphs where the checkout has them (tasks/training/cuda_graphs.py; `--eager` turns them off), and so does
the teacher's where the checkout has its fixed-shape step. The row then holds `graph_check` and
`teacher_graph_check`: one batch's loss and gradients through the graphs against the eager step,
with dropout off (bf16 autocast on both, so they agree to bf16 precision, not bitwise).

It uses only the loop API (fit, TeacherLoss, DistillLoss, predict_probs) that older commits have
too, so the same script times an older checkout installed elsewhere:
    PYTHONPATH=/tmp/site_old python benchmarks/bench_gpu.py --label before
Results are merged into the output file under their label.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine_info  # noqa: E402


class GpuSampler:
    """Mean GPU utilisation (%) over a block, sampled every `interval` seconds through NVML."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle, self._nvml = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml
        except Exception:  # no NVML (CPU machine): no figure rather than a wrong one
            self._nvml = None

    def __enter__(self):
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        if self._nvml is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def cycled(sentences, n):
    return list(itertools.islice(itertools.cycle(sentences), n))


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def mask_check(model, sentences) -> dict | None:
    """Where the model hands the encoder a ready-made 4D mask: the largest logit difference on a
    padded batch against transformers building the mask itself (0.0: the same computation)."""
    if not hasattr(model, "_encoder_mask"):
        return None
    from concner.models.encoding import collate, encode_words

    model.eval()
    device = next(model.parameters()).device
    batch = collate(model.tokenizer, encode_words(model.tokenizer, sentences, None, 128), range(len(sentences)))
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    with torch.inference_mode():
        ours = model.token_model(input_ids=ids, attention_mask=model._encoder_mask(mask)).logits
        theirs = model.token_model(input_ids=ids, attention_mask=mask).logits
    return {"padded_rows": int((mask == 0).any(dim=1).sum()), "max_abs_diff": float((ours - theirs).abs().max())}


def checked(check, *args):
    """A check's result, or the error it raised: the timings of the row are kept either way."""
    try:
        return check(*args)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:2000]}


def graph_check(encoder, labels, items, device) -> dict | None:
    """One batch of 16 through the student's graphed step (captured, then replayed with fresh
    input tensors) against the eager step: |loss difference| and ||g_graph - g_eager|| / ||g_eager||
    over the classifier's gradients (gpu_graph_check.shapes_check, one shape). Dropout is off, so
    only bf16 rounding and the padded width separate them. None where the checkout has no graphs
    or there is no GPU."""
    if importlib.util.find_spec("concner.tasks.training.cuda_graphs") is None or device.type != "cuda":
        return None
    from gpu_graph_check import shapes_check

    calls = shapes_check(encoder, labels, items[:64], {"first 16": list(range(16))}, ["first 16"] * 2, device)
    keep = ("loss_eager", "loss_graph", "grad_rel_diff")
    return {"capture": {k: calls[0][k] for k in keep}, "replay": {k: calls[1][k] for k in keep}}


def teacher_graph_check(encoder, labels, pairs, device) -> dict | None:
    """The same for the teacher's graphed step (CE + TCL + LCL, balanced), over all parameters."""
    from concner.tasks.training.train import TeacherLoss

    if not hasattr(TeacherLoss, "graph_step") or device.type != "cuda":
        return None
    from gpu_graph_check import shapes_check

    calls = shapes_check(encoder, labels, pairs[:64], {"first 16": list(range(16))}, ["first 16"] * 2, device,
                         teacher=True)
    keep = ("loss_eager", "loss_graph", "grad_rel_diff")
    return {"capture": {k: calls[0][k] for k in keep}, "replay": {k: calls[1][k] for k in keep}}


def alias_flat_layout() -> None:
    """gpu_before_after.sh runs this script on older checkouts too: one from before tasks/ was
    grouped into subpackages has concner.tasks.train, not concner.tasks.training.train. The new
    names are pointed at the old modules there."""
    import types

    if importlib.util.find_spec("concner.tasks.training") is not None:
        return
    for group, names in {"training": ("train", "evaluate", "distill_loss"), "text": ("conll", "corpus")}.items():
        package = types.ModuleType(f"concner.tasks.{group}")
        package.__path__ = []
        sys.modules[package.__name__] = package
        for name in names:
            if importlib.util.find_spec(f"concner.tasks.{name}") is not None:
                sys.modules[f"{package.__name__}.{name}"] = importlib.import_module(f"concner.tasks.{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="name of this row in the output (e.g. before, after)")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--unlabeled", type=int, default=8382)
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--distill-epochs", type=int, default=1, help="1 epoch = 524 steps at 8,382 sentences")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length-buckets", action="store_true")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs in the teacher's and the student's loops")
    parser.add_argument("--compile", default="", help="stages (train,distill) whose training forward is compiled; "
                        "a warm-up fit of 64 items per such stage is timed apart")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_gpu"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu.json")
    args = parser.parse_args()

    alias_flat_layout()
    import concner.tasks.training.train as train_module
    from concner.models.ner_model import ConcNerModel
    from concner.models.tiny import build_tiny_encoder
    from concner.tasks.text.conll import read_conll
    try:
        from concner.tasks.training.distill_loss import DistillLoss
    except ImportError:  # an older checkout: the loss lived in the stage module
        from concner.tasks.distill import DistillLoss
    from concner.tasks.training.evaluate import pick_device, predict_probs
    from concner.tasks.training.train import FitSettings, TeacherLoss, fit, seed_everything

    samples = REPO / "data" / "samples"
    en = read_conll(samples / "en_train.conll")[0]
    es = read_conll(samples / "es_train.conll")[0]
    texts = [" ".join(s.tokens) for s in en + es]
    encoder = build_tiny_encoder(texts, args.work / "mbert_shape", vocab_size=30000, hidden_size=768, num_layers=12,
                                 num_heads=12)
    labels = ["O"] + sorted({t for s in en + es for t in s.tags} - {"O"})
    label_ids = {label: i for i, label in enumerate(labels)}
    pairs = cycled(list(zip(en, es)), args.pairs)
    unlabeled = [s.tokens for s in cycled(es, args.unlabeled)]
    device = pick_device()

    compiled = set(filter(None, args.compile.split(",")))

    def settings(epochs: int, stage: str) -> FitSettings:
        fields = {f.name for f in dataclasses.fields(FitSettings)}
        extra = {"length_buckets": True} if args.length_buckets else {}
        extra.update({"compile": True} if stage in compiled else {})
        if "cuda_graphs" in fields:  # an older checkout has no graphs: it runs eagerly anyway
            extra["cuda_graphs"] = not args.eager
        if set(extra) - fields:
            raise SystemExit(f"this checkout has no {', '.join(set(extra) - fields)} setting")
        return FitSettings(epochs=epochs, batch_size=args.batch_size, learning_rate=1e-4, seed=13, **extra)

    def timed_stage(fn):
        synchronize()
        with GpuSampler() as gpu:
            start = time.perf_counter()
            value = fn()
            synchronize()
            seconds = time.perf_counter() - start
        figures = {"seconds": round(seconds, 2), "gpu_util_mean": gpu.mean, "gpu_samples": len(gpu.samples)}
        print("stage done:", figures, flush=True)
        return value, figures

    # A fresh machine's first CUDA work pays for loading kernels and libraries from disk: in the
    # first calls of this benchmark that landed on whichever stage ran first (see the README, "Speed").
    # Untimed, a few steps of both loops and some inference take that cost first.
    seed_everything(0)
    scratch = ConcNerModel.from_encoder(encoder, labels).to(device)
    fit(scratch, pairs[:32], TeacherLoss(label_ids, 128), settings(1, ""))
    predict_probs(scratch, unlabeled[:64], batch_size=32, max_length=128)
    del scratch

    warmups = {}

    def warm_up(stage: str, items, loss) -> None:
        """Compiled: the first steps compile (and recompile for new shapes); timed on their own."""
        if stage in compiled:
            model = ConcNerModel.from_encoder(encoder, labels).to(device)
            _, warmups[stage] = timed_stage(lambda: fit(model, items[:64], loss, settings(1, stage)))

    warm_up("train", pairs, TeacherLoss(label_ids, 128))
    seed_everything(13)
    teacher = ConcNerModel.from_encoder(encoder, labels).to(device)
    result, train = timed_stage(lambda: fit(teacher, pairs, TeacherLoss(label_ids, 128), settings(args.train_epochs, "train")))
    train["steps"] = len(result.steps)
    train["cuda_graph_shapes"] = getattr(result, "cuda_graph_shapes", None)
    train["cuda_graph_error"] = getattr(result, "cuda_graph_error", None)
    train["steps_per_s"] = round(train["steps"] / train["seconds"], 1)

    probs, pseudo = timed_stage(lambda: predict_probs(teacher, unlabeled, batch_size=32, max_length=128,
                                                      uncovered_nan=True))
    pseudo["sentences_per_s"] = round(len(unlabeled) / pseudo["seconds"], 1)

    seed_everything(14)
    student = ConcNerModel.from_encoder(encoder, labels).to(device)
    from concner.tasks.text.corpus import Sentence

    items = [(Sentence(i, tokens, None), p) for i, (tokens, p) in enumerate(zip(unlabeled, probs))]
    warm_up("distill", items, DistillLoss(max_length=128))
    result, distill = timed_stage(lambda: fit(student, items, DistillLoss(max_length=128), settings(args.distill_epochs, "distill")))
    distill["steps"] = len(result.steps)
    distill["cuda_graph_shapes"] = getattr(result, "cuda_graph_shapes", None)
    distill["cuda_graph_error"] = getattr(result, "cuda_graph_error", None)
    distill["steps_per_s"] = round(distill["steps"] / distill["seconds"], 1)

    row = {
        "label": args.label,
        "mask_check": mask_check(teacher, unlabeled[:32]),
        "graph_check": checked(graph_check, encoder, labels, items, device),
        "teacher_graph_check": checked(teacher_graph_check, encoder, labels, pairs, device),
        "code": str(Path(train_module.__file__).resolve().parent.parent),
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "stages": {"train": train, "pseudo_label": pseudo, "distill": distill},
        "compile_warmups": warmups,
        "machine": machine_info(),
    }
    print(json.dumps(row, indent=2))
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    rows = [r for r in rows if r["label"] != args.label] + [row]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "bench_gpu.py", "rows": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
