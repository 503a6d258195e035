"""The teacher's loss over fixed-shape tensors: what a CUDA graph captures (tasks/training/cuda_graphs.py).

`TeacherLoss.__call__` (tasks/training/train.py) cuts each batch to its own shape: the translations packed
after the sources, TCL on the paired rows only, LCL on the labeled tokens it sampled. Shapes that
change with every batch cannot be replayed, and on a GPU that loop left the card about 12 % busy
(README, "Speed"). Here the same loss is computed over a layout fixed by the batch size and a
rounded width (`TeacherBatches.static_batch`):

    rows 0..R-1     the sources (a short batch: empty rows after them)
    rows R..2R-1    row R + i holds the translation of source i, an empty row where it has none
    paired [R]      1 where source i has a translation
    selected [2R*W] 1 for the tokens LCL uses (sampled on the host, exactly as the eager loss does)

and the choice of rows enters as masks and weights, never as indices, so nothing depends on
values the GPU would have to send back. The terms equal the eager ones (tests/test_training.py).
"""

from __future__ import annotations

import torch
from torch import nn

from concner.models.losses import masked_label_contrastive_loss, masked_translation_contrastive_loss


def _mean_cross_entropy(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Mean CE over the labeled positions; 0 where there is none (the eager mean would be NaN,
    but the eager loss then leaves the term out)."""
    per_token = nn.functional.cross_entropy(logits.flatten(0, 1).float(), gold.flatten(), ignore_index=-100,
                                            reduction="none")
    return per_token.sum() / (gold != -100).sum().clamp_min(1)


class DenseTeacherStep(nn.Module):
    """The ConcNerModel and the teacher's loss (a `TeacherLoss`'s settings) on static batches;
    returns the loss terms as a tuple in the order of `names`."""

    def __init__(self, model, loss):
        super().__init__()
        self.model = model
        self.loss = loss  # the settings, and its _balance (the same scaling as the eager loss)
        self.names = ("loss", "ce_source", "ce_target")
        for name, weight in (("tcl", loss.lambda_tcl), ("lcl", loss.lambda_lcl)):
            if weight > 0:
                self.names += (name,) + ((f"{name}_scale",) if loss.balance == "grad_norm" else ())

    def forward(self, input_ids, attention_mask, gold, paired, selected) -> tuple[torch.Tensor, ...]:
        loss = self.loss
        out = self.model(input_ids, attention_mask)
        rows = paired.shape[0]
        terms = {"ce_source": _mean_cross_entropy(out.logits[:rows], gold[:rows]),
                 "ce_target": _mean_cross_entropy(out.logits[rows:], gold[rows:])}
        total = terms["ce_source"] + terms["ce_target"]
        contrastive: dict[str, tuple[float, torch.Tensor]] = {}
        if loss.lambda_tcl > 0:
            contrastive["tcl"] = (loss.lambda_tcl, masked_translation_contrastive_loss(
                out.sentence_emb[:rows].float(), out.sentence_emb[rows:].float(), paired, loss.tcl_temperature))
        if loss.lambda_lcl > 0:
            features = out.token_emb if loss.lcl_features == "head" else out.token_features
            contrastive["lcl"] = (loss.lambda_lcl, masked_label_contrastive_loss(
                features.flatten(0, 1).float(), gold.flatten(), selected, loss.lcl_temperature,
                o_label=loss.label_ids["O"], o_mode=loss.lcl_o_mode))
        scales = loss._balance(total, {name: term for name, (_, term) in contrastive.items()}, out.token_features)
        for name, (weight, term) in contrastive.items():
            terms[name] = term
            if f"{name}_scale" in self.names:
                # no scale from _balance (a classifier that does not read the hidden states): weight 1
                terms[f"{name}_scale"] = scales.get(name, torch.ones((), device=term.device))
                weight = weight * terms[f"{name}_scale"]
            total = total + weight * term
        terms["loss"] = total
        return tuple(terms[name] for name in self.names)
