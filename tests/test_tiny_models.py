"""Tiny local models: they load like hub models, keep Spanish accents, and build deterministically."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, even by accident

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoModelForTokenClassification, AutoTokenizer

from concner.models.tiny import MARKER, build_tiny_encoder, build_tiny_marian, ensure_tiny_models
from concner.tasks.engine.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spinning threads made them ~30x slower; restored afterwards for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_PEOPLE = ["John", "Mary", "José", "María", "Peter", "Ana", "Sofía", "Luis"]
_PLACES = ["Madrid", "London", "Málaga", "Córdoba", "Paris", "Bogotá", "León", "Berlin"]
_ORGS = ["Google", "Reuters", "Telefónica", "the UN"]
_EN = [
    "{p} lives in {l} .",
    "{p} works for {o} in {l} .",
    "{o} opened an office in {l} .",
    "{p} visited {l} yesterday .",
]
_ES = [
    "{p} vive en {l} .",
    "{p} trabaja para {o} en {l} .",
    "{o} abrió una oficina en {l} .",
    "{p} visitó {l} ayer .",
]


def parallel_corpus(n: int = 300) -> tuple[list[str], list[str]]:
    """n deterministic English/Spanish sentence pairs with entities and accents."""
    en, es = [], []
    for i in range(n):
        # Independent cycles, so every name meets every template.
        slots = {"p": _PEOPLE[(i // 4) % 8], "l": _PLACES[(i * 3 + i // 32) % 8], "o": _ORGS[(i // 5) % 4]}
        en.append(_EN[i % 4].format(**slots))
        es.append(_ES[i % 4].format(**slots))
    return en, es


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    return parallel_corpus()


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, corpus) -> Path:
    en, es = corpus
    return build_tiny_encoder(en + es, tmp_path_factory.mktemp("enc") / "encoder", vocab_size=600)


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory, corpus) -> Path:
    en, es = corpus
    return build_tiny_marian(en, es, tmp_path_factory.mktemp("mt") / "marian", vocab_size=300)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return AutoModel.from_pretrained(folder).state_dict()


def test_encoder_loads_with_auto_classes_and_runs(encoder_dir):
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir)
    batch = tokenizer(["José vive en Málaga .", "Peter works for Google"], padding=True, return_tensors="pt")
    out = model(**batch)
    assert out.last_hidden_state.shape == (2, batch["input_ids"].shape[1], model.config.hidden_size)

    tagger = AutoModelForTokenClassification.from_pretrained(encoder_dir, num_labels=9)
    logits = tagger(**batch).logits
    assert logits.shape[-1] == 9


def test_encoder_is_cased_and_keeps_accents_without_unk(encoder_dir):
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    # Words from the corpus and words with accents the corpus never had (ñ, ü, ç, Ú).
    text = "Sofía visitó Bogotá y León ; el pingüino Ñandú de Úbeda habla français"
    pieces = tokenizer.tokenize(text)
    assert tokenizer.unk_token not in pieces
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    assert tokenizer.tokenize("Madrid") != tokenizer.tokenize("madrid")
    assert tokenizer.unk_token not in tokenizer.tokenize("Jose\u0301 Mu\u0308ller")  # decomposed accents


def test_encoder_truncates_to_its_position_limit(encoder_dir):
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir)
    long_text = " ".join(["Madrid"] * 2000)
    batch = tokenizer([long_text], truncation=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == model.config.max_position_embeddings
    model(**batch)  # fits the position embeddings


def test_encoder_works_as_simalign_model(encoder_dir):
    simalign = pytest.importorskip("simalign")
    aligner = simalign.SentenceAligner(model=str(encoder_dir), token_type="bpe", matching_methods="i", layer=2)
    src = ["José", "lives", "in", "Málaga", "."]
    tgt = ["José", "vive", "en", "Málaga", "."]
    pairs = aligner.get_word_aligns(src, tgt)["itermax"]
    assert pairs
    assert all(0 <= i < len(src) and 0 <= j < len(tgt) for i, j in pairs)


def test_building_twice_gives_identical_models(tmp_path, corpus):
    en, es = corpus
    a = build_tiny_encoder(en + es, tmp_path / "a", vocab_size=600)
    b = build_tiny_encoder(en + es, tmp_path / "b", vocab_size=600)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()

    c = build_tiny_encoder(en + es, tmp_path / "c", vocab_size=600, seed=1)
    wc = _weights(c)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_encoder_vocabulary_is_the_same_in_a_fresh_process(tmp_path, encoder_dir, corpus):
    # tokenizers' own trainers vary between processes (hash-map order); this build must not.
    en, es = corpus
    script = (
        "import json, sys\n"
        "from concner.models.tiny import build_tiny_encoder\n"
        "texts = json.load(open(sys.argv[1]))\n"
        "build_tiny_encoder(texts, sys.argv[2], vocab_size=600)\n"
    )
    (tmp_path / "texts.json").write_text(json.dumps(en + es), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "texts.json"), str(tmp_path / "fresh")],
        check=True,
        env=env,
        capture_output=True,
    )
    ours = json.loads((encoder_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    theirs = json.loads((tmp_path / "fresh" / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert ours == theirs
    digest = lambda p: hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(encoder_dir) == digest(tmp_path / "fresh")


def test_complete_build_is_reused_and_foreign_folders_are_never_overwritten(tmp_path, corpus):
    en, es = corpus
    first = build_tiny_encoder(en, tmp_path / "enc", vocab_size=400)
    stamp = (first / MARKER).stat().st_mtime_ns
    again = build_tiny_encoder(en, tmp_path / "enc", vocab_size=400)
    assert again == first and (first / MARKER).stat().st_mtime_ns == stamp

    changed = build_tiny_encoder(en, tmp_path / "enc", vocab_size=400, hidden_size=32)
    assert AutoModel.from_pretrained(changed).config.hidden_size == 32

    foreign = tmp_path / "my_model"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    with pytest.raises(UserError, match="not a tiny-model build"):
        build_tiny_encoder(en, foreign)
    assert (foreign / "config.json").read_text() == "{}"


def test_marian_loads_and_round_trips_spanish_text(marian_dir):
    tokenizer = AutoTokenizer.from_pretrained(marian_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(marian_dir)
    assert model.config.decoder_start_token_id == model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.max_position_embeddings <= 256

    # Source side (English) and target side (Spanish, accents) pieces are all in vocab.json.
    source = "Peter works for Google in London ."
    ids = tokenizer(source)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == source
    target = "Sofía visitó Bogotá ayer ."
    target_ids = tokenizer(text_target=target)["input_ids"]
    assert tokenizer.unk_token_id not in target_ids
    assert tokenizer.decode(target_ids, skip_special_tokens=True) == target


def test_marian_generates_without_pad_inside_the_output(marian_dir):
    tokenizer = AutoTokenizer.from_pretrained(marian_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(marian_dir).eval()
    batch = tokenizer(["John lives in Madrid .", "Mary visited Paris yesterday ."], padding=True, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=8, num_beams=1)
    pad = tokenizer.pad_token_id
    for row in out.tolist():
        assert row[0] == pad  # decoder start
        body = row[1:]
        if tokenizer.eos_token_id in body:
            body = body[: body.index(tokenizer.eos_token_id)]
        assert pad not in body


def test_ensure_tiny_models_builds_each_model_once(tmp_path, corpus):
    en, es = corpus
    en, es = en[:60], es[:60]
    models = ensure_tiny_models(en, es, tmp_path / "cache")
    assert set(models) == {"encoder", "translator", "back_translator"}
    assert models["translator"] != models["back_translator"]
    stamps = {k: (p / MARKER).stat().st_mtime_ns for k, p in models.items()}
    assert ensure_tiny_models(en, es, tmp_path / "cache") == models
    assert {k: (p / MARKER).stat().st_mtime_ns for k, p in models.items()} == stamps
    # The back-translator reads Spanish: its source pieces include the accented words.
    back = AutoTokenizer.from_pretrained(models["back_translator"])
    assert back.unk_token_id not in back("José visitó Córdoba ayer .")["input_ids"]
