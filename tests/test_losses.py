"""The ConCNER losses against hand-computed values on tiny tensors, gradients and invariances."""

from __future__ import annotations

import math

import pytest
import torch

from concner.models.losses import (distillation_loss, label_contrastive_loss, masked_label_contrastive_loss,
                                   masked_translation_contrastive_loss, translation_contrastive_loss)


def nll(pos: float, denom: list[float]) -> float:
    """-log( exp(pos) / sum_j exp(denom_j) ), written out."""
    return -math.log(math.exp(pos) / sum(math.exp(d) for d in denom))


# --- translation contrastive loss --------------------------------------------------------------


def test_tcl_hand_computed():
    # src rows are unit vectors; tgt row 1 is [1,1] and normalizes to [1/sqrt2, 1/sqrt2]
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tgt = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    r = 1 / math.sqrt(2)
    # cosine s_ij = src_i . tgt_j: s00 = 1, s01 = r, s10 = 0, s11 = r; logits are s / tau
    s00, s01, s10, s11 = 1 / tau, r / tau, 0 / tau, r / tau
    src_to_tgt = (nll(s00, [s00, s01]) + nll(s11, [s10, s11])) / 2  # rows
    tgt_to_src = (nll(s00, [s00, s10]) + nll(s11, [s01, s11])) / 2  # columns
    expected = (src_to_tgt + tgt_to_src) / 2
    got = translation_contrastive_loss(src, tgt, tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_tcl_batch_order_invariant():
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    perm = torch.randperm(6, generator=g)
    a = translation_contrastive_loss(src, tgt, 0.1)
    b = translation_contrastive_loss(src[perm], tgt[perm], 0.1)
    assert torch.allclose(a, b, atol=1e-6)


def test_tcl_gradcheck():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, t: translation_contrastive_loss(s, t, 0.3), (src, tgt))


# --- label contrastive loss --------------------------------------------------------------------
# Four unit vectors in 2-D with easy dot products (tau = 1, so logits are the cosines):
#   a = [1, 0], b = [0.6, 0.8], c = [0, 1], d = [-1, 0]
#   a.b = 0.6, a.c = 0, a.d = -1, b.c = 0.8, b.d = -0.6, c.d = 0
O = 0
FEATS = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
AB, AC, AD, BC, BD, CD = 0.6, 0.0, -1.0, 0.8, -0.6, 0.0
# labels: a, b are entity label 1; c, d are O
LABELS = torch.tensor([1, 1, O, O])
# per-anchor losses with all four tokens present (denominator: every other token)
L_A = nll(AB, [AB, AC, AD])
L_B = nll(AB, [AB, BC, BD])
L_C = nll(CD, [AC, BC, CD])
L_D = nll(CD, [AD, BD, CD])


def test_lcl_keep_hand_computed():
    got = label_contrastive_loss(FEATS, LABELS, 1.0, o_label=O, o_mode="keep")
    assert got.item() == pytest.approx((L_A + L_B + L_C + L_D) / 4, rel=1e-6)


def test_lcl_without_o_label_is_keep():
    got = label_contrastive_loss(FEATS, LABELS, 1.0, o_label=None, o_mode="subsample", o_ratio=0.0)
    assert got.item() == pytest.approx((L_A + L_B + L_C + L_D) / 4, rel=1e-6)


def test_lcl_exclude_anchor_hand_computed():
    # O tokens stay in the denominators but are not anchors: only a and b are averaged
    got = label_contrastive_loss(FEATS, LABELS, 1.0, o_label=O, o_mode="exclude_anchor")
    assert got.item() == pytest.approx((L_A + L_B) / 2, rel=1e-6)


def test_lcl_temperature_hand_computed():
    tau = 0.5
    got = label_contrastive_loss(FEATS, LABELS, tau, o_label=O, o_mode="exclude_anchor")
    l_a = nll(AB / tau, [AB / tau, AC / tau, AD / tau])
    l_b = nll(AB / tau, [AB / tau, BC / tau, BD / tau])
    assert got.item() == pytest.approx((l_a + l_b) / 2, rel=1e-6)


def test_lcl_multiple_positives_averaged():
    # a, b, c share label 1 (two positives each), d is O
    labels = torch.tensor([1, 1, 1, O])
    l_a = -(math.log(math.exp(AB) / sum(map(math.exp, [AB, AC, AD]))) + math.log(math.exp(AC) / sum(map(math.exp, [AB, AC, AD])))) / 2
    l_b = -(math.log(math.exp(AB) / sum(map(math.exp, [AB, BC, BD]))) + math.log(math.exp(BC) / sum(map(math.exp, [AB, BC, BD])))) / 2
    l_c = -(math.log(math.exp(AC) / sum(map(math.exp, [AC, BC, CD]))) + math.log(math.exp(BC) / sum(map(math.exp, [AC, BC, CD])))) / 2
    # d has no positive, so it is no anchor
    got = label_contrastive_loss(FEATS, labels, 1.0, o_label=O, o_mode="keep")
    assert got.item() == pytest.approx((l_a + l_b + l_c) / 3, rel=1e-6)


