"""`concner inspect RUN --stage S`: what each stage's view tells a user, on one finished demo run,
plus the sorting and highlighting rules on small handmade artifacts."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from concner.flows.views import (
    InspectOptions,
    loss_summary,
    show_evaluate,
    show_pseudo_label,
    translation_rows,
)
from concner.tasks.engine.errors import UserError
from concner.tasks.text.wordtok import word_tokenize


@pytest.fixture
def inspect(cli, demo_run):
    """`concner inspect <the demo run> --stage STAGE ARGS...` -> (exit code, stdout, stderr)."""

    def run(stage: str, *args: object) -> tuple[int, str, str]:
        return cli("inspect", demo_run.record["run_id"], "--store", demo_run.store, "--stage", stage, *args)

    return run


def table_ids(out: str) -> list[int]:
    """Ids in a table's first column, in display order (continuation lines of wrapped rows have none)."""
    return [int(m) for m in re.findall(r"^│\s*(\d+) │", out, flags=re.MULTILINE)]


def render(show, folder, manifest, options=InspectOptions()) -> str:
    buffer = io.StringIO()
    show(Console(file=buffer, width=120, color_system=None), folder, manifest, options.sentence_id, options)
    return buffer.getvalue()


# -- every stage of the demo run ------------------------------------------------------------------


def test_ingest_views_list_the_source_and_target_splits(inspect):
    code, out, err = inspect("ingest", "--limit", "2")
    assert code == 0, err
    assert "source_train" in out and "source_dev" in out and "target_unlabeled" not in out
    assert len(re.findall(r"^#\d+ ", out, flags=re.MULTILINE)) == 2
    code, out, err = inspect("ingest_target", "--limit", "3")
    assert code == 0, err
    assert "target_unlabeled" in out and "target_test samples" in out and "source_train" not in out
    assert len(re.findall(r"^#\d+ ", out, flags=re.MULTILINE)) == 3


def test_translate_view_shows_counts_and_side_by_side_rows(inspect, demo_run):
    code, out, err = inspect("translate")
    assert code == 0, err
    frame = pd.read_parquet(demo_run.stage_dir("translate") / "translations.parquet")
    for figure in ("empty translations", "truncated inputs", "dropped below min_chrf", "parallel"):
        assert figure in out
    assert table_ids(out) == list(frame["id"][:10])  # default: the first 10 by id
    first = frame.iloc[0]
    assert word_tokenize(first["source_text"])[0] in out and first["translation_tokens"][0] in out


def test_translate_sorted_by_length_puts_the_longest_sources_first(inspect, demo_run):
    code, out, err = inspect("translate", "--sort", "length", "--limit", "4")
    assert code == 0, err
    frame = pd.read_parquet(demo_run.stage_dir("translate") / "translations.parquet")
    lengths = frame["source_text"].map(lambda t: len(word_tokenize(t)))
    shown = table_ids(out)
    assert len(shown) == 4
    shown_lengths = [lengths[frame["id"] == i].item() for i in shown]
    assert shown_lengths == sorted(shown_lengths, reverse=True)
    assert shown_lengths[0] == lengths.max() and shown_lengths[-1] >= sorted(lengths, reverse=True)[3]


def test_translate_sort_by_chrf_without_scores_is_a_user_error(inspect):
    # the demo translates with the parallel backend and no reference: there is no chrF to sort by
    code, out, err = inspect("translate", "--sort", "chrf")
    assert code == 2 and "reference_file" in err


def test_project_view_counts_outcomes_and_scores_the_projection(inspect, demo_run):
    code, out, err = inspect("project")
    assert code == 0, err
    metrics = demo_run.manifest("project")["metrics"]
    for outcome, n in metrics["outcomes"].items():
        assert outcome in out
    total = sum(metrics["outcomes"].values())
    assert re.search(rf"│\s*ALL .*│\s+{total} │\s+{100 * metrics['projection_rate']:.1f}\s*│", out)
    assert "projection vs gold" in out
    assert f"{100 * metrics['projection_quality']['f1']:.1f}" in out
    for label, rate in metrics["projection_rate_by_type"].items():
        assert re.search(rf"│\s*{label}\s+│.*│\s+{100 * rate:.1f}\s*│", out), label
    assert len(re.findall(r"^#\d+ \(kept", out, flags=re.MULTILINE)) == 3  # the first few sentences


