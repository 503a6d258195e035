"""Translation stage core: batching, order, truncation, empty sentences, loading errors, scores, tokenization."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, even by accident

import pytest
import torch

from concner.models.tiny import build_tiny_marian
from concner.tasks.engine.errors import UserError
from concner.tasks.nlp.translate import (
    default_model_name,
    load_translator,
    round_trip_chrf,
    score_translations,
    translate_sentences,
)
from concner.tasks.text.wordtok import detokenize, word_tokenize

pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spinning threads made them ~30x slower; restored afterwards for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

_NAMES = ["John", "Mary", "José", "Ana", "Peter", "Sofía"]
_CITIES = ["Madrid", "London", "Málaga", "Bogotá", "Paris"]


def _corpus(n: int = 200) -> tuple[list[str], list[str]]:
    en, es = [], []
    for i in range(n):
        name, city = _NAMES[(i // 3) % 6], _CITIES[(i * 2 + i // 15) % 5]
        if i % 3 == 0:
            en.append(f"{name} lives in {city} ."), es.append(f"{name} vive en {city} .")
        elif i % 3 == 1:
            en.append(f"{name} visited {city} and {_CITIES[i % 5]} yesterday ."), es.append(
                f"{name} visitó {city} y {_CITIES[i % 5]} ayer ."
            )
        else:
            en.append(f"The office of {name} is in {city} ."), es.append(f"La oficina de {name} está en {city} .")
    return en, es


# Word-tokenized sources of varied lengths, deliberately not in length order.
SOURCES = [
    word_tokenize(s)
    for s in [
        "John lives in Madrid.",
        "Mary visited London and Paris yesterday, and then she visited Málaga and Bogotá.",
        "Paris",
        "The office of Peter is in Bogotá.",
        "Ana lives in London and José lives in Madrid and Sofía lives in Paris.",
        "Mary lives in Paris.",
        "Sofía visited Madrid yesterday.",
        "The office of John is in London and the office of Mary is in Madrid.",
        "Peter visited Paris.",
        "José lives in Málaga.",
        "The office",
    ]
]
NEW_TOKENS = 12  # short outputs keep the tests fast on CPU


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    en, es = _corpus()
    folder = build_tiny_marian(en, es, tmp_path_factory.mktemp("mt") / "en-es", vocab_size=300)
    return load_translator(str(folder), device="cpu")


@pytest.fixture(scope="module")
def one_at_a_time(translator) -> list[str]:
    model, tokenizer = translator
    return [
        translate_sentences([s], model, tokenizer, max_new_tokens=NEW_TOKENS, progress=False)[0].text for s in SOURCES
    ]


def test_batched_translation_equals_one_sentence_at_a_time(translator, one_at_a_time):
    model, tokenizer = translator
    # The tiny model's output depends on its input, so a mix-up between sentences would show.
    assert len(set(one_at_a_time)) > len(SOURCES) // 2
    for batch_size in (4, 16):
        batched = translate_sentences(
            SOURCES, model, tokenizer, batch_size=batch_size, max_new_tokens=NEW_TOKENS, progress=False
        )
        assert [r.text for r in batched] == one_at_a_time


def test_results_come_back_in_input_order(translator, one_at_a_time):
    model, tokenizer = translator
    order = [3, 0, 10, 1, 7, 2]
    results = translate_sentences(
        [SOURCES[i] for i in order], model, tokenizer, batch_size=2, max_new_tokens=NEW_TOKENS, progress=False
    )
    assert [r.text for r in results] == [one_at_a_time[i] for i in order]
    for i, r in zip(order, results):
        assert r.input_length == len(tokenizer(detokenize(SOURCES[i]))["input_ids"])
        assert r.tokens == word_tokenize(r.text)
        assert 0 < r.output_length <= NEW_TOKENS


def test_long_sources_are_truncated_and_flagged(translator):
    model, tokenizer = translator
    short, long_ = SOURCES[0], SOURCES[4]
    limit = 32
    assert len(tokenizer(detokenize(short))["input_ids"]) <= limit < len(tokenizer(detokenize(long_))["input_ids"])
    results = translate_sentences(
        [short, long_], model, tokenizer, max_input_length=limit, max_new_tokens=NEW_TOKENS, progress=False
    )
    assert [r.truncated for r in results] == [False, True]
    assert results[1].input_length > limit and results[1].text

    # Longer than the model's own position table (256) with a generous max_input_length: still no error.
    huge = long_ * 40
    [result] = translate_sentences([huge], model, tokenizer, max_input_length=10_000, max_new_tokens=4, progress=False)
    assert result.truncated and result.input_length > model.config.max_position_embeddings


def test_empty_sentences_pass_through_without_reaching_the_model(translator, monkeypatch, one_at_a_time):
    model, tokenizer = translator
    sent_to_model: list[int] = []
    generate = model.generate

    def spy(**kwargs):
        sent_to_model.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    results = translate_sentences(
        [[], SOURCES[0], [], SOURCES[2], []], model, tokenizer, max_new_tokens=NEW_TOKENS, progress=False
    )
    assert [r.empty for r in results] == [True, False, True, False, True]
    assert [r.text for r in results] == ["", one_at_a_time[0], "", one_at_a_time[2], ""]
    assert results[0].tokens == [] and results[0].output_length == 0
    assert sum(sent_to_model) == 2

    sent_to_model.clear()
    assert [r.empty for r in translate_sentences([[], []], model, tokenizer, progress=False)] == [True, True]
    assert sent_to_model == []


def test_progress_bar_does_not_change_results(translator, one_at_a_time):
    model, tokenizer = translator
    results = translate_sentences(SOURCES[:3], model, tokenizer, max_new_tokens=NEW_TOKENS, progress=True)
    assert [r.text for r in results] == one_at_a_time[:3]


def test_unknown_target_language_token_is_a_user_error(translator):
    model, tokenizer = translator
    with pytest.raises(UserError, match="spa_Latn.*not in the translation model's vocabulary"):
        translate_sentences(SOURCES[:1], model, tokenizer, target_lang_token="spa_Latn", progress=False)


def test_hub_name_without_network_gives_one_clear_user_error():
    name = default_model_name("en", "xx")
    assert name == "Helsinki-NLP/opus-mt-en-xx"
    with pytest.raises(UserError) as err:
        load_translator(name)
    message = str(err.value)
    assert "'Helsinki-NLP/opus-mt-en-xx'" in message
    assert "no download is possible here" in message
    assert "save_pretrained" in message and "translate.model" in message


def test_bad_local_folders_give_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_translator(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no config.json"):
        load_translator(str(tmp_path))


# --------------------------------------------------------------------------- scores


def test_scores_reward_matching_translations():
    refs = ["José vive en Madrid .", "La oficina está en Bogotá .", ""]
    corpus, per_sentence = score_translations(refs, refs)
    assert corpus["bleu"] == pytest.approx(100.0) and corpus["chrf"] == pytest.approx(100.0)
    assert per_sentence == pytest.approx([100.0, 100.0, 100.0])
    assert "tok:13a" in corpus["bleu_signature"]

    worse, worse_per_sentence = score_translations(["José vive en Madrid .", "Nada que ver aquí", "algo"], refs)
    assert worse["chrf"] < 100 and worse["bleu"] < 100
    assert worse_per_sentence[0] == pytest.approx(100.0)
    assert worse_per_sentence[1] < 30 and worse_per_sentence[2] < 30

    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        score_translations(refs[:2], refs)


def test_round_trip_chrf_ranks_faithful_back_translations_higher():
    sources = ["John lives in Madrid .", "Mary visited London yesterday ."]
    corpus, per_sentence = round_trip_chrf(sources, ["John lives in Madrid .", "Something else entirely"])
    assert per_sentence[0] == pytest.approx(100.0) and per_sentence[1] < 30
    assert 0 < corpus < 100


# --------------------------------------------------------------------------- parallel file


def test_parallel_lines_stay_paired_through_the_translate_stage(cli, tmp_path):
    """A line-aligned translation file with an empty line in the middle and a \\u2028 inside a
    line: every later translation still pairs with its own source sentence, the empty one is
    marked empty (and not kept), and the count check counts "\\n"-ended lines."""
    import json

    import pandas as pd

    from concner.tasks.text.conll import read_conll
    from concner.tasks.engine.store import ArtifactStore
    from tests.conftest import SAMPLES

    n = 8
    english, _ = read_conll(SAMPLES / "en_train.conll")
    spanish, _ = read_conll(SAMPLES / "es_train.conll")
    source = tmp_path / "en.conll"
    source.write_text("\n".join("\n".join(f"{t}\t{g}" for t, g in zip(s.tokens, s.tags)) + "\n" for s in english[:n]),
                      encoding="utf-8")
    lines = [detokenize(s.tokens) for s in spanish[:n]]
    lines[3] = ""  # an empty translation
    words = lines[5].split(" ")
    lines[5] = " ".join(words[:2]) + "\u2028" + " ".join(words[2:])  # a Unicode line separator inside a line
    parallel = tmp_path / "es.txt"
    parallel.write_bytes("\r\n".join(lines[:4]).encode() + b"\r\n" + "\n".join(lines[4:]).encode() + b"\n")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "name": "lines", "target_lang": "es", "data": {"source_train": str(source)},
        "translate": {"backend": "parallel", "parallel_file": str(parallel)},
    }), encoding="utf-8")
    store = tmp_path / "store"

    code, out, err = cli("run", config, "--until", "translate", "--store", store)
    assert code == 0, err[-2000:]
    run = ArtifactStore(store).list_runs()[-1]
    frame = pd.read_parquet(store / "stages" / "translate" / run["stages"]["translate"]["key"] / "translations.parquet")
    assert list(frame["id"]) == list(range(n))
    for row in frame.itertuples():
        assert row.source_text == detokenize(english[row.id].tokens)
        assert list(row.translation_tokens) == word_tokenize(lines[row.id])
        assert row.empty == (row.id == 3) and row.kept == (row.id != 3)
    assert list(frame.loc[5, "translation_tokens"]) == spanish[5].tokens  # \\u2028 only separates words
    assert list(frame.loc[7, "translation_tokens"]) == spanish[7].tokens

    # one line fewer (the last) is a count mismatch, named with both files, before any stage runs
    parallel.write_bytes(parallel.read_bytes().rsplit(b"\n", 2)[0] + b"\n")
    code, out, err = cli("run", config, "--until", "translate", "--store", tmp_path / "store2")
    assert code == 2 and "Traceback" not in out + err
    assert f"{parallel} has 7 lines but the source file {source} has 8 sentences" in err
    assert not (tmp_path / "store2" / "stages").exists()


# --------------------------------------------------------------------------- word tokenization

ORDINARY = [
    "John lives in Madrid.",
    "¿Dónde está la oficina de Telefónica en Bogotá?",
    "¡Hola, José! El niño vive en Málaga...",
    'He said "hello" to the U.S. ambassador (twice).',
    "It costs $1,000 or 3.5% more, and/or 12:30 on 1/2.",
    "L'Équipe interviewed O'Neill about the well-known 5-3 win -- again.",
    "«Hola», dijo María; luego: [nada] {nada}.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_detokenize_inverts_word_tokenize_on_ordinary_text(text):
    tokens = word_tokenize(text)
    assert detokenize(tokens) == text
    assert word_tokenize(detokenize(tokens)) == tokens


def test_word_tokenize_rule():
    assert word_tokenize("¿Dónde está l'Equipe?") == ["¿", "Dónde", "está", "l'Equipe", "?"]
    assert word_tokenize("Costs 3.5 and 1,000.") == ["Costs", "3.5", "and", "1,000", "."]
    assert word_tokenize("the U.S. and well-known") == ["the", "U.S.", "and", "well-known"]
    assert word_tokenize("Madrid, 2024.") == ["Madrid", ",", "2024", "."]
    decomposed = "Jose\u0301 vive"  # é as e + combining acute
    assert word_tokenize(decomposed) == ["Jose\u0301", "vive"]
    assert word_tokenize("  Madrid\u00a0\u200bLondon \t") == ["Madrid", "London"]
    assert word_tokenize("") == []


def test_detokenize_joins_conll_style_tokens():
    tokens = ["Germany", "'s", "team", "does", "n't", "play", "(", "Reuters", ")", "-", '"', "Hi", '"', "."]
    assert detokenize(tokens) == "Germany's team doesn't play (Reuters) - \"Hi\"."
    assert detokenize([]) == ""
