"""The training loop's contracts that a wrong line would break silently: the best epoch's weights
are the ones kept, an epoch before min_steps is never selected, balancing really weights the
contrastive terms, and predictions and the student's positions do not depend on the padding side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from concner.models.ner_model import ConcNerModel
from concner.models.tiny import build_tiny_encoder
from concner.tasks.training import train as train_module
from concner.tasks.text.corpus import Sentence
from concner.tasks.training.distill_loss import DistillLoss
from concner.tasks.training.evaluate import predict_probs
from concner.tasks.training.train import FitSettings, TeacherLoss, fit

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [
    Sentence(0, ["Ana", "vive", "en", "Lima"], ["B-PER", "O", "O", "B-LOC"]),
    Sentence(1, ["Juan", "Pérez", "llegó", "ayer", "a", "Madrid", "con", "Ana"],
             ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O", "B-PER"]),
    Sentence(2, ["Lima"], ["B-LOC"]),
    Sentence(3, ["Ana", "y", "Juan", "viven", "en", "Madridejos", "desde", "hace", "años"],
             ["B-PER", "O", "B-PER", "O", "O", "B-LOC", "O", "O", "O"]),
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    texts = [" ".join(s.tokens) for s in SENTENCES]
    return build_tiny_encoder(texts, tmp_path_factory.mktemp("enc") / "tiny", hidden_size=32, vocab_size=60)


def _model(encoder) -> ConcNerModel:
    torch.manual_seed(0)
    return ConcNerModel.from_encoder(encoder, LABELS, proj_dim=8)


class _ScriptedDev:
    """evaluate_model replaced: the dev F1 of epoch i is scores[i], and each epoch's weights are kept."""

    def __init__(self, scores):
        self.scores, self.weights = list(scores), []

    def __call__(self, model, dev, **_):
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        f1 = self.scores[len(self.weights) - 1]
        return {"f1": f1, "precision": f1, "recall": f1}, []


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_epochs_weights_are_restored_and_patience_stops_the_loop(encoder, monkeypatch):
    model = _model(encoder)
    dev = _ScriptedDev([0.2, 0.6, 0.4, 0.3, 0.9, 0.9])
    monkeypatch.setattr(train_module, "evaluate_model", dev)
    loss = TeacherLoss({label: i for i, label in enumerate(LABELS)}, max_length=32)
    items = [(s, None) for s in SENTENCES]
    result = fit(model, items, loss, FitSettings(epochs=6, batch_size=2, learning_rate=1e-2, patience=2),
                 dev=SENTENCES)
    assert result.best_epoch == 2 and result.stopped_early and len(result.epochs) == 4
    assert _same(model.state_dict(), dev.weights[1])  # epoch 2's weights, not the last epoch's
    assert not _same(dev.weights[1], dev.weights[3])  # (the weights did move after epoch 2)


def test_an_epoch_before_min_steps_is_never_selected(encoder, monkeypatch):
    """The first epochs of a small corpus can score best by tagging everything: with min_steps
    the selection waits until the schedule has run that many steps."""
    model = _model(encoder)
    dev = _ScriptedDev([0.9, 0.8, 0.3, 0.5, 0.4])
    monkeypatch.setattr(train_module, "evaluate_model", dev)
    loss = TeacherLoss({label: i for i, label in enumerate(LABELS)}, max_length=32)
    items = [(s, None) for s in SENTENCES]  # 2 steps per epoch: min_steps 5 -> epochs 3+ eligible
    result = fit(model, items, loss, FitSettings(epochs=5, batch_size=2, learning_rate=1e-2, patience=1,
                                                 min_steps=5), dev=SENTENCES)
    assert result.best_epoch == 4  # epochs 1-2 (4 steps) scored higher but were not eligible
    assert result.stopped_early and len(result.epochs) == 5
    assert _same(model.state_dict(), dev.weights[3])