def test_project_one_sentence_shows_both_sides_links_and_each_entity_outcome(inspect, demo_run):
    frame = pd.read_parquet(demo_run.stage_dir("project") / "projected.parquet")
    # a sentence where an entity did not simply project: the case a user inspects
    row = next(r for r in frame.itertuples() if any(e["outcome"] != "projected" for e in json.loads(r.entities)))
    code, out, err = inspect("project", "--id", row.id)
    assert code == 0, err
    assert f"#{row.id} " in out
    for token in [*row.source_tokens, *row.target_tokens]:
        assert token in out
    for s, t in row.alignment:
        assert f"{row.source_tokens[s]}→{row.target_tokens[t]}" in out
    linked = {int(s) for s, _ in row.alignment}
    assert ("no link:" in out) == any(i not in linked for i in range(len(row.source_tokens)))
    for e in json.loads(row.entities):
        assert f"{e['outcome']}:" in out
        assert " ".join(row.source_tokens[e["source_start"] : e["source_end"]]) in out


def test_project_sorted_by_failed_shows_lost_entities_first(inspect, demo_run):
    code, out, err = inspect("project", "--sort", "failed", "--limit", "1")
    assert code == 0, err
    frame = pd.read_parquet(demo_run.stage_dir("project") / "projected.parquet")
    failed = [sum(e["outcome"] in ("collided", "unaligned") for e in json.loads(x)) for x in frame["entities"]]
    worst = int(frame["id"].iloc[int(np.argmax(failed))])
    assert re.findall(r"^#(\d+) \(", out, flags=re.MULTILINE) == [str(worst)]
    assert "unaligned:" in out or "collided:" in out


def test_unknown_sentence_id_and_unusable_options_are_user_errors(inspect):
    code, _, err = inspect("project", "--id", 99999)
    assert code == 2 and "no sentence with id 99999" in err
    code, _, err = inspect("train", "--sort", "confidence")
    assert code == 2 and "--sort" in err
    code, _, err = inspect("pseudo_label", "--sort", "chrf")
    assert code == 2 and "confidence" in err  # names the keys that do work
    code, _, err = inspect("evaluate", "--id", 1)
    assert code == 2 and "--id" in err


@pytest.mark.parametrize("stage", ["train", "distill"])
def test_training_views_show_scores_epochs_and_loss_curves(inspect, demo_run, stage):
    code, out, err = inspect(stage)
    assert code == 0, err
    metrics = demo_run.manifest(stage)["metrics"]
    assert f"{metrics['best_epoch']}*" in out  # the best epoch is marked in the epochs table
    for split, scores in metrics["scores"].items():
        assert split in out
        for label in scores["per_type"]:
            assert re.search(rf"│ {split}\s+│ {label}\s+│", out)
    steps = pd.read_parquet(demo_run.stage_dir(stage) / "steps.parquet")
    terms = [c for c in steps.columns if c not in ("step", "epoch", "lr")]
    assert terms == (["ce_source", "ce_target", "tcl", "tcl_scale", "lcl", "lcl_scale", "loss"] if stage == "train"
                     else ["distill", "loss"])
    for term in terms:
        first, last, low = steps[term].iloc[0], steps[term].iloc[-1], steps[term].min()
        assert re.search(rf"│ {term}\s+│\s+{first:.4f} │\s+{last:.4f} │\s+{low:.4f} │", out), term


def test_pseudo_label_view_shows_counts_histogram_and_least_confident_first(inspect, demo_run):
    code, out, err = inspect("pseudo_label", "--sort", "confidence", "--limit", "3")
    assert code == 0, err
    metrics = demo_run.manifest("pseudo_label")["metrics"]
    assert f"{metrics['kept']} / {metrics['dropped']}" in out
    for count, low in zip(metrics["confidence_histogram"]["counts"], metrics["confidence_histogram"]["edges"]):
        assert re.search(rf"{low:.2f}-\d\.\d\d .* {count}$", out, flags=re.MULTILINE)
    frame = pd.read_parquet(demo_run.stage_dir("pseudo_label") / "pseudo_labels.parquet")
    lowest = frame.sort_values(["confidence", "id"]).head(3)
    assert [int(i) for i in re.findall(r"^#(\d+) conf", out, flags=re.MULTILINE)] == list(lowest["id"])


def test_evaluate_view_puts_teacher_and_student_side_by_side(inspect, demo_run):
    code, out, err = inspect("evaluate")
    assert code == 0, err
    scores = pd.read_parquet(demo_run.stage_dir("evaluate") / "scores.parquet")
    for split in scores["set"].unique():
        assert f"{split}: teacher vs student" in out
    for col in ("T F1", "S F1", "Δ F1"):
        assert col in out
    support = int(scores[(scores["model"] == "teacher") & (scores["set"] == "target_test")]["support"].sum())
    assert re.search(rf"│ ALL .*│\s+{support} │", out)  # the gold entity count of the whole set


# -- rules on handmade artifacts --------------------------------------------------------------------


@pytest.fixture
def translations() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [0, 1, 2, 3, 4],
        "source_text": ["A b c.", "One.", "A much longer source sentence here.", "Two words", "X y."],
        "translation_text": ["a", "b", "c", "d", "e"],
        "chrf": [55.0, 12.5, np.nan, 80.0, 12.5],
    })