def test_lcl_ignore_index_entries_take_no_part():
    # a fifth token identical to a, labelled 1 but ignored: were it used it would be a's positive
    feats = torch.cat([FEATS, FEATS[:1]])
    labels = torch.cat([LABELS, torch.tensor([-100])])
    got = label_contrastive_loss(feats, labels, 1.0, o_label=O, o_mode="keep")
    assert got.item() == pytest.approx((L_A + L_B + L_C + L_D) / 4, rel=1e-6)
    # a custom ignore_index works the same way
    labels_7 = torch.cat([LABELS, torch.tensor([7])])
    got_7 = label_contrastive_loss(feats, labels_7, 1.0, o_label=O, o_mode="keep", ignore_index=7)
    assert got_7.item() == pytest.approx(got.item(), rel=1e-6)


def test_lcl_subsample_keeps_all_o_at_ratio_one():
    # 2 non-O tokens, ratio 1 -> up to 2 O tokens kept: both, so the result equals "keep"
    got = label_contrastive_loss(FEATS, LABELS, 1.0, o_label=O, o_mode="subsample", o_ratio=1.0)
    assert got.item() == pytest.approx((L_A + L_B + L_C + L_D) / 4, rel=1e-6)


def test_lcl_subsample_half_keeps_one_o():
    # ratio 0.5 -> floor(0.5 * 2) = 1 O token kept, which then has no positive (no anchor)
    with_c = (nll(AB, [AB, AC]) + nll(AB, [AB, BC])) / 2
    with_d = (nll(AB, [AB, AD]) + nll(AB, [AB, BD])) / 2
    values = set()
    for seed in range(8):
        a = label_contrastive_loss(
            FEATS, LABELS, 1.0, o_label=O, o_mode="subsample", o_ratio=0.5, generator=torch.Generator().manual_seed(seed)
        )
        b = label_contrastive_loss(
            FEATS, LABELS, 1.0, o_label=O, o_mode="subsample", o_ratio=0.5, generator=torch.Generator().manual_seed(seed)
        )
        assert a.item() == b.item()  # seeded: deterministic
        assert a.item() == pytest.approx(with_c, rel=1e-6) or a.item() == pytest.approx(with_d, rel=1e-6)
        values.add(round(a.item(), 6))
    assert len(values) == 2  # both choices occur across seeds


def test_lcl_subsample_zero_ratio_drops_o():
    # only a and b remain; each is the other's only positive and only denominator term -> log 1 = 0
    got = label_contrastive_loss(FEATS, LABELS, 1.0, o_label=O, o_mode="subsample", o_ratio=0.0)
    assert got.item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "labels",
    [torch.tensor([1, 2, 3, 4]), torch.tensor([-100, -100, -100, -100]), torch.tensor([1, -100, -100, -100])],
)
def test_lcl_no_positive_gives_grad_safe_zero(labels):
    feats = FEATS.clone().requires_grad_(True)
    got = label_contrastive_loss(feats, labels, 0.1, o_label=O, o_mode="keep")
    assert got.item() == 0.0
    got.backward()
    assert feats.grad is not None and torch.all(feats.grad == 0)


def test_lcl_only_o_exclude_anchor_gives_zero():
    got = label_contrastive_loss(FEATS, torch.tensor([O, O, O, O]), 0.1, o_label=O, o_mode="exclude_anchor")
    assert got.item() == 0.0


@pytest.mark.parametrize("o_mode", ["keep", "exclude_anchor", "subsample"])
def test_lcl_gradcheck(o_mode):
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 1, O, O, 2, -100])
    fn = lambda f: label_contrastive_loss(f, labels, 0.5, o_label=O, o_mode=o_mode, o_ratio=10.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (feats,))


@pytest.mark.parametrize("o_mode", ["keep", "exclude_anchor", "subsample"])
def test_lcl_batch_order_invariant(o_mode):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(12, 5, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 0, 1, -100, 2, 0, 3, -100, 1])
    perm = torch.randperm(12, generator=g)
    # o_ratio large: subsampling keeps every O token, so nothing random is left
    kw = dict(o_label=O, o_mode=o_mode, o_ratio=100.0)
    a = label_contrastive_loss(feats, labels, 0.2, **kw)
    b = label_contrastive_loss(feats[perm], labels[perm], 0.2, **kw)
    assert torch.allclose(a, b, atol=1e-6)


