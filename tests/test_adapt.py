"""The adapt stage: continued pretraining of the encoder on the target language."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from concner.models.tiny import build_tiny_encoder
from concner.tasks.training.adapt import (AdaptSettings, AdaptTexts, _collator, _masked_batch, adapt_encoder, add_pieces, mlm_loss,
                                 useful_new_pieces)
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO
from tests.demo_store import FAST

TEXTS = ["la canción de Ana suena en Lima", "Juan canta una canción en Madrid", "las canciones de Juan",
         "Ana vive en Lima", "Juan y Ana cantan"] * 4


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    # a vocabulary of characters and a few short pieces: target words come out in many pieces
    return build_tiny_encoder(TEXTS, tmp_path_factory.mktemp("enc") / "tiny", hidden_size=32, vocab_size=90)


def test_new_pieces_are_the_target_pieces_that_save_tokens_and_start_from_their_old_pieces(encoder, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModelForMaskedLM.from_pretrained(encoder)
    pieces = useful_new_pieces(tokenizer, TEXTS, 5)
    assert len(pieces) == 5 and not set(pieces) & set(tokenizer.get_vocab())
    assert "canción" in pieces or "canci" in " ".join(pieces)  # the most frequent long word
    old_pieces = {p: tokenizer.backend_tokenizer.model.tokenize(p.removeprefix("##")) for p in pieces}
    embeddings = model.get_input_embeddings().weight.detach().clone()
    grown = add_pieces(tokenizer, model, pieces, tmp_path / "out")
    assert len(grown) == len(tokenizer) + 5
    before = sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    assert sum(len(grown(t)["input_ids"]) for t in TEXTS) < before
    rows = model.get_input_embeddings().weight
    for piece in pieces:
        expected = embeddings[[t.id for t in old_pieces[piece]]].mean(0)
        assert torch.allclose(rows[grown.convert_tokens_to_ids(piece)], expected)


def test_the_masked_positions_loss_is_the_models_own_masked_lm_loss(encoder):
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModelForMaskedLM.from_pretrained(encoder).eval()
    ids = tokenizer(TEXTS[:6])["input_ids"]
    batch = _masked_batch(_collator(tokenizer, 0.3), ids, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(mlm_loss(model, batch), model(**batch).loss, atol=1e-5)


def test_adapting_lowers_the_held_out_loss_and_is_deterministic(encoder, tmp_path):
    texts = AdaptTexts(target=TEXTS, pairs=[("Ana sings", "Ana canta")] * 4, source=["Ana sings in Lima"] * 4,
                       heldout=TEXTS[:5])
    settings = AdaptSettings(steps=30, batch_size=8, learning_rate=3e-3, max_length=32, seed=3)
    first = adapt_encoder(str(encoder), texts, settings, tmp_path / "a")
    second = adapt_encoder(str(encoder), texts, settings, tmp_path / "b")
    assert first.heldout_after < first.heldout_before
    assert set(first.drawn) == {"target", "tlm", "source"} and all(v > 0 for v in first.drawn.values())
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert first.steps == second.steps


def test_the_demo_adapts_its_encoder_and_every_later_stage_uses_it(demo_run):
    folder = demo_run.stage_dir("adapt") / "encoder"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder)  # an ordinary transformers encoder folder
    metrics = demo_run.manifest("adapt")["metrics"]
    assert metrics["new_tokens"] > 0 and encoder.get_input_embeddings().num_embeddings == len(tokenizer)
    loss = metrics["heldout_mlm_loss"]
    assert loss["after"] < loss["before"]
    assert demo_run.manifest("train")["metrics"]["encoder_path"] == str(folder)
    for stage in ("train", "distill"):  # the grown vocabulary is the one the teacher and the student read
        saved = AutoTokenizer.from_pretrained(demo_run.stage_dir(stage) / "model")
        assert saved.get_vocab() == tokenizer.get_vocab(), stage


def test_inspect_shows_the_adapt_loss_before_and_after(demo_run):
    from tests.demo_store import run_cli

    code, out, err = run_cli("inspect", demo_run.record["run_id"], "--stage", "adapt", "--store", demo_run.store)
    assert code == 0, err
    loss = demo_run.manifest("adapt")["metrics"]["heldout_mlm_loss"]
    assert "held-out masked-LM loss" in out and "loss terms over 40 steps" in out
    assert f"{loss['before']:.4f}" in out and f"{loss['after']:.4f}" in out


def test_the_adapt_key_follows_the_text_and_a_rerun_reuses_it(cli, demo_run, tmp_path):
    """The encoder is the demo's tiny one as a local folder (keyed by content), so the unlabeled text
    reaches the adapt key only through what the stage reads."""
    tiny = next((demo_run.store / "models").glob("encoder-*"))
    config = REPO / "configs" / "demo.yaml"
    edited = tmp_path / "es_unlabeled.txt"
    lines = (REPO / "data" / "samples" / "es_unlabeled.txt").read_text(encoding="utf-8").splitlines()
    edited.write_text("\n".join(lines[:-1] + ["Ana canta en Lima ."]) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    common = ("--store", store, "--until", "adapt", *FAST, "--set", f"train.encoder={tiny}", "--set", "adapt.steps=2")

    def adapt_entry(*extra) -> dict:
        code, _, err = cli("run", config, *common, *extra)
        assert code == 0, err[-2000:]
        return ArtifactStore(store).list_runs()[-1]["stages"]["adapt"]

    first = adapt_entry()
    other = adapt_entry("--set", f"data.target_unlabeled={edited}")
    again = adapt_entry()
    assert other["key"] != first["key"]
    assert again["key"] == first["key"] and again["status"] == "reused"
    manifest = ArtifactStore(store).manifest("adapt", first["key"])
    assert json.dumps(manifest["key_material"]["params"]["encoder"]).count("local_folder_sha256") == 1
