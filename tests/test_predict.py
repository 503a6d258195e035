"""`concner predict MODEL FILE`: any exported token classifier tags a file into readable IOB2 CoNLL."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from concner.models.tiny import build_tiny_encoder
from concner.tasks.text.conll import read_conll, read_unlabeled
from concner.tasks.text.tags import parse_tag
from concner.tasks.text.wordtok import word_tokenize
from tests.conftest import SAMPLES
from tests.demo_store import run_cli

SENTENCES = ["Pedro Sánchez visitó Madrid el lunes.", "La ONU se reunió en Ginebra con Iberojet."]


def assert_iob2(tags: list[str], labels: set[str]) -> None:
    """Every tag is one of the model's labels and every I-X continues an X entity."""
    previous = "O"
    for tag in tags:
        assert tag in labels, tag
        prefix, typ = parse_tag(tag)
        if prefix == "I":
            assert previous != "O" and parse_tag(previous)[1] == typ, (previous, tag)
        previous = tag


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return build_tiny_encoder(SENTENCES * 3, tmp_path_factory.mktemp("encoder") / "enc", vocab_size=200)


def plain_hf_tagger(encoder, out, labels: list[str], always: str | None = None):
    """A transformers token-classification folder (no concner sentence head). With `always`, its
    classifier predicts that label for every subword."""
    model = AutoModelForTokenClassification.from_pretrained(
        str(encoder), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)})
    if always is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(0).index_fill_(0, torch.tensor([labels.index(always)]), 10.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(encoder)).save_pretrained(out)
    return out


def test_demo_student_tags_a_text_file_into_conll_beside_it(demo_run, tmp_path):
    text = tmp_path / "news.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    model = demo_run.stage_dir("distill") / "model"
    code, out, err = run_cli("predict", model, text)
    assert code == 0, err
    written = tmp_path / "news.pred.conll"  # the documented default: FILE stem + .pred.conll
    assert str(written) in out and "2 sentences" in out
    sentences, _ = read_conll(written)
    assert [s.tokens for s in sentences] == [word_tokenize(line) for line in SENTENCES]
    labels = set(demo_run.manifest("distill")["metrics"]["labels"])
    for s in sentences:
        assert_iob2(s.tags, labels)


def test_demo_teacher_tags_a_labeled_conll_file_ignoring_its_tags(demo_run, tmp_path):
    gold, _ = read_conll(SAMPLES / "es_test.conll")
    source = tmp_path / "test.conll"
    source.write_text((SAMPLES / "es_test.conll").read_text(encoding="utf-8"), encoding="utf-8")
    code, out, err = run_cli("predict", demo_run.stage_dir("train") / "model", source, "--out", tmp_path / "o" / "p.conll",
                             "--batch-size", "7")
    assert code == 0, err
    assert "tag column was ignored" in out
    predicted, _ = read_conll(tmp_path / "o" / "p.conll")
    assert [s.tokens for s in predicted] == [s.tokens for s in gold]
    labels = set(demo_run.manifest("train")["metrics"]["labels"])
    for s in predicted:
        assert_iob2(s.tags, labels)


def test_out_dash_writes_only_conll_to_stdout(demo_run, tmp_path):
    text = tmp_path / "one.txt"
    text.write_text(SENTENCES[0] + "\n", encoding="utf-8")
    code, out, err = run_cli("predict", demo_run.stage_dir("distill") / "model", text, "--out", "-")
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines() if line]
    assert [r[0] for r in rows] == word_tokenize(SENTENCES[0]) and all(len(r) == 2 for r in rows)
    assert "1 sentences" in err  # the summary goes to stderr, so stdout pipes cleanly
    assert not (tmp_path / "one.pred.conll").exists()


def test_plain_transformers_folder_tags_with_valid_iob2_and_o_for_cut_words(tiny_encoder, tmp_path):
    # "O" is not label 0 here, and the classifier says I-PER everywhere: the output must still be
    # valid IOB2 (B-PER first), and words cut off by --max-length must get O, not label 0 (B-LOC).
    labels = ["B-LOC", "I-LOC", "I-PER", "O", "B-PER"]
    model = plain_hf_tagger(tiny_encoder, tmp_path / "hf", labels, always="I-PER")
    assert not (model / "sentence_head.json").exists()
    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    code, out, err = run_cli("predict", model, text, "--max-length", "6")
    assert code == 0, err
    assert "transformers model" in out and "longer than 6 subwords" in out
    sentences, _ = read_conll(tmp_path / "in.pred.conll")
    tokenizer = AutoTokenizer.from_pretrained(model)
    for s in sentences:
        assert_iob2(s.tags, set(labels))
        covered = {w for w in tokenizer(s.tokens, is_split_into_words=True, truncation=True, max_length=6).word_ids()
                   if w is not None}
        assert s.tags == ["B-PER" if i == 0 else "I-PER" if i in covered else "O" for i in range(len(s.tokens))]


def test_unusable_models_are_user_errors(tiny_encoder, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text(SENTENCES[0] + "\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    not_tags = plain_hf_tagger(tiny_encoder, tmp_path / "generic", ["LABEL_0", "LABEL_1"])
    cases = {
        tmp_path / "missing": "model folder not found",
        tmp_path / "empty": "config.json is missing",
        tiny_encoder: "not a token classifier",  # a bare encoder (BertModel) has no NER head
        not_tags: "not IOB/BIOES entity tags",
    }
    for folder, message in cases.items():
        code, out, err = run_cli("predict", folder, text)
        assert code == 2 and message in err, (folder, err)
        assert "Traceback" not in err
    assert not (tmp_path / "in.pred.conll").exists()


def test_bad_input_files_are_user_errors(tiny_encoder, tmp_path):
    model = plain_hf_tagger(tiny_encoder, tmp_path / "hf", ["O", "B-PER", "I-PER"])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Sánchez visitó Madrid\n".encode("latin-1"))
    for path, message in ((tmp_path / "nope.txt", "file not found"), (empty, "empty"), (latin1, "not UTF-8")):
        code, _, err = run_cli("predict", model, path)
        assert code == 2 and message in err and str(path.name) in err, err
    code, _, err = run_cli("predict", model, latin1, "--out", latin1)
    assert code == 2
    code, _, err = run_cli("predict", model, empty, "--format", "xml")
    assert code == 2 and "--format" in err


def test_one_sentence_conll_file_reads_as_conll_with_format_option(tiny_encoder, tmp_path):
    # without a blank line a CoNLL file looks like one sentence per line; --format conll says otherwise
    model = plain_hf_tagger(tiny_encoder, tmp_path / "hf", ["O", "B-PER", "I-PER"])
    conll = tmp_path / "one.conll"
    conll.write_text("Pedro\tB-PER\nSánchez\tI-PER\nvisitó\tO\n", encoding="utf-8")
    assert len(read_unlabeled(conll)[0]) == 3  # auto-detection: three "sentences"
    code, out, err = run_cli("predict", model, conll, "--format", "conll")
    assert code == 0, err
    sentences, _ = read_conll(tmp_path / "one.pred.conll")
    assert [s.tokens for s in sentences] == [["Pedro", "Sánchez", "visitó"]]
