"""The training loop shared by the teacher (CE + TCL + LCL) and the student (distillation).

Read top to bottom: `fit` shuffles items into batches, asks a loss function for the loss terms of
each batch, steps AdamW with linear warm-up/decay and gradient clipping, evaluates on a dev set
after every epoch, stops early when dev F1 stops improving, and returns the best weights' history.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from concner.models.encoding import EncodedTable, encode_words, to_device
from concner.models.losses import label_contrastive_loss, select_lcl_tokens, translation_contrastive_loss
from concner.tasks.text.corpus import Sentence
from concner.tasks.training.cuda_graphs import graph_width
from concner.tasks.training.evaluate import device_of, evaluate_model
from concner.tasks.training.optim import optimizer_and_schedule
from concner.tasks.engine.progress import progress_bar

LossFn = Callable[[Any, Sequence[Any], torch.Generator], dict[str, torch.Tensor]]


@dataclass
class FitSettings:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 128
    patience: int | None = 2
    min_steps: int = 0  # more epochs than `epochs` when a small corpus would give fewer optimizer steps
    length_buckets: bool = False  # batches of similar-length sentences (less padding; other batch mixes)
    compile: bool = False  # torch.compile the training forward pass (pays on a GPU over many steps)
    # on CUDA, replay each batch shape's forward and backward as CUDA graphs (tasks/training/cuda_graphs.py)
    # where the loss offers a fixed-shape step (the teacher's and the student's do); ignored on a CPU
    cuda_graphs: bool = False
    seed: int = 13


@dataclass
class FitResult:
    steps: list[dict] = field(default_factory=list)  # one row per optimizer step: loss terms, lr
    epochs: list[dict] = field(default_factory=list)  # one row per epoch: mean loss, dev scores
    best_epoch: int | None = None
    stopped_early: bool = False
    cuda_graph_shapes: list[str] = field(default_factory=list)  # batch shapes replayed as CUDA graphs
    cuda_graph_error: str | None = None  # why the loop went on without graphs, when it did


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def fit(
    model,
    items: Sequence[Any],
    loss_fn: LossFn,
    settings: FitSettings,
    *,
    dev: Sequence[Sentence] | None = None,
    log=None,
    progress: str | None = None,
) -> FitResult:
    """Train `model` in place; with a dev set, the weights of the best dev-F1 epoch are restored.

    A loss with a `prepare(model, items)` method gets its items tokenized once and is called with
    `prepared.batch(indices)`; any other callable gets the list of items of each batch."""
    generator = seed_everything(settings.seed)
    # the loss draws (LCL's O-token sample) from a generator of its own, so that an ablation that
    # skips a term still sees the same batch order as the full loss
    loss_generator = torch.Generator().manual_seed(settings.seed + 1)
    device = device_of(model)
    batches = loss_fn.prepare(model, items) if hasattr(loss_fn, "prepare") else _ItemBatches(items)
    steps_per_epoch = (len(items) + settings.batch_size - 1) // settings.batch_size
    epochs = max(settings.epochs, -(-settings.min_steps // max(1, steps_per_epoch)))
    total = steps_per_epoch * epochs
    optimizer, scheduler, autocast = optimizer_and_schedule(
        model, learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
        warmup_ratio=settings.warmup_ratio, total_steps=total, device=device)

    # compiled, the forward and backward passes run as a few fused kernels instead of hundreds of
    # small ones, each launched from Python; the first steps pay the compilation
    forward = model
    if settings.compile:
        # the teacher's balancing takes gradients with retain_graph=True, which compiled backward
        # passes refuse when they reuse ("donate") their buffers
        torch._functorch.config.donated_buffer = False
        forward = torch.compile(model, dynamic=True)

    graphs = None
    if (settings.cuda_graphs and device.type == "cuda" and not settings.compile
            and hasattr(loss_fn, "graph_step") and hasattr(batches, "static_batch")):
        from concner.tasks.training.cuda_graphs import WIDTH_MULTIPLE, GraphedSteps

        graphs = GraphedSteps(lambda: loss_fn.graph_step(model), log)

    result = FitResult()
    best_f1, best_state, bad_epochs = -1.0, None, 0
    with progress_bar(progress, total) as advance:
        for epoch in range(1, epochs + 1):
            model.train()
            # loss values stay on the device until the epoch ends (or the bar shows them): reading
            # one every step would make the host wait for the GPU at every step
            pending: list[tuple[dict, list[str], torch.Tensor]] = []
            epoch_rows: list[dict] = []
            for indices in batch_order(len(items), settings, generator, getattr(batches, "lengths", None)):
                terms = None
                if graphs is not None:  # forward and backward replayed: the gradients are in .grad
                    try:
                        terms = graphs(batches.static_batch(indices, settings.batch_size, WIDTH_MULTIPLE,
                                                             generator=loss_generator))
                    except Exception as e:  # a model whose forward cannot be captured: go on without
                        graphs, result.cuda_graph_error = None, f"{type(e).__name__}: {e}"
                        if log:
                            log.warning("CUDA graphs are off for this run, the step could not be captured: %s", e)
                if terms is None:
                    with autocast:
                        terms = loss_fn(forward, batches.batch(indices), loss_generator)
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step = len(result.steps) + len(epoch_rows) + len(pending) + 1
                row = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0]}
                # one copy of this step's terms: a graph's replay overwrites its outputs in place
                pending.append((row, list(terms), torch.stack([v.detach().float() for v in terms.values()])))
                advance(1)
                if len(pending) >= STATUS_EVERY:
                    epoch_rows += _read_terms(pending, advance)
                    pending = []
            if pending:
                epoch_rows += _read_terms(pending, advance)
            result.steps += epoch_rows
            summary = {"epoch": epoch, "loss": float(np.mean([r["loss"] for r in epoch_rows]))}
            # an epoch before min_steps is scored but never selected: the first epochs of a small
            # corpus often score best by tagging everything (then dip while the model learns that
            # most words are O); the last epoch always completes min_steps, so one is eligible
            eligible = len(result.steps) >= settings.min_steps
            if dev:
                scores, _ = evaluate_model(model, dev, max_length=settings.max_length)
                summary.update(dev_f1=scores["f1"], dev_precision=scores["precision"], dev_recall=scores["recall"])
                if not eligible:
                    pass
                elif scores["f1"] > best_f1:
                    best_f1, best_state, bad_epochs = scores["f1"], copy.deepcopy(model.state_dict()), 0
                    result.best_epoch = epoch
                else:
                    bad_epochs += 1
            result.epochs.append(summary)
            if log:
                log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if k != "epoch"))
            if dev and settings.patience and bad_epochs >= settings.patience:
                result.stopped_early = True
                break
    if graphs is not None:
        result.cuda_graph_shapes = sorted("x".join(map(str, shape[0])) for shape in graphs.steps)
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


STATUS_EVERY = 50  # steps between reads of the loss values (one host-GPU wait each)


def _read_terms(pending: list[tuple[dict, list[str], torch.Tensor]], advance) -> list[dict]:
    """The pending steps' rows with their loss terms as floats: one device-to-host copy for all."""
    values = torch.cat([terms for _, _, terms in pending]).cpu().tolist()
    rows, at = [], 0
    for row, names, _ in pending:
        row = {**row, **dict(zip(names, values[at : at + len(names)]))}
        at += len(names)
        rows.append(row)
    last = rows[-1]
    advance(0, status=" ".join(f"{k} {v:.3f}" for k, v in last.items() if k not in ("step", "epoch", "lr")))
    return rows


