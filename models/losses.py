"""The three ConCNER losses as plain functions on tensors.

- translation_contrastive_loss (TCL): a sentence and its translation are pulled together,
  other sentences in the batch pushed away (InfoNCE, symmetric).
- label_contrastive_loss (LCL): tokens with the same NER label are pulled together
  (supervised contrastive loss, Khosla et al. 2020), with options for the dominant O label.
- distillation_loss: the student matches the teacher's per-token label distributions
  (KL as Hinton et al. 2015, or MSE as Wu et al. 2020).
- masked_translation_contrastive_loss, masked_label_contrastive_loss,
  weighted_distillation_loss: the same losses over fixed-shape tensors, with the rows that take
  part given as masks, for steps replayed as CUDA graphs (tasks/training/cuda_graphs.py).

Notation: z = x / ||x||_2 (L2-normalized), s_ij = z_i . z_j (cosine similarity), tau = temperature.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

OMode = Literal["keep", "subsample", "exclude_anchor"]


def translation_contrastive_loss(src_emb: Tensor, tgt_emb: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between B source sentences and their B translations (row i <-> row i).

        s_ij = z(src_i) . z(tgt_j)
        L_s2t = -1/B sum_i log( exp(s_ii/tau) / sum_j exp(s_ij/tau) )
        L_t2s = -1/B sum_j log( exp(s_jj/tau) / sum_i exp(s_ij/tau) )
        L     = (L_s2t + L_t2s) / 2

    The other B-1 sentences of the batch are the negatives, so B >= 2 for a useful signal
    (with B == 1 the loss is exactly 0).
    """
    if src_emb.shape != tgt_emb.shape or src_emb.dim() != 2:
        raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(src_emb.shape)} and {tuple(tgt_emb.shape)}")
    z_src = F.normalize(src_emb, dim=-1)
    z_tgt = F.normalize(tgt_emb, dim=-1)
    logits = z_src @ z_tgt.T / temperature  # [B, B]; row i: src_i against every tgt
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def select_lcl_tokens(
    labels: Tensor,
    *,
    ignore_index: int,
    o_label: int | None,
    o_mode: OMode,
    o_ratio: float,
    generator: torch.Generator | None,
) -> Tensor:
    """Indices (ascending) of the tokens that take part in LCL: not ignored, and for
    o_mode="subsample" at most floor(o_ratio * #non-O) of the O tokens, drawn with `generator`."""
    valid = labels != ignore_index
    if o_mode != "subsample" or o_label is None:
        return valid.nonzero(as_tuple=True)[0]
    is_o = valid & (labels == o_label)
    non_o_idx = (valid & ~is_o).nonzero(as_tuple=True)[0]
    o_idx = is_o.nonzero(as_tuple=True)[0]
    k = min(len(o_idx), int(o_ratio * len(non_o_idx)))
    # randperm on CPU: a CPU generator is what callers seed, and the indices are few
    perm = torch.randperm(len(o_idx), generator=generator)[:k].to(o_idx.device)
    # sorted so the kept tokens stay in batch order (the loss does not depend on it, logs might)
    return torch.cat([non_o_idx, o_idx[perm]]).sort().values


