"""Batched SimAlign must give exactly stock simalign's word alignments (tasks/nlp/align.py).

Stock `SentenceAligner.get_word_aligns` is the reference everywhere. Equality is exact on the word
pairs; the hidden states differ from stock's by float noise only (padding to another width), which
could in principle flip an argmax whose top two similarities are within ~1e-6 (12 of 167k argmax
decisions on 2,000 real pairs are that close); none flipped on the pairs used here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from concner.tasks.nlp.align import BatchAligner, align_pairs, max_weight_match
from concner.tasks.engine.errors import UserError
from tests.conftest import minilm_path, shared

simalign = pytest.importorskip("simalign")
SentenceAligner = simalign.SentenceAligner

METHOD_KEYS = {"mwmf", "inter", "itermax"}


def _read_tokens(path: Path) -> list[list[str]]:
    """Token column of a CoNLL file, one list per sentence (test-local reader; -DOCSTART- skipped)."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.split("\t")[0].strip()
        if not token or token == "-DOCSTART-":
            if current and not token:
                sentences.append(current)
                current = []
            continue
        current.append(token)
    return sentences + ([current] if current else [])


def _stock(aligner: SentenceAligner, pairs) -> list[dict]:
    with _one_torch_thread():
        return [aligner.get_word_aligns(src, tgt) for src, tgt in pairs]


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the count.

    On this 2-core box, 2 intra-op threads competing with any other busy process made every op wait
    for a descheduled peer: stock simalign went from 27 ms to 545 ms a pair. One thread is immune.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with _one_torch_thread():
        yield


@pytest.fixture(scope="session")
def real_pairs() -> list[tuple[list[str], list[str]]]:
    """200 shortish real pairs (3-14 words a side): stock's networkx matching grows ~cubically with length."""
    en = _read_tokens(shared("parallel_en_es", "en.txt"))
    es = _read_tokens(shared("parallel_en_es", "es.txt"))
    assert len(en) == len(es) == 8382
    short = [(s, t) for s, t in zip(en, es) if 3 <= len(s) <= 14 and 3 <= len(t) <= 14]
    assert len(short) >= 200
    return short[:200]


@pytest.fixture(scope="session")
def minilm_stock(real_pairs):
    """Stock simalign's alignments of the real pairs with MiniLM layer 5, computed once per session."""
    path = str(minilm_path())
    return _stock(SentenceAligner(model=path, token_type="bpe", matching_methods="mai", layer=5), real_pairs)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random-weight 2-layer BERT (hidden 32) with the MiniLM tokenizer saved beside it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_pairs() -> list[tuple[list[str], list[str]]]:
    """50 seeded random pairs of mixed English/Spanish words, with splits into several subwords."""
    words = (
        "the of and in el la los de que y en un una Madrid Melbourne EFE , . ( ) - Williams "
        "gobierno presidente government president announced anunció 25 1998 internationalization "
        "ayuntamiento Ayuntamiento unconstitutional anticonstitucional víctima victim señaló said "
        "Barcelona São-Paulo 3.5% ¿qué ? ! Ñandú naïve über".split()
    )
    rng = random.Random(7)
    return [
        ([rng.choice(words) for _ in range(rng.randint(1, 25))], [rng.choice(words) for _ in range(rng.randint(1, 25))])
        for _ in range(50)
    ]


@pytest.mark.realdata
def test_minilm_real_pairs_equal_stock(real_pairs, minilm_stock):
    aligner = BatchAligner(str(minilm_path()), layer=5, methods="mai", device="cpu", batch_size=32)
    batched = aligner.align(real_pairs)
    assert set(batched[0]) == METHOD_KEYS
    mismatched = [k for k, (ours, ref) in enumerate(zip(batched, minilm_stock)) if ours != ref]
    assert mismatched == [], f"pairs differing from stock simalign: {mismatched[:10]}"
    assert aligner.last_stats.pairs == 200 and aligner.last_stats.empty == aligner.last_stats.truncated == 0
    assert sum(len(a["itermax"]) for a in batched) > 1000  # real alignments, not trivially empty


@pytest.mark.realdata
def test_minilm_other_batch_sizes_and_methods(real_pairs, minilm_stock):
    """Batch composition must not matter; a subset of methods returns just those keys."""
    pairs, ref = real_pairs[:40], minilm_stock[:40]
    for batch_size in (1, 7):
        got = BatchAligner(str(minilm_path()), layer=5, methods="mai", device="cpu", batch_size=batch_size).align(pairs)
        assert got == ref
    only_itermax = BatchAligner(str(minilm_path()), layer=5, methods="i", device="cpu").align(pairs)
    assert only_itermax == [{"itermax": r["itermax"]} for r in ref]


def test_tiny_random_bert_equals_stock(tiny_bert, synthetic_pairs):
    stock = _stock(SentenceAligner(model=str(tiny_bert), token_type="bpe", matching_methods="maifr", layer=1), synthetic_pairs)
    aligner = BatchAligner(str(tiny_bert), layer=1, methods="maifr", device="cpu", batch_size=8)
    assert aligner.align(synthetic_pairs) == stock
    assert len(aligner.model.encoder.layer) == 1  # layer 2 is never computed: hidden_states[1] needs layer 1 only
    exact = BatchAligner(str(tiny_bert), layer=1, methods="m", device="cpu", exact_mwmf=True)
    assert exact.align(synthetic_pairs[:10]) == [{"mwmf": s["mwmf"]} for s in stock[:10]]