# --- distillation ------------------------------------------------------------------------------


def _teacher_and_mask():
    g = torch.Generator().manual_seed(4)
    probs = torch.softmax(torch.randn(2, 3, 4, generator=g), dim=-1)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    return probs, mask


@pytest.mark.parametrize("kind", ["kl", "mse"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_distillation_zero_when_student_equals_teacher(kind, temperature):
    probs, mask = _teacher_and_mask()
    student_logits = probs.log() + 3.0  # softmax is shift-invariant: same distribution
    got = distillation_loss(student_logits, probs, mask, kind=kind, temperature=temperature)
    assert got.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_distillation_positive_when_different(kind):
    probs, mask = _teacher_and_mask()
    student_logits = torch.zeros_like(probs)  # uniform student, non-uniform teacher
    assert distillation_loss(student_logits, probs, mask, kind=kind, temperature=1.0).item() > 0


def test_distillation_hand_computed_and_masked():
    # teacher [0.5, 0.5], student logits [0, log 3] -> student [0.25, 0.75]
    teacher = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    student = torch.tensor([[[0.0, math.log(3.0)], [-50.0, 50.0]]])  # 2nd position is masked out
    mask = torch.tensor([[True, False]])
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    mse = ((0.25 - 0.5) ** 2 + (0.75 - 0.5) ** 2) / 2
    assert distillation_loss(student, teacher, mask, kind="kl", temperature=1.0).item() == pytest.approx(kl, rel=1e-5)
    assert distillation_loss(student, teacher, mask, kind="mse", temperature=1.0).item() == pytest.approx(mse, rel=1e-5)
    # T = 2: both softened (teacher p^(1/2) renormalized stays [0.5, 0.5]; student softmax([0, log3]/2)
    # = [1, sqrt3] / (1 + sqrt3)), KL scaled by T^2
    q0, q1 = 1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))
    kl_t2 = 4 * (0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / q1))
    assert distillation_loss(student, teacher, mask, kind="kl", temperature=2.0).item() == pytest.approx(kl_t2, rel=1e-5)


def test_distillation_empty_mask_and_gradcheck():
    probs, mask = _teacher_and_mask()
    student = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    empty = distillation_loss(student, probs.double(), torch.zeros_like(mask), kind="kl", temperature=1.0)
    assert empty.item() == 0.0
    for kind in ("kl", "mse"):
        fn = lambda s: distillation_loss(s, probs.double(), mask, kind=kind, temperature=2.0)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (student,))


def test_masked_tcl_equals_tcl_on_the_paired_rows_alone_and_is_zero_below_two_pairs():
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(6, 8, generator=g, requires_grad=True), torch.randn(6, 8, generator=g)
    paired = torch.tensor([1.0, 0, 1, 1, 0, 1])
    keep = paired.bool()
    masked = masked_translation_contrastive_loss(src, tgt, paired, 0.1)
    assert masked.item() == pytest.approx(translation_contrastive_loss(src[keep], tgt[keep], 0.1).item(), rel=1e-6)
    (grad,) = torch.autograd.grad(masked, src)
    assert grad[~keep].abs().max() == 0  # an unpaired row is no negative either
    for one_or_none in (torch.tensor([0.0, 0, 1, 0, 0, 0]), torch.zeros(6)):
        loss = masked_translation_contrastive_loss(src, tgt, one_or_none, 0.1)
        (grad,) = torch.autograd.grad(loss, src)
        assert loss.item() == 0 and grad.abs().max() == 0


@pytest.mark.parametrize("o_mode", ["keep", "exclude_anchor"])
def test_masked_lcl_equals_lcl_on_the_selected_tokens_alone(o_mode):
    g = torch.Generator().manual_seed(1)
    features = torch.randn(12, 8, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 0, 2, -100, 0, 2, 1, 0, 3, -100])
    selected = torch.tensor([1.0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0])  # 3 has no partner left: no anchor
    keep = selected.bool()
    plain = label_contrastive_loss(features[keep], labels[keep], 0.1, o_label=0, o_mode=o_mode)
    masked = masked_label_contrastive_loss(features, labels, selected, 0.1, o_label=0, o_mode=o_mode)
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(masked, features)
    assert torch.isfinite(grad).all() and grad[~keep].abs().max() == 0
    nothing = masked_label_contrastive_loss(features, labels, torch.zeros(12), 0.1, o_label=0, o_mode=o_mode)
    assert nothing.item() == 0