def ids(frame: pd.DataFrame) -> list[int]:
    return list(frame["id"])


def test_sorting_translations_by_chrf_puts_the_worst_first_and_unscored_last(translations):
    assert ids(translation_rows(translations, InspectOptions(sort="chrf"))) == [1, 4, 0, 3, 2]  # ties by id
    assert ids(translation_rows(translations, InspectOptions(sort="chrf", reverse=True))) == [3, 0, 1, 4, 2]
    assert ids(translation_rows(translations, InspectOptions(sort="chrf", limit=2))) == [1, 4]


def test_sorting_translations_by_length_and_id(translations):
    # words: 4, 2, 7, 2, 3 (punctuation counts as a word, as everywhere in concner)
    assert ids(translation_rows(translations, InspectOptions(sort="length"))) == [2, 0, 4, 1, 3]
    assert ids(translation_rows(translations, InspectOptions())) == [0, 1, 2, 3, 4]
    assert ids(translation_rows(translations, InspectOptions(reverse=True, limit=2))) == [4, 3]
    assert ids(translation_rows(translations, InspectOptions(sentence_id=3, sort="chrf"))) == [3]


def test_sorting_translations_needs_a_score_and_a_known_id(translations):
    with pytest.raises(UserError, match="no per-sentence chrF"):
        translation_rows(translations.drop(columns="chrf"), InspectOptions(sort="chrf"))
    with pytest.raises(UserError, match="no sentence with id 9"):
        translation_rows(translations, InspectOptions(sentence_id=9))
    # round-trip chrF (translate.reverse_model) is used when there is no reference chrF
    round_trip = translations.rename(columns={"chrf": "round_trip_chrf"})
    assert ids(translation_rows(round_trip, InspectOptions(sort="chrf", limit=1))) == [1]


def test_pseudo_label_sentences_show_tags_with_their_confidence(tmp_path):
    pd.DataFrame({
        "id": [0, 1],
        "tokens": [["Ana", "vive", "en", "Lima", "."], ["Hola", "."]],
        "tags": [["B-PER", "O", "O", "B-LOC", "O"], ["O", "O"]],
        "word_confidence": [np.array([0.9, 0.8, 0.8, 0.4, 0.9], dtype=np.float32), np.array([0.99, 0.99], np.float32)],
        "confidence": [0.76, 0.99],
        "entities": [2, 0],
        "kept": [True, False],
    }).to_parquet(tmp_path / "pseudo_labels.parquet")
    manifest = {"metrics": {
        "labels": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], "sentences": 2, "kept": 1, "dropped": 1,
        "entities": {"LOC": 1, "PER": 1}, "mean_confidence": 0.875,
        "confidence_histogram": {"counts": [0, 0, 0, 0, 0, 0, 0, 1, 0, 1], "edges": [i / 10 for i in range(11)]},
    }}
    out = render(show_pseudo_label, tmp_path, manifest, InspectOptions(sort="confidence"))
    assert "Ana[PER 0.90]" in out and "Lima[LOC 0.40]" in out
    assert re.search(r"#0 conf 0\.760 kept .*\n#1 conf 0\.990 dropped", out)
    assert re.search(r"0\.90-1\.00 █+ 1", out) and re.search(r"0\.00-0\.10 · 0", out)


def test_evaluate_shows_the_students_gain_per_type(tmp_path):
    rows = []
    for model, f1 in (("teacher", {"ALL": 0.5, "PER": 0.6}), ("student", {"ALL": 0.55, "PER": 0.5})):
        for label, value in f1.items():
            rows.append({"model": model, "set": "target_test", "type": label, "precision": value, "recall": value,
                         "f1": value, "support": None if label == "ALL" else 10.0})
    pd.DataFrame(rows).to_parquet(tmp_path / "scores.parquet")
    out = render(show_evaluate, tmp_path, {"metrics": {}})
    assert re.search(r"│ PER .*│\s+60\.0 │.*│\s+50\.0 │\s+-10\.0 │\s+10 │", out)
    assert re.search(r"│ ALL .*│\s+50\.0 │.*│\s+55\.0 │\s+\+5\.0 │\s+10 │", out)
    assert out.index("PER") < out.index("ALL")  # the total closes the table


def test_loss_summary_reports_first_last_and_minimum_of_every_term():
    steps = pd.DataFrame({"step": [1, 2, 3, 4], "epoch": [1, 1, 2, 2], "lr": [0.1] * 4,
                          "ce": [2.0, 1.0, 1.5, 1.2], "loss": [3.0, 2.5, 2.0, 2.2]})
    summary = loss_summary(steps).set_index("term")
    assert list(summary.index) == ["ce", "loss"]  # step, epoch and lr are not losses
    assert summary.loc["ce", ["first", "last", "min", "min_step"]].tolist() == [2.0, 1.2, 1.0, 2]
    assert summary.loc["loss", "min_step"] == 3
