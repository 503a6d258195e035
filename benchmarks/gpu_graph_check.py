"""CUDA graphs in the student's and the teacher's loops, checked over several batch shapes and
through `fit` (by hand, on a GPU).

    python benchmarks/gpu_graph_check.py [--out benchmarks/results/gpu_graph_check.json]

bench_gpu.py times the loop on the demo's short sentences, which all fit one graph (16 x 32).
This checks what that run could not:

1. shapes: batches of four shapes (the demo's Spanish sentences, and the same joined 3 and 6 at a
   time; a short batch of 5 sentences padded to 16 rows), captured in turn and then replayed in
   another order, each call's loss and gradients against the eager step's on the same batch,
   with dropout off. The graphs share one memory pool and one set of gradient buffers, so a
   replay after other captures is what could go wrong.
2. fit: the student's `fit` with a dev set, 2 epochs, from the same initial weights, with graphs
   and without: the shapes captured, any fallback error, per-epoch loss and dev F1 of both. On
   a GPU the two are not bitwise equal (padded widths, bf16 rounding), only close.
3. and 4., the same for the teacher (CE + TCL + LCL with grad-norm balancing, LCL's O sample drawn
   from a generator of one seed on both sides): English sentences paired with the Spanish ones,
   every fourth without a translation; gradients over every parameter, the heads included.

The encoder is a small random BERT built by models/tiny.py from the demo's text: what is checked
is the loop, not what the weights know. The teacher's soft labels put 0.8 on the gold tag.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine_info  # noqa: E402


def joined(sentences, k: int):
    """Every k consecutive sentences as one (tokens and tags concatenated)."""
    from concner.tasks.text.corpus import Sentence

    out = []
    for start in range(0, len(sentences) - k + 1, k):
        part = sentences[start : start + k]
        out.append(Sentence(len(out), [t for s in part for t in s.tokens], [t for s in part for t in s.tags]))
    return out


def flat_grads(model, teacher: bool = False) -> torch.Tensor:
    params = model.parameters() if teacher else model.token_model.parameters()
    return torch.cat([p.grad.float().flatten() for p in params if p.grad is not None])


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def shapes_check(encoder, labels, items, groups: dict[str, list[int]], order: list[str], device,
                 teacher: bool = False) -> list[dict]:
    """The student's step (items: (sentence, soft labels)) or, with `teacher`, the teacher's
    (items: (source, translation or None))."""
    from concner.models.ner_model import ConcNerModel
    from concner.tasks.training.cuda_graphs import WIDTH_MULTIPLE, GraphedSteps
    from concner.tasks.training.distill_loss import DistillLoss
    from concner.tasks.training.train import TeacherLoss

    model = ConcNerModel.from_encoder(encoder, labels, dropout=0.0).to(device)
    loss = TeacherLoss({label: i for i, label in enumerate(labels)}, 128) if teacher else DistillLoss(max_length=128)
    batches = loss.prepare(model, items)
    reference = {}
    for name, indices in groups.items():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            eager = loss(model, batches.batch(indices), seeded())
        eager["loss"].backward()
        reference[name] = (float(eager["loss"].detach()), flat_grads(model, teacher))
        del eager  # its autograd graph must not outlive this pass (see tasks/training/cuda_graphs.py)
        model.zero_grad(set_to_none=True)
    graphs = GraphedSteps(lambda: loss.graph_step(model))
    calls = []
    for name in order:
        # the generator only where LCL draws from it: an older student's batches take none
        extra = {"generator": seeded()} if teacher else {}
        static = batches.static_batch(groups[name], 16, WIDTH_MULTIPLE, **extra)
        terms = graphs(static)
        ref_loss, ref_grads = reference[name]
        grads = flat_grads(model, teacher)
        calls.append({"batch": name, "shape": "x".join(map(str, static[0].shape)),
                      "loss_eager": round(ref_loss, 6), "loss_graph": round(float(terms["loss"]), 6),
                      "grad_rel_diff": float((grads - ref_grads).norm() / ref_grads.norm())})
        print("teacher" if teacher else "student", "shape check:", calls[-1], flush=True)
    return calls


def fit_check(encoder, labels, items, dev, device, teacher: bool = False) -> dict:
    from concner.models.ner_model import ConcNerModel
    from concner.tasks.training.distill_loss import DistillLoss
    from concner.tasks.training.train import FitSettings, TeacherLoss, fit, seed_everything

    out = {}
    for name, graphs in (("eager", False), ("graphs", True)):
        seed_everything(13)
        student = ConcNerModel.from_encoder(encoder, labels).to(device)
        loss = TeacherLoss({label: i for i, label in enumerate(labels)}, 128) if teacher else DistillLoss(max_length=128)
        result = fit(student, items, loss,
                     FitSettings(epochs=2, batch_size=16, learning_rate=1e-4, patience=None, seed=13, cuda_graphs=graphs),
                     dev=dev)
        out[name] = {"steps": len(result.steps), "cuda_graph_shapes": result.cuda_graph_shapes,
                     "cuda_graph_error": result.cuda_graph_error, "best_epoch": result.best_epoch,
                     "epochs": [{k: round(v, 4) for k, v in e.items()} for e in result.epochs]}
        print("teacher" if teacher else "student", "fit check:", name, out[name], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_graph_check"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_graph_check.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this checks CUDA graphs")

    from concner.models.tiny import build_tiny_encoder, peaked_teacher_probs
    from concner.tasks.text.conll import read_conll

    samples = REPO / "data" / "samples"
    en = read_conll(samples / "en_train.conll")[0]
    es = read_conll(samples / "es_train.conll")[0]
    dev = read_conll(samples / "es_dev.conll")[0]
    encoder = build_tiny_encoder([" ".join(s.tokens) for s in en + es], args.work / "encoder", vocab_size=8000,
                                 hidden_size=256, num_layers=4, num_heads=4)
    labels = ["O"] + sorted({t for s in en + es for t in s.tags} - {"O"})
    sentences = es + joined(es, 3) + joined(es, 6)
    items = list(zip(sentences, peaked_teacher_probs(sentences, labels, 0.8)))
    n1, n3 = len(es), len(joined(es, 3))
    groups = {"single": list(range(16)), "three": list(range(n1, n1 + 16)), "six": list(range(n1 + n3, n1 + n3 + 16)),
              "short batch": list(range(100, 105))}
    order = ["single", "three", "six", "short batch", "single", "six", "three", "short batch"]
    # the teacher's pairs in the same groups: source k with its translation, every fourth without
    src = en + joined(en, 3) + joined(en, 6)
    pairs = [(s, None if k % 4 == 3 else t) for k, (s, t) in enumerate(zip(src, sentences))]
    device = torch.device("cuda")
    result = {
        "script": "gpu_graph_check.py",
        "device": torch.cuda.get_device_name(0),
        "shapes": shapes_check(encoder, labels, items, groups, order, device),
        "fit": fit_check(encoder, labels, items, dev, device),
        "teacher_shapes": shapes_check(encoder, labels, pairs, groups, order, device, teacher=True),
        "teacher_fit": fit_check(encoder, labels, pairs[:len(en)], dev, device, teacher=True),
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