def batch_order(n: int, settings: FitSettings, generator: torch.Generator,
                lengths: Sequence[int] | None) -> list[list[int]]:
    """One epoch's batches: a seeded shuffle; with `length_buckets`, sentences of similar length
    share a batch (sorted within windows of 50 batches, then the batches shuffled), so that little
    of a batch is padding."""
    order = torch.randperm(n, generator=generator).tolist()
    size = settings.batch_size
    if not settings.length_buckets or lengths is None:
        return [order[start : start + size] for start in range(0, n, size)]
    window = size * 50
    batches = []
    for start in range(0, n, window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[b : b + size] for b in range(0, len(chunk), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class _ItemBatches:
    """For a loss without `prepare`: a batch is the list of its items."""

    def __init__(self, items: Sequence[Any]):
        self.items = items

    def batch(self, indices: Sequence[int]) -> list[Any]:
        return [self.items[i] for i in indices]


# -- the teacher's loss ---------------------------------------------------------------------------


@dataclass
class TeacherLoss:
    """CE(source) + CE(projected translation) + lambda_tcl * TCL + lambda_lcl * LCL for a batch of
    (source, translation-or-None) pairs. Source and translations go through the encoder as one
    padded batch; TCL contrasts the pairs that have a translation, LCL all labeled tokens."""

    label_ids: dict[str, int]
    max_length: int = 128
    lambda_tcl: float = 1.0
    lambda_lcl: float = 1.0
    tcl_temperature: float = 0.1
    lcl_temperature: float = 0.1
    lcl_o_mode: str = "subsample"
    lcl_o_ratio: float = 1.0
    lcl_features: str = "head"  # "head": out.token_emb, "hidden": out.token_features
    # "grad_norm": each contrastive term is scaled so that its gradient at the encoder's output is
    # at most lambda times cross-entropy's there; "none": plain lambda weights
    balance: str = "grad_norm"

    def prepare(self, model, items: Sequence[tuple[Sentence, Sentence | None]]) -> "TeacherBatches":
        """Tokenize every source and translation once (see EncodedTable)."""
        return TeacherBatches(model.tokenizer, items, self.label_ids, self.max_length, device_of(model),
                              select_tokens=self.lcl_tokens if self.lambda_lcl > 0 else None)

    def lcl_tokens(self, labels: torch.Tensor, generator) -> torch.Tensor:
        """Which of the labeled tokens (their labels, in batch order) LCL uses: the draw of
        `label_contrastive_loss`, so that the fixed-shape step samples what the eager loss would."""
        return select_lcl_tokens(labels, ignore_index=-100, o_label=self.label_ids["O"], o_mode=self.lcl_o_mode,
                              o_ratio=self.lcl_o_ratio, generator=generator)

    def graph_step(self, model):
        """This loss over `TeacherBatches.static_batch` tensors, as a module holding the model
        (what `tasks/cuda_graphs.GraphedSteps` captures, forward and backward)."""
        from concner.tasks.training.teacher_graph_step import DenseTeacherStep

        return DenseTeacherStep(model, self)

    def __call__(self, model, batch: "TeacherBatch | Sequence[tuple[Sentence, Sentence | None]]",
                 generator) -> dict[str, torch.Tensor]:
        if not isinstance(batch, TeacherBatch):  # a plain list of pairs: prepared on the spot
            batch = self.prepare(model, batch).batch(range(len(batch)))
        terms, loss, out = self.cross_entropy_terms(model, batch)
        n_src = batch.n_sources
        contrastive: dict[str, tuple[float, torch.Tensor]] = {}
        if self.lambda_tcl > 0 and batch.n_paired >= 2:  # InfoNCE needs in-batch negatives
            contrastive["tcl"] = (self.lambda_tcl, translation_contrastive_loss(
                out.sentence_emb[batch.paired_sources].float(), out.sentence_emb[n_src:].float(), self.tcl_temperature))
        if self.lambda_lcl > 0:
            features = out.token_emb if self.lcl_features == "head" else out.token_features
            # labels stay on the host: which tokens LCL samples depends on them alone, and
            # choosing there keeps the step free of GPU-to-host waits
            contrastive["lcl"] = (self.lambda_lcl, label_contrastive_loss(
                features.flatten(0, 1)[batch.labeled_positions].float(), batch.labeled_gold, self.lcl_temperature,
                o_label=self.label_ids["O"], o_mode=self.lcl_o_mode, o_ratio=self.lcl_o_ratio, generator=generator))
        scales = self._balance(loss, {name: term for name, (_, term) in contrastive.items()}, out.token_features)
        for name, (weight, term) in contrastive.items():
            terms[name] = term
            if name in scales:
                terms[f"{name}_scale"] = scales[name]
                weight = weight * scales[name]
            loss = loss + weight * term
        terms["loss"] = loss
        return terms

    def _balance(self, ce: torch.Tensor, contrastive: dict[str, torch.Tensor], hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-term scales min(1, |dCE/dh| / |dTerm/dh|), h the encoder's last hidden states.

        Measured at initialisation on real pairs, TCL's and LCL's gradients at the encoder were
        larger than CE's, and all three shared one clip: cross-entropy got a third of each update.
        Gradients are taken at h only (through the small heads, not the encoder), so this costs a
        few head-sized backward passes; the scales are constants for the real backward pass."""
        if self.balance != "grad_norm" or not contrastive or not torch.is_grad_enabled() or not hidden.requires_grad:
            return {}
        (g_ce,) = torch.autograd.grad(ce, hidden, retain_graph=True, allow_unused=True)
        if g_ce is None:  # an architecture whose classifier does not read this tensor: leave weights alone
            return {}
        ce_norm = g_ce.float().norm()
        scales = {}
        for name, term in contrastive.items():
            (g,) = torch.autograd.grad(term, hidden, retain_graph=True, allow_unused=True)
            if g is not None:
                scales[name] = torch.clamp(ce_norm / (g.float().norm() + 1e-12), max=1.0).detach()
        return scales

    def cross_entropy_terms(self, model, batch: "TeacherBatch"):
        """One forward pass over the batch's sources then its translations, and the CE terms:
        (terms, CE(source) + CE(translation), model output)."""
        out = model(batch.input_ids, batch.attention_mask)
        gold, n_src = batch.gold, batch.n_sources
        ce = torch.nn.functional.cross_entropy
        terms = {"ce_source": ce(out.logits[:n_src].flatten(0, 1).float(), gold[:n_src].flatten(), ignore_index=-100)}
        loss = terms["ce_source"]
        if batch.n_paired:
            terms["ce_target"] = ce(out.logits[n_src:].flatten(0, 1).float(), gold[n_src:].flatten(), ignore_index=-100)
            loss = loss + terms["ce_target"]
        return terms, loss, out


@dataclass
class TeacherBatch:
    """One step's tensors: the sources, then the translations of those that have one."""

    input_ids: torch.Tensor  # on the model's device
    attention_mask: torch.Tensor
    gold: torch.Tensor  # [rows, width] label ids, -100 where no word starts
    n_sources: int
    n_paired: int
    paired_sources: torch.Tensor  # the source rows that have a translation (TCL's pairs)
    labeled_positions: torch.Tensor  # flat [rows * width] positions of labeled tokens (device)
    labeled_gold: torch.Tensor  # their labels, on the host (LCL samples from them there)


class TeacherBatches:
    """The teacher's items tokenized once; `batch(indices)` cuts one step's tensors from them."""

    def __init__(self, tokenizer, items: Sequence[tuple[Sentence, Sentence | None]], label_ids: dict[str, int],
                 max_length: int, device: torch.device,
                 select_tokens: Callable[[torch.Tensor, Any], torch.Tensor] | None = None):
        def table(sentences: Sequence[Sentence]) -> EncodedTable:
            labels = [[label_ids[t] for t in s.tags] for s in sentences]
            return EncodedTable(tokenizer, encode_words(tokenizer, [s.tokens for s in sentences], labels, max_length))

        self.device = device
        self.select_tokens = select_tokens
        self.max_width = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.sources = table([src for src, _ in items])
        paired = [tgt for _, tgt in items if tgt is not None]
        self.translations = table(paired)
        rows = iter(range(len(paired)))
        self.translation_row = [next(rows) if tgt is not None else -1 for _, tgt in items]
        # bucketing by length: a pair is as long as the longer of its two sentences
        self.lengths = [max(n, self.translations.lengths[r]) if r >= 0 else n
                        for n, r in zip(self.sources.lengths, self.translation_row)]

    def _pairs(self, indices: list[int]) -> tuple[list[int], list[int], int]:
        """The batch positions that have a translation, those translations' rows, and the width
        that fits every source and translation of the batch."""
        paired = [b for b, i in enumerate(indices) if self.translation_row[i] >= 0]
        tgt_rows = [self.translation_row[indices[b]] for b in paired]
        return paired, tgt_rows, max(self.sources.width(indices), self.translations.width(tgt_rows))

    def batch(self, indices: Sequence[int]) -> TeacherBatch:
        indices = list(indices)
        paired, tgt_rows, width = self._pairs(indices)
        parts = [self.sources.rows(indices, width)] + ([self.translations.rows(tgt_rows, width)] if tgt_rows else [])
        host = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        labeled = (host["labels"] != -100).flatten().nonzero().squeeze(1)
        move = lambda t: to_device(t, self.device)  # noqa: E731
        return TeacherBatch(
            input_ids=move(host["input_ids"]), attention_mask=move(host["attention_mask"]), gold=move(host["labels"]),
            n_sources=len(indices), n_paired=len(paired), paired_sources=move(torch.tensor(paired, dtype=torch.long)),
            labeled_positions=move(labeled), labeled_gold=host["labels"].flatten()[labeled])

    def static_batch(self, indices: Sequence[int], rows: int, width_multiple: int,
                     generator=None) -> tuple[torch.Tensor, ...]:
        """The batch as fixed-shape tensors for `DenseTeacherStep` (tasks/training/teacher_graph_step.py):
        input_ids, attention_mask, gold [2 * rows, width], paired [rows], selected [2 * rows * width].

        The width is rounded up to `width_multiple` (at most max_length), so that a run meets a
        few shapes. Row i is source i, row rows + i its translation; a missing row attends to its
        first position only (a row attending to nothing gives NaN, and NaN * 0 is still NaN).
        LCL's tokens are drawn from `generator` as the eager loss draws them: the same labeled
        tokens in the same order (the layouts differ only by empty rows), so the same sample."""
        indices = list(indices)
        paired, tgt_rows, width = self._pairs(indices)
        width = graph_width(width, width_multiple, self.max_width)
        src = self.sources.rows(indices, width)
        input_ids = torch.full((2 * rows, width), self.pad_id, dtype=src["input_ids"].dtype)
        attention_mask = torch.zeros((2 * rows, width), dtype=src["attention_mask"].dtype)
        gold = torch.full((2 * rows, width), -100, dtype=torch.long)
        attention_mask[:, 0] = 1
        n = len(indices)
        input_ids[:n], attention_mask[:n], gold[:n] = src["input_ids"], src["attention_mask"], src["labels"]
        if tgt_rows:
            tgt = self.translations.rows(tgt_rows, width)
            at = torch.tensor(paired) + rows
            input_ids[at], attention_mask[at], gold[at] = tgt["input_ids"], tgt["attention_mask"], tgt["labels"]
        is_paired = torch.zeros(rows, dtype=torch.float32)
        is_paired[paired] = 1.0
        selected = torch.zeros(2 * rows * width, dtype=torch.float32)
        if self.select_tokens is not None:
            labeled = (gold.flatten() != -100).nonzero().squeeze(1)
            selected[labeled[self.select_tokens(gold.flatten()[labeled], generator)]] = 1.0
        move = lambda t: to_device(t, self.device)  # noqa: E731
        return tuple(move(t) for t in (input_ids, attention_mask, gold, is_paired, selected))
