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
from transformers import get_linear_schedule_with_warmup

from concner.models.encoding import collate, encode_words
from concner.models.losses import label_contrastive_loss, translation_contrastive_loss
from concner.tasks.corpus import Sentence
from concner.tasks.evaluate import device_of, evaluate_model
from concner.tasks.progress import progress_bar

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
    seed: int = 13


@dataclass
class FitResult:
    steps: list[dict] = field(default_factory=list)  # one row per optimizer step: loss terms, lr
    epochs: list[dict] = field(default_factory=list)  # one row per epoch: mean loss, dev scores
    best_epoch: int | None = None
    stopped_early: bool = False


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
    """Train `model` in place; with a dev set, the weights of the best dev-F1 epoch are restored."""
    generator = seed_everything(settings.seed)
    # the loss draws (LCL's O-token sample) from a generator of its own, so that an ablation that
    # skips a term still sees the same batch order as the full loss
    loss_generator = torch.Generator().manual_seed(settings.seed + 1)
    device = device_of(model)
    steps_per_epoch = (len(items) + settings.batch_size - 1) // settings.batch_size
    epochs = max(settings.epochs, -(-settings.min_steps // max(1, steps_per_epoch)))
    total = steps_per_epoch * epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": settings.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total), total)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    result = FitResult()
    best_f1, best_state, bad_epochs = -1.0, None, 0
    with progress_bar(progress, total) as advance:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(items), generator=generator).tolist()
            epoch_losses = []
            for start in range(0, len(order), settings.batch_size):
                batch = [items[i] for i in order[start : start + settings.batch_size]]
                with autocast:
                    terms = loss_fn(model, batch, loss_generator)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                row = {"step": len(result.steps) + 1, "epoch": epoch, "lr": scheduler.get_last_lr()[0]}
                row.update({k: float(v.detach()) for k, v in terms.items()})
                result.steps.append(row)
                epoch_losses.append(row["loss"])
                advance(1, status=" ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("step", "epoch", "lr")))
            summary = {"epoch": epoch, "loss": float(np.mean(epoch_losses))}
            if dev:
                scores, _ = evaluate_model(model, dev, max_length=settings.max_length)
                summary.update(dev_f1=scores["f1"], dev_precision=scores["precision"], dev_recall=scores["recall"])
                if scores["f1"] > best_f1:
                    best_f1, best_state, bad_epochs = scores["f1"], copy.deepcopy(model.state_dict()), 0
                    result.best_epoch = epoch
                else:
                    bad_epochs += 1
            result.epochs.append(summary)
            if log:
                log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if k != "epoch"))
            # no early stop before min_steps: the first epochs of a small corpus often score best
            # by tagging everything (then dip while the model learns that most words are O)
            if dev and settings.patience and bad_epochs >= settings.patience and len(result.steps) >= settings.min_steps:
                result.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


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

    def __call__(self, model, batch: Sequence[tuple[Sentence, Sentence | None]], generator) -> dict[str, torch.Tensor]:
        terms, loss, out, gold, paired = self.cross_entropy_terms(model, batch)
        n_src, device = len(batch), gold.device
        contrastive: dict[str, tuple[float, torch.Tensor]] = {}
        if self.lambda_tcl > 0 and len(paired) >= 2:  # InfoNCE needs in-batch negatives
            src_idx = torch.tensor([i for i, _ in paired], device=device)
            contrastive["tcl"] = (self.lambda_tcl, translation_contrastive_loss(
                out.sentence_emb[src_idx].float(), out.sentence_emb[n_src:].float(), self.tcl_temperature))
        if self.lambda_lcl > 0:
            labeled = gold != -100
            features = out.token_emb if self.lcl_features == "head" else out.token_features
            contrastive["lcl"] = (self.lambda_lcl, label_contrastive_loss(
                features[labeled].float(), gold[labeled], self.lcl_temperature,
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

    def cross_entropy_terms(self, model, batch: Sequence[tuple[Sentence, Sentence | None]]):
        """One forward pass over the batch's sources then its translations, and the CE terms:
        (terms, CE(source) + CE(translation), model output, gold labels, paired translations)."""
        sources = [src for src, _ in batch]
        paired = [(i, tgt) for i, (_, tgt) in enumerate(batch) if tgt is not None]
        sentences = sources + [tgt for _, tgt in paired]
        labels = [[self.label_ids[t] for t in s.tags] for s in sentences]
        enc = encode_words(model.tokenizer, [s.tokens for s in sentences], labels, self.max_length)
        tensors = collate(model.tokenizer, enc, range(len(sentences)))
        device = device_of(model)
        out = model(tensors["input_ids"].to(device), tensors["attention_mask"].to(device))
        gold = tensors["labels"].to(device)
        n_src = len(sources)
        ce = torch.nn.functional.cross_entropy
        terms = {"ce_source": ce(out.logits[:n_src].flatten(0, 1).float(), gold[:n_src].flatten(), ignore_index=-100)}
        loss = terms["ce_source"]
        if paired:
            terms["ce_target"] = ce(out.logits[n_src:].flatten(0, 1).float(), gold[n_src:].flatten(), ignore_index=-100)
            loss = loss + terms["ce_target"]
        return terms, loss, out, gold, paired