def test_tiny_embedding_layer_equals_stock(tiny_bert, synthetic_pairs):
    """layer=0 is the embedding output: every encoder layer is dropped."""
    stock = SentenceAligner(model=str(tiny_bert), token_type="bpe", matching_methods="ai", layer=0)
    got = BatchAligner(str(tiny_bert), layer=0, methods="ai", device="cpu").align(synthetic_pairs[:15])
    assert got == _stock(stock, synthetic_pairs[:15])


def test_tiny_word_level_equals_stock(tiny_bert, synthetic_pairs):
    stock = _stock(SentenceAligner(model=str(tiny_bert), token_type="word", matching_methods="mai", layer=2), synthetic_pairs)
    got = BatchAligner(str(tiny_bert), layer=2, methods="mai", token_type="word", device="cpu").align(synthetic_pairs)
    assert got == stock


def test_word_level_skips_words_without_subwords(tiny_bert):
    """Stock crashes on a word with no subwords in word mode (NaN mean); we leave that word unaligned."""
    src, tgt = ["la", "\u200b", "casa", "grande"], ["the", "big", "house"]
    got = BatchAligner(str(tiny_bert), layer=1, methods="mai", token_type="word", device="cpu").align([(src, tgt)])
    assert got[0]["itermax"] and all(i != 1 for pairs in got[0].values() for i, _ in pairs)


def test_empty_sides_give_empty_alignments(tiny_bert, synthetic_pairs):
    normal = synthetic_pairs[0]
    pairs = [([], ["a", "b"]), normal, (["a"], []), ([], []), (["\u200b"], ["hola"])]  # U+200B has no subwords
    aligner = BatchAligner(str(tiny_bert), layer=1, methods="mai", device="cpu")
    got = aligner.align(pairs)
    empty = {"mwmf": [], "inter": [], "itermax": []}
    assert got[0] == got[2] == got[3] == got[4] == empty
    stock = SentenceAligner(model=str(tiny_bert), token_type="bpe", matching_methods="mai", layer=1)
    assert got[1] == stock.get_word_aligns(*normal)
    assert aligner.last_stats.empty == 4 and aligner.last_stats.pairs == 5
    assert aligner.align([]) == []


def test_overlong_sentence_truncated_like_stock(tiny_bert):
    """600 words > 510 subwords: stock's tokenizer cuts at 512 tokens; so do we, and we count it."""
    src = [f"w{i % 10}" if i % 3 else "casa" for i in range(600)]  # "w3" is 2 subwords
    tgt = ["la", "casa", "w1", "grande", "."]
    aligner = BatchAligner(str(tiny_bert), layer=1, methods="ai", device="cpu")
    got = aligner.align([(src, tgt), (tgt, src)])
    stock = SentenceAligner(model=str(tiny_bert), token_type="bpe", matching_methods="ai", layer=1)
    assert got == [stock.get_word_aligns(src, tgt), stock.get_word_aligns(tgt, src)]
    assert aligner.last_stats.truncated == 2
    assert max(i for i, _ in got[0]["inter"]) < 510 and got[0]["inter"]


def test_overlong_beyond_position_table_does_not_crash(tiny_bert, tmp_path):
    """A tokenizer limit (512) above the model's position table (64) would crash stock; we truncate at 64."""
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_bert)
    config.max_position_embeddings = 64
    BertModel(config).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_bert / name).exists():
            (tmp_path / name).write_bytes((tiny_bert / name).read_bytes())
    aligner = BatchAligner(str(tmp_path), layer=2, methods="mai", device="cpu")
    assert aligner.max_length == 64
    src = ["palabra"] * 100
    got = aligner.align([(src, ["la", "palabra"])])
    assert aligner.last_stats.truncated == 1
    assert got[0]["itermax"] and max(i for i, _ in got[0]["itermax"]) < 62


def test_max_weight_match_matches_networkx_and_falls_back_on_ties():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 4), (4, 1), (3, 3), (5, 9), (12, 7), (30, 30)]:
        sim = rng.random(shape).astype(np.float32) + 0.01
        ours, fell_back = max_weight_match(sim)
        assert not fell_back
        assert np.array_equal(ours, SentenceAligner.get_max_weight_match(sim))
    tied = np.full((4, 4), 0.5, dtype=np.float32)  # every perfect matching is optimal: defer to networkx
    ours, fell_back = max_weight_match(tied)
    assert fell_back and np.array_equal(ours, SentenceAligner.get_max_weight_match(tied))


def test_function_api_and_progress(tiny_bert, synthetic_pairs):
    import torch

    before = torch.get_num_threads()
    got = align_pairs(synthetic_pairs[:5], model=str(tiny_bert), layer=1, methods="a", device="cpu", progress=True, threads=2)
    assert torch.get_num_threads() == before  # the aligner's thread count is restored afterwards
    stock = SentenceAligner(model=str(tiny_bert), token_type="bpe", matching_methods="a", layer=1)
    assert got == [stock.get_word_aligns(*p) for p in synthetic_pairs[:5]]


def test_bad_model_and_arguments_are_user_errors(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="no-such-org/no-such-model.*local path"):
        BatchAligner("no-such-org/no-such-model")
    with pytest.raises(UserError, match="local path"):
        BatchAligner(str(tmp_path / "missing-model"))
    with pytest.raises(UserError, match="layer 9"):
        BatchAligner(str(tiny_bert), layer=9)
    with pytest.raises(UserError, match="methods"):
        BatchAligner(str(tiny_bert), methods="mx")