def label_contrastive_loss(
    features: Tensor,
    labels: Tensor,
    temperature: float,
    *,
    ignore_index: int = -100,
    o_label: int | None = None,
    o_mode: OMode = "subsample",
    o_ratio: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Supervised contrastive loss over tokens (Khosla et al. 2020, "L_out" form).

    For the N' kept tokens, with A the set of anchors and P(i) = {p != i : y_p = y_i}:

        L_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip/tau) / sum_{a != i} exp(s_ia/tau) )
        L   = 1/|A'| sum_{i in A'} L_i,      A' = {i in A : |P(i)| >= 1}

    Tokens labelled `ignore_index` (subwords, specials, padding) take no part at all.
    The O label (`o_label`) is handled by `o_mode`:
      - "keep": O is a label like any other (A = all kept tokens; O tokens are pulled together).
      - "subsample": keep all non-O tokens and a random floor(o_ratio * #non-O) of the O tokens
        (drawn with `generator`, so seeded runs repeat); then as "keep". O usually outnumbers
        entities ~5:1, which would otherwise let O-O pairs dominate the loss. A batch with no
        non-O token keeps no O token either, and gives 0.
      - "exclude_anchor": O tokens stay in the denominators (as negatives for entity anchors)
        but are never anchors, so O-O pairs are never pulled together.
    With o_label=None there is no O to treat specially and every mode behaves as "keep".

    Returns a grad-safe 0 (features.sum() * 0) when no anchor has a positive.
    """
    if features.dim() != 2 or labels.dim() != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"expected features [N, D] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}")
    if o_mode not in ("keep", "subsample", "exclude_anchor"):
        raise ValueError(f"unknown o_mode {o_mode!r}")
    # The choice of tokens, anchors and positives depends on the labels alone: it is made where
    # the labels are (the host, in training), so a GPU step never waits for it.
    idx = select_lcl_tokens(
        labels, ignore_index=ignore_index, o_label=o_label, o_mode=o_mode, o_ratio=o_ratio, generator=generator
    )
    zero = features.sum() * 0
    if len(idx) < 2:
        return zero
    y = labels[idx]
    n = len(idx)
    same = y[:, None] == y[None, :]
    n_pos = same.sum(dim=1) - 1  # the diagonal is no positive
    is_anchor = n_pos > 0
    if o_mode == "exclude_anchor" and o_label is not None:
        is_anchor &= y != o_label
    anchors = is_anchor.nonzero(as_tuple=True)[0]
    if len(anchors) == 0:
        return zero

    device = features.device
    z = F.normalize(features[idx.to(device)], dim=-1)
    sim = z @ z.T / temperature  # [n, n]
    self_mask = torch.eye(n, dtype=torch.bool, device=device)
    # log-softmax over a != i: the diagonal is left out of the denominator only (masked_fill
    # on a copy), so log_prob stays finite everywhere and 0 * log_prob never makes a NaN
    log_denom = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    log_prob = sim - log_denom

    positives = same.to(device) & ~self_mask
    anchors, n_pos = anchors.to(device), n_pos.to(device)
    per_anchor = -(log_prob * positives).sum(dim=1)[anchors] / n_pos[anchors]
    return per_anchor.mean()


# Masked logits get this instead of -inf: exp() of it is exactly 0 beside any real similarity, yet a
# row with no real entry stays finite (an all -inf row gives NaN, and NaN * 0 weight is still NaN).
_MASKED = -1e9


def masked_translation_contrastive_loss(src_emb: Tensor, tgt_emb: Tensor, paired: Tensor, temperature: float) -> Tensor:
    """`translation_contrastive_loss` over fixed-shape tensors: [R, D] sources and [R, D]
    translation rows, of which only the rows with paired[i] = 1 take part (as pairs and as each
    other's negatives). Equal to the plain loss on the paired rows alone; 0 with fewer than two.

    Nothing here depends on the values of `paired` (no boolean indexing), so the step can be
    captured as a CUDA graph and replayed (tasks/training/cuda_graphs.py)."""
    if src_emb.shape != tgt_emb.shape or src_emb.dim() != 2 or paired.shape != src_emb.shape[:1]:
        raise ValueError(f"expected two [R, D] tensors and [R] pairs, got {tuple(src_emb.shape)}, "
                         f"{tuple(tgt_emb.shape)} and {tuple(paired.shape)}")
    logits = F.normalize(src_emb, dim=-1) @ F.normalize(tgt_emb, dim=-1).T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    is_pair = paired.bool()
    w = paired.to(torch.float32)
    n = w.sum().clamp_min(1.0)
    s2t = F.cross_entropy(logits.masked_fill(~is_pair[None, :], _MASKED), targets, reduction="none")
    t2s = F.cross_entropy(logits.T.masked_fill(~is_pair[None, :], _MASKED), targets, reduction="none")
    # one pair alone is its own only candidate: its loss and gradient are exactly 0, as the plain
    # loss gives with B == 1
    return ((s2t.float() * w).sum() / n + (t2s.float() * w).sum() / n) / 2


def masked_label_contrastive_loss(
    features: Tensor,
    labels: Tensor,
    selected: Tensor,
    temperature: float,
    *,
    o_label: int | None = None,
    o_mode: OMode = "subsample",
) -> Tensor:
    """`label_contrastive_loss` over fixed-shape tensors: [N, D] features of every position,
    their labels [N], and `selected` [N] (1 for the tokens that take part, as `select_lcl_tokens`
    chose them; the O sample is drawn on the host beforehand). The same loss as the plain form on
    the selected rows; the choice of rows costs nothing but [N, N] similarities, which a GPU
    computes in one go, and no value-dependent shape (see `masked_translation_contrastive_loss`)."""
    if features.dim() != 2 or labels.shape != features.shape[:1] or selected.shape != labels.shape:
        raise ValueError(f"expected features [N, D], labels [N] and selected [N], got {tuple(features.shape)}, "
                         f"{tuple(labels.shape)} and {tuple(selected.shape)}")
    n = features.shape[0]
    sel = selected.bool()
    not_self = ~torch.eye(n, dtype=torch.bool, device=features.device)
    z = F.normalize(features, dim=-1)
    sim = z @ z.T / temperature
    candidates = sel[None, :] & not_self  # each anchor's denominator: every other selected token
    log_prob = sim - torch.logsumexp(sim.masked_fill(~candidates, _MASKED), dim=1, keepdim=True)
    positives = candidates & sel[:, None] & (labels[:, None] == labels[None, :])
    n_pos = positives.sum(dim=1)
    is_anchor = sel & (n_pos > 0)
    if o_mode == "exclude_anchor" and o_label is not None:
        is_anchor &= labels != o_label
    # where, not a product: log_prob of a row with no candidate is huge, and huge * 0 may not be 0
    per_anchor = -torch.where(positives, log_prob, 0.0).sum(dim=1) / n_pos.clamp_min(1)
    w = is_anchor.to(per_anchor.dtype)
    return (per_anchor * w).sum() / w.sum().clamp_min(1.0)


def distillation_loss(
    student_logits: Tensor,
    teacher_probs: Tensor,
    mask: Tensor | None,
    *,
    kind: Literal["kl", "mse"],
    temperature: float,
) -> Tensor:
    """Token-level distillation from teacher label distributions, averaged over masked positions.

    Both sides are softened with temperature T. The teacher arrives as probabilities p, and
    softmax(z/T) is proportional to p^(1/T), so the softened teacher is q_t = p^(1/T) / sum p^(1/T)
    (exactly what softening its logits would give). The student: q_s = softmax(z_s / T).

        kind="kl":  L = T^2 * 1/|M| sum_{m in M} sum_c q_t[m,c] (log q_t[m,c] - log q_s[m,c])
                    (KL(teacher || student); T^2 keeps gradient scale independent of T, Hinton 2015)
        kind="mse": L = 1/|M| sum_{m in M} 1/C sum_c (q_s[m,c] - q_t[m,c])^2
                    (Wu et al. 2020 single-source teacher-student; T = 1 is their setting)

    student_logits, teacher_probs: [..., C]; mask: [...] (bool, True = a labelled first subword),
    or None when the rows were gathered already ([M, C], every row counts: no GPU-to-host wait).
    Returns a grad-safe 0 when the mask is empty.
    """
    mask_shape = None if mask is None else tuple(mask.shape)
    if student_logits.shape != teacher_probs.shape or (mask is not None and mask.shape != student_logits.shape[:-1]):
        raise ValueError(
            f"shapes do not match: student {tuple(student_logits.shape)}, teacher {tuple(teacher_probs.shape)}, mask {mask_shape}"
        )
    if mask is None:
        s, t = student_logits, teacher_probs.to(student_logits.dtype)
        if s.shape[0] == 0:
            return student_logits.sum() * 0
    else:
        mask = mask.bool()
        if not bool(mask.any()):
            return student_logits.sum() * 0
        s = student_logits[mask]  # [M, C]
        t = teacher_probs[mask].to(s.dtype)
    return _per_row_distillation(s, t, kind, temperature).mean() * (temperature**2 if kind == "kl" else 1.0)


def weighted_distillation_loss(
    student_logits: Tensor,
    teacher_probs: Tensor,
    weight: Tensor,
    *,
    kind: Literal["kl", "mse"],
    temperature: float,
) -> Tensor:
    """`distillation_loss` over fixed-shape tensors: [..., C] rows weighted by `weight` [...]
    (1 for a labelled first subword, 0 elsewhere), sum(w * row loss) / max(1, sum(w)).

    Nothing here depends on the values of the mask (no boolean indexing, no host read), so the
    step can be captured once as a CUDA graph and replayed. Rows of weight 0 must still hold a
    valid distribution (say uniform): softening an all-zero row would give 0/0."""
    if student_logits.shape != teacher_probs.shape or weight.shape != student_logits.shape[:-1]:
        raise ValueError(f"shapes do not match: student {tuple(student_logits.shape)}, "
                         f"teacher {tuple(teacher_probs.shape)}, weight {tuple(weight.shape)}")
    per_row = _per_row_distillation(student_logits, teacher_probs.to(student_logits.dtype), kind, temperature)
    w = weight.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp_min(1.0) * (temperature**2 if kind == "kl" else 1.0)


def _per_row_distillation(s: Tensor, t: Tensor, kind: str, temperature: float) -> Tensor:
    """Each row's KL(teacher || student) or MSE, both softened with `temperature` (no T^2 here)."""
    if temperature != 1.0:
        t = t.clamp_min(0) ** (1.0 / temperature)
        t = t / t.sum(dim=-1, keepdim=True)
    log_q_s = F.log_softmax(s / temperature, dim=-1)
    if kind == "kl":
        # kl_div(input=log q_s, target=q_t) = q_t * (log q_t - log q_s), with 0 where q_t = 0
        return F.kl_div(log_q_s, t, reduction="none").sum(dim=-1)
    if kind == "mse":
        return ((log_q_s.exp() - t) ** 2).mean(dim=-1)
    raise ValueError(f"unknown distillation loss {kind!r}")