def test_balanced_terms_enter_the_loss_with_their_scales(encoder):
    """The loss the optimizer steps on is CE + lambda * scale * term: a scale computed but not
    applied (or applied to the wrong term) changes this sum."""
    model = _model(encoder)
    model.train()
    ids = {label: i for i, label in enumerate(LABELS)}
    pairs = [(SENTENCES[i], SENTENCES[(i + 1) % 4]) for i in range(4)]
    terms = TeacherLoss(ids, 32, lambda_tcl=2.0, lambda_lcl=0.5, balance="grad_norm")(
        model, pairs, torch.Generator().manual_seed(0))
    expected = (terms["ce_source"] + terms["ce_target"] + 2.0 * terms["tcl_scale"] * terms["tcl"]
                + 0.5 * terms["lcl_scale"] * terms["lcl"])
    assert torch.allclose(terms["loss"], expected, rtol=1e-5)
    assert min(float(terms["tcl_scale"]), float(terms["lcl_scale"])) < 1  # balancing acted here


def test_the_demo_teacher_trains_with_balanced_contrastive_terms(demo_run):
    """The package default balances TCL and LCL against cross-entropy (train.balance: grad_norm)."""
    final = demo_run.manifest("train")["metrics"]["final_loss_terms"]
    assert {"tcl", "lcl", "tcl_scale", "lcl_scale"} <= set(final)
    assert 0 < final["tcl_scale"] <= 1 and 0 < final["lcl_scale"] <= 1


def test_batched_predictions_equal_one_at_a_time_with_a_left_padding_tokenizer(encoder):
    model = _model(encoder).eval()
    model.tokenizer.padding_side = "left"
    words = [s.tokens for s in SENTENCES]
    batched = predict_probs(model, words, batch_size=4, max_length=32)
    for sentence, probs in zip(words, batched):
        (alone,) = predict_probs(model, [sentence], batch_size=1, max_length=32)
        np.testing.assert_allclose(probs, alone, atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_students_positions_are_its_words_first_subwords_on_either_padding_side(encoder, side):
    model = _model(encoder)
    model.tokenizer.padding_side = side
    probs = [np.full((len(s.tokens), len(LABELS)), 1 / len(LABELS), dtype=np.float32) for s in SENTENCES]
    batches = DistillLoss(max_length=128).prepare(model, list(zip(SENTENCES, probs)))
    first_ids = [model.tokenizer(s.tokens, is_split_into_words=True) for s in SENTENCES]
    expected = []
    for enc in first_ids:
        seen = set()
        expected.append([tok for tok, w in zip(enc["input_ids"], enc.word_ids()) if w is not None and not (w in seen or seen.add(w))])
    order = [2, 0, 3, 1]  # the one-word sentence first: the others are padded around it
    batch = batches.batch(order)
    gathered = batch.input_ids.flatten()[batch.positions].tolist()
    assert gathered == [t for i in order for t in expected[i]]
    input_ids, _, _, weight, _ = batches.static_batch(order, rows=4, width_multiple=8)
    dense = [input_ids[b][weight[b] > 0].tolist() for b in range(4)]
    assert dense == [expected[i] for i in order]


def test_one_settings_model_for_both_training_loops():
    """The teacher's and the student's loops take their settings from the same LoopConfig fields:
    every loop setting is a config setting, so none keeps a default the user cannot change."""
    import dataclasses

    from concner.tasks.engine.config import DistillConfig, LoopConfig, TrainConfig
    from concner.tasks.training.model_training import fit_settings
    from concner.tasks.training.train import FitSettings

    loop = {f.name for f in dataclasses.fields(FitSettings)} - {"seed"}
    assert loop <= set(LoopConfig.model_fields)
    assert issubclass(TrainConfig, LoopConfig) and issubclass(DistillConfig, LoopConfig)
    settings = fit_settings(DistillConfig(epochs=7, min_steps=3, learning_rate=0.5, cuda_graphs=False), seed=5)
    assert (settings.epochs, settings.min_steps, settings.learning_rate, settings.cuda_graphs, settings.seed) == (
        7, 3, 0.5, False, 5)
    assert TrainConfig().epochs == 10 and DistillConfig().epochs == 20  # each loop keeps its own default
