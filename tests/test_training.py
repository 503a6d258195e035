"""Teacher training and distillation on tiny local models built from the sample data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score
from transformers import pipeline

from concner.models.ner_model import ConcNerModel
from concner.models.tiny import build_tiny_encoder, peaked_teacher_probs
from concner.tasks.text.conll import read_conll
from concner.tasks.text.corpus import entity_types, label_list
from concner.tasks.training.distill_loss import DistillLoss
from concner.tasks.training.evaluate import predict_probs, probs_to_tags
from concner.tasks.training.train import FitSettings, TeacherLoss, fit
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def samples():
    en, _ = read_conll(SAMPLES / "en_train.conll")
    es, _ = read_conll(SAMPLES / "es_train.conll")
    return en, es


@pytest.fixture(scope="module")
def encoder(samples, tmp_path_factory):
    en, es = samples
    texts = [" ".join(s.tokens) for s in en + es]
    return build_tiny_encoder(texts, tmp_path_factory.mktemp("tiny") / "encoder")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up costs more than it saves
    yield
    torch.set_num_threads(threads)


def test_teacher_training_lowers_ce_tcl_and_lcl_and_exports_a_pipeline_model(samples, encoder, tmp_path):
    en, es = samples
    labels = label_list(entity_types(en))
    model = ConcNerModel.from_encoder(encoder, labels)
    loss = TeacherLoss({label: i for i, label in enumerate(labels)}, max_length=64)
    pairs = list(zip(en[:96], es[:96]))
    probe = pairs[:16]

    def terms() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            out = loss(model, probe, torch.Generator().manual_seed(0))
        return {k: float(v) for k, v in out.items()}

    before = terms()
    fit(model, pairs, loss, FitSettings(epochs=3, batch_size=16, learning_rate=2e-3, max_length=64, seed=1))
    after = terms()
    for term in ("ce_source", "ce_target", "tcl", "lcl"):
        assert after[term] < before[term], (term, before, after)

    # Three epochs lower the losses but still tag everything O; train on until the entities are
    # learned. The training pairs hold "Pedro Sánchez" (PER) and "anunció en Madrid" (LOC), not
    # the sentence below.
    fit(model, pairs, loss, FitSettings(epochs=25, batch_size=16, learning_rate=2e-3, max_length=64, seed=2))
    model.save(tmp_path / "model")
    sentence = ["Pedro", "Sánchez", "anunció", "en", "Madrid", "."]
    entities = pipeline("token-classification", model=str(tmp_path / "model"), aggregation_strategy="first")
    found = [(e["entity_group"], e["word"]) for e in entities(" ".join(sentence))]
    assert found == [("PER", "Pedro Sánchez"), ("LOC", "Madrid")]
    # the pipeline's tags are our model's tags: same weights, same first-subword reading
    tagger = pipeline("token-classification", model=str(tmp_path / "model"), ignore_labels=[])
    predicted = tagger(" ".join(sentence))
    assert {p["entity"] for p in predicted} <= set(labels)
    ours = probs_to_tags(predict_probs(model, [sentence]), labels)[0]
    assert ours == ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]
    first_subwords = [p for p in predicted if not p["word"].startswith("##")]
    assert [p["entity"] for p in first_subwords] == ours


@pytest.mark.parametrize("kind, epochs", [("kl", 12), ("mse", 2)])
def test_student_reproduces_a_confident_teacher(samples, encoder, kind, epochs):
    _, es = samples
    labels = label_list(entity_types(es))
    teacher = peaked_teacher_probs(es, labels, 0.95)  # a teacher that is right and sure
    student = ConcNerModel.from_encoder(encoder, labels)
    result = fit(student, list(zip(es, teacher)), DistillLoss(kind=kind, max_length=64),
                 FitSettings(epochs=epochs, batch_size=16, learning_rate=3e-3, max_length=64, seed=2))
    assert result.epochs[-1]["loss"] < result.epochs[0]["loss"]
    if kind == "kl":
        teacher_tags = probs_to_tags(teacher, labels)
        student_tags = probs_to_tags(predict_probs(student, [s.tokens for s in es], max_length=64), labels)
        tokens = sum(len(t) for t in teacher_tags)
        agreement = sum(a == b for ta, sa in zip(teacher_tags, student_tags) for a, b in zip(ta, sa)) / tokens
        assert agreement > 0.95
        assert f1_score(teacher_tags, student_tags) > 0.85


def test_a_batch_is_what_tokenizing_it_alone_gives_and_source_only_items_train(samples, encoder):
    """Sentences are tokenized once for the whole run (EncodedTable): a batch cut from the table
    must hold exactly the tensors of tokenizing and padding that batch alone, also when sources
    and translations of different lengths share it, or when no item has a translation."""
    from concner.models.encoding import collate, encode_words

    en, es = samples
    labels = label_list(entity_types(en))
    ids = {label: i for i, label in enumerate(labels)}
    model = ConcNerModel.from_encoder(encoder, labels)
    loss = TeacherLoss(ids, max_length=64)
    items = [(s, t if i % 2 else None) for i, (s, t) in enumerate(zip(en[:24], es[:24]))]
    prepared = loss.prepare(model, items)
    picked = [5, 0, 17, 8, 3]
    batch = prepared.batch(picked)
    sentences = [items[i][0] for i in picked] + [items[i][1] for i in picked if items[i][1] is not None]
    alone = collate(model.tokenizer, encode_words(model.tokenizer, [s.tokens for s in sentences],
                                                  [[ids[t] for t in s.tags] for s in sentences], 64),
                    range(len(sentences)))
    assert torch.equal(batch.input_ids, alone["input_ids"])
    assert torch.equal(batch.attention_mask, alone["attention_mask"])
    assert torch.equal(batch.gold, alone["labels"])
    assert batch.n_paired == 3 and batch.paired_sources.tolist() == [0, 2, 4]  # items 5, 17, 3 have one

    source_only = [(s, None) for s in en[:10]]
    result = fit(model, source_only, loss, FitSettings(epochs=1, batch_size=4, max_length=64))
    assert len(result.steps) == 3 and "ce_target" not in result.steps[-1]


def test_the_student_loop_logs_progress_lines_when_not_on_a_terminal(samples, encoder, monkeypatch, capsys):
    """A scheduled run writes to a file: the long loops must still say how far they are."""
    from concner.tasks.text.corpus import Sentence
    from concner.tasks.engine.progress import LOG_INTERVAL_ENV

    monkeypatch.setenv(LOG_INTERVAL_ENV, "0")  # a line at every step instead of every 30 s
    _, es = samples
    labels = ["O", "B-PER", "I-PER"]
    uniform = [np.full((len(s.tokens), 3), 1 / 3, dtype=np.float32) for s in es[:12]]
    student = ConcNerModel.from_encoder(encoder, labels)
    fit(student, [(Sentence(s.id, s.tokens, None), p) for s, p in zip(es[:12], uniform)],
        DistillLoss(max_length=64), FitSettings(epochs=1, batch_size=4, max_length=64), progress="distilling student")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("distilling student:")]
    assert [line.split()[2] for line in lines[:3]] == ["1/3", "2/3", "3/3"]
    assert "/s," in lines[0] and "ETA" in lines[0]
    assert "distill" in lines[-1]  # the loss terms, read back at the end of the epoch


@pytest.mark.parametrize("kind, temperature, hard", [("kl", 1.0, None), ("kl", 2.0, 0.5), ("mse", 1.0, 0.9)])
def test_the_fixed_shape_student_step_gives_the_gathered_loss_and_gradients(samples, encoder, kind, temperature, hard):
    """What a CUDA graph replays (tasks/training/cuda_graphs.py) is the student's loss over dense tensors of
    a fixed shape: the short last batch padded with empty rows, the width rounded up. On a CPU
    (no graph), it must give the loss and gradients of the gathered form the CPU loop uses."""
    _, es = samples
    labels = label_list(entity_types(es))
    # the teacher is unsure here and there, so the hard-label threshold keeps some words only
    teacher = peaked_teacher_probs(es, labels, 0.7)
    teacher[4] = peaked_teacher_probs([es[4]], labels, 0.95)[0]
    teacher[1][0] = np.nan  # a word the teacher did not see (past its max_length): no target
    items = list(zip(es, teacher))
    student = ConcNerModel.from_encoder(encoder, labels, dropout=0.0)
    loss = DistillLoss(kind=kind, temperature=temperature, hard_label_confidence=hard, max_length=64)
    batches = loss.prepare(student, items)
    indices = [4, 1, 7]  # a short batch: 3 sentences in a batch of 5 rows

    gathered = loss(student, batches.batch(indices), None)
    gathered["loss"].backward()
    expected = {n: p.grad.clone() for n, p in student.token_model.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)

    static = batches.static_batch(indices, rows=5, width_multiple=32)
    width = static[0].shape[1]
    assert width % 32 == 0 and batches.table.width(indices) <= width < batches.table.width(indices) + 32
    assert static[0].shape == (5, width) and static[2].shape == (5, width, len(labels))
    step = loss.graph_step(student)
    dense = dict(zip(step.names, step(*static)))
    dense["loss"].backward()

    assert set(dense) == set(gathered) | ({"ce_hard"} if hard else set())
    for name in dense:
        assert dense[name].item() == pytest.approx(gathered.get(name, torch.tensor(0.0)).item(), rel=1e-5, abs=1e-7)
    got = {n: p.grad for n, p in student.token_model.named_parameters() if p.grad is not None}
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("o_mode, lambda_tcl, lambda_lcl, balance, features", [
    ("subsample", 1.0, 1.0, "grad_norm", "head"),
    ("exclude_anchor", 0.5, 2.0, "none", "hidden"),
    ("keep", 0.0, 1.0, "grad_norm", "head"),
])
def test_the_fixed_shape_teacher_step_gives_the_eager_loss_and_gradients(samples, encoder, o_mode, lambda_tcl,
                                                                          lambda_lcl, balance, features):
    """What a CUDA graph replays for the teacher is its loss over a fixed layout (sources, then each
    translation at its source's row + R, empty rows where there is none, the width rounded up,
    LCL's tokens as a mask). On a CPU it must give the eager loss's terms and gradients, LCL's O
    sample included: both draw it from a generator of the same seed."""
    en, es = samples
    labels = label_list(entity_types(en))
    model = ConcNerModel.from_encoder(encoder, labels, dropout=0.0)
    loss = TeacherLoss({label: i for i, label in enumerate(labels)}, max_length=64, lambda_tcl=lambda_tcl,
                       lambda_lcl=lambda_lcl, lcl_o_mode=o_mode, balance=balance, lcl_features=features)
    # sentence 1 and 5 have no translation; a short batch of 5 in a batch of 6 rows
    items = [(src, None if i in (1, 5) else tgt) for i, (src, tgt) in enumerate(zip(en[:8], es[:8]))]
    batches = loss.prepare(model, items)
    indices = [3, 1, 6, 5, 0]

    eager = loss(model, batches.batch(indices), torch.Generator().manual_seed(7))
    eager["loss"].backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    static = batches.static_batch(indices, rows=6, width_multiple=32, generator=torch.Generator().manual_seed(7))
    width = static[0].shape[1]
    assert static[0].shape == (12, width) and width % 32 == 0 and static[3].tolist() == [1, 0, 1, 0, 1, 0]
    step = loss.graph_step(model)
    dense = dict(zip(step.names, step(*static)))
    dense["loss"].backward()

    assert set(eager) <= set(dense)
    for name in dense:
        assert dense[name].item() == pytest.approx(eager[name].item(), rel=1e-5, abs=1e-6), name
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)


def test_the_fixed_shape_teacher_step_is_zero_where_the_eager_loss_leaves_a_term_out(samples, encoder):
    """A batch with one translation (TCL needs two) or none: the eager loss has no TCL (or no
    CE on translations) there; the fixed-shape step reports 0 for them and the same total loss."""
    en, es = samples
    labels = label_list(entity_types(en))
    model = ConcNerModel.from_encoder(encoder, labels, dropout=0.0)
    loss = TeacherLoss({label: i for i, label in enumerate(labels)}, max_length=64)
    items = [(en[0], es[0]), (en[1], None), (en[2], None)]
    batches = loss.prepare(model, items)
    step = loss.graph_step(model)
    for indices in ([0, 1, 2], [1, 2]):
        eager = loss(model, batches.batch(indices), torch.Generator().manual_seed(3))
        static = batches.static_batch(indices, rows=4, width_multiple=32, generator=torch.Generator().manual_seed(3))
        dense = dict(zip(step.names, step(*static)))
        assert "tcl" not in eager and dense["tcl"].item() == 0.0
        assert dense["loss"].item() == pytest.approx(eager["loss"].item(), rel=1e-5)
        assert torch.isfinite(torch.stack(list(dense.values()))).all()
    assert "ce_target" not in eager and dense["ce_target"].item() == 0.0


def test_a_cuda_graph_fallback_is_kept_in_the_manifest_and_shown_in_the_stage_summary(tmp_path):
    """On a GPU, a step that cannot be captured makes the loop go on without graphs: besides the
    log's warning, the stage's manifest keeps why, and `concner inspect --stage` shows it. On a
    CPU there is nothing to record, so CPU manifests stay as they were."""
    from concner.tasks.training.model_training import graph_metrics
    from concner.tasks.presentation.summary import SampleQuery
    from concner.tasks.training.train import FitResult
    from concner.tasks.presentation.training_summary import model_summary

    assert graph_metrics(FitResult()) == {}
    failed = graph_metrics(FitResult(cuda_graph_error="RuntimeError: operation not permitted when stream is capturing"))
    replayed = graph_metrics(FitResult(cuda_graph_shapes=["32x32", "32x64"]))

    def figures(metrics: dict) -> dict:
        summary = model_summary({"stage": "train", "metrics": {"epochs": [], **metrics}}, tmp_path, SampleQuery())
        return dict(summary.blocks[0].items)

    assert "CUDA graphs" not in figures({})
    assert figures(failed)["CUDA graphs"] == "off after an error: RuntimeError: operation not permitted when stream is capturing"
    assert figures(replayed)["CUDA graphs"] == "batch shapes 32x32, 32x64"
