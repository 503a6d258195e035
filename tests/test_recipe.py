"""The training recipe: the teacher guard, selection without target labels, balanced losses,
pseudo-labels that invent nothing for words the teacher never saw."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from concner.models.ner_model import ConcNerModel
from concner.models.tiny import build_tiny_encoder
from concner.tasks.engine.config_loading import config_from_dict
from concner.tasks.text.corpus import Sentence
from concner.tasks.engine.errors import UserError
from concner.tasks.training.evaluate import predict_probs
from concner.tasks.stages.train import TeacherDidNotLearn, check_teacher
from concner.tasks.training.train import FitSettings, TeacherLoss
from tests.conftest import REPO

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
DEV = [Sentence(0, ["Ana", "vive", "en", "Lima"], ["B-PER", "O", "O", "B-LOC"]),
       Sentence(1, ["Juan", "Pérez", "llegó"], ["B-PER", "I-PER", "O"])]
LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ConcNerModel:
    texts = [" ".join(s.tokens) for s in DEV] + ["Ana y Juan viven en Lima y en Madrid ."]
    folder = build_tiny_encoder(texts, tmp_path_factory.mktemp("enc") / "tiny", hidden_size=32)
    torch.manual_seed(0)
    return ConcNerModel.from_encoder(folder, LABELS, proj_dim=8).eval()


def _force_predictions(model: ConcNerModel, label: str) -> None:
    classifier = model.token_model.classifier
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.fill_(-10.0)
        classifier.bias[LABELS.index(label)] = 10.0


def test_guard_stops_a_teacher_that_predicts_only_o(model):
    _force_predictions(model, "O")
    with pytest.raises(TeacherDidNotLearn) as err:
        check_teacher(model, "source_dev", DEV, max_length=32, min_f1=0.05, settings=FitSettings(learning_rate=3e-5),
                      steps=96, log=LOG)
    message = str(err.value)
    assert "predicts 0 entities for 3 gold ones" in message and "source_dev" in message
    assert "learning rate 3e-05" in message and "96 optimizer steps" in message
    assert "train.min_selection_f1=null" in message  # what to do to go on anyway


def test_guard_passes_a_teacher_that_finds_entities_and_can_be_switched_off(model):
    _force_predictions(model, "B-PER")  # every word a person: F1 > 0, entities found
    figures = check_teacher(model, "source_dev", DEV, max_length=32, min_f1=0.05, settings=FitSettings(), steps=1,
                            log=LOG)
    assert figures["split"] == "source_dev" and figures["predicted_entities"] == 7 and figures["f1"] > 0.05
    _force_predictions(model, "O")
    assert check_teacher(model, "source_dev", DEV, max_length=32, min_f1=None, settings=FitSettings(), steps=1,
                         log=LOG)["f1"] == 0.0


def test_selection_on_target_dev_needs_a_target_dev_file():
    raw = {"target_lang": "es", "data": {"source_train": "x.conll"}}
    with pytest.raises(UserError, match="select_on: target_dev needs data.target_dev"):
        config_from_dict(raw, base_dir=REPO, overrides=["train.select_on=target_dev"])
    assert config_from_dict(raw, base_dir=REPO).train.select_on == "source_dev"


def test_demo_selects_on_source_dev_and_reports_only_other_sets(demo_run, tmp_path):
    train = demo_run.manifest("train")["metrics"]
    assert train["dev_set"] == "source_dev" and train["selection"]["split"] == "source_dev"
    assert set(train["scores"]) == {"target_dev", "target_test"}  # the selection split is no result
    from concner.flows.report import write_report
    from concner.tasks.engine.store import ArtifactStore

    write_report(demo_run.record, ArtifactStore(demo_run.store), tmp_path / "r.html")
    assert "model selection: <b>selected on source_dev</b>" in (tmp_path / "r.html").read_text()


def test_without_source_dev_a_dev_split_is_held_out_before_sampling(cli, tmp_path):
    config = tmp_path / "run.yaml"
    samples = REPO / "data" / "samples"
    config.write_text(f"""name: holdout
target_lang: es
data:
  source_train: {samples / 'en_train.conll'}
  target_unlabeled: {samples / 'es_unlabeled.txt'}
ingest:
  sample_size: 100
  source_dev_size: 25
""")
    code, _, err = cli("run", config, "--store", tmp_path / "store", "--until", "ingest")
    assert code == 0, err[-2000:]
    from concner.tasks.engine.artifacts import load_split
    from concner.tasks.engine.store import ArtifactStore

    store = ArtifactStore(tmp_path / "store")
    record = store.list_runs()[-1]
    folder = store.stage_dir("ingest", record["stages"]["ingest"]["key"])
    train, dev = load_split(folder, "source_train"), load_split(folder, "source_dev")
    assert len(train) == 100 and len(dev) == 25  # 25 <= a tenth of the 300-sentence file
    assert not {s.id for s in train} & {s.id for s in dev}


def test_balanced_contrastive_terms_never_outweigh_cross_entropy_at_the_encoder(model):
    torch.manual_seed(0)
    torch.nn.init.normal_(model.token_model.classifier.weight, std=0.02)  # other tests zeroed it
    model.train()
    batch = [(DEV[0], Sentence(0, ["Ana", "lives", "in", "Lima"], ["B-PER", "O", "O", "B-LOC"])),
             (DEV[1], Sentence(1, ["Juan", "Pérez", "arrived"], ["B-PER", "I-PER", "O"]))]
    ids = {label: i for i, label in enumerate(LABELS)}
    generator = torch.Generator().manual_seed(0)
    terms = TeacherLoss(ids, 32, lambda_tcl=1.0, lambda_lcl=1.0, balance="grad_norm")(model, batch, generator)
    assert 0 < float(terms["tcl_scale"]) <= 1 and 0 < float(terms["lcl_scale"]) <= 1
    plain = TeacherLoss(ids, 32, lambda_tcl=1.0, lambda_lcl=1.0, balance="none")(model, batch, generator)
    assert "tcl_scale" not in plain
    none = TeacherLoss(ids, 32, lambda_tcl=0.0, lambda_lcl=0.0)(model, batch, generator)
    assert "tcl" not in none and "lcl" not in none  # a term with lambda 0 is not computed at all
    model.eval()


def test_words_past_max_length_get_no_invented_label(model):
    long = ["Ana"] + ["vive"] * 40
    probs = predict_probs(model, [long], max_length=8, uncovered_nan=True)[0]
    covered = ~np.isnan(probs).any(axis=-1)
    assert covered[:3].all() and not covered[-30:].any()
    plain = predict_probs(model, [long], max_length=8)[0]
    assert (plain[-1] == np.eye(len(LABELS))[0]).all()  # what a tagger outputs: O

    from concner.tasks.training.distill_loss import DistillLoss

    teacher = np.nan_to_num(probs, nan=0.0)
    teacher[~covered] = np.nan
    clipped = DistillLoss(max_length=64)(model, [(Sentence(0, long, None), teacher)], None)["loss"]
    covered_only = DistillLoss(max_length=64)(model, [(Sentence(0, long[: int(covered.sum())], None),
                                                       teacher[covered])], None)["loss"]
    assert torch.isfinite(clipped) and abs(float(clipped) - float(covered_only)) < 0.05


def test_pseudo_labels_leave_out_the_teachers_translations(cli, tmp_path):
    """Unlabeled text = the parallel file itself: the sampled sentences' translations are dropped."""
    from tests.demo_store import FAST
    from concner.tasks.engine.store import ArtifactStore

    store = tmp_path / "store"
    code, _, err = cli("run", REPO / "configs" / "demo.yaml", "--store", store, "--until", "pseudo_label", *FAST,
                       "--set", "ingest.sample_size=100", "--set", "data.target_unlabeled=../data/samples/es_train.conll",
                       "--set", "data.unlabeled_format=conll")
    assert code == 0, err[-2000:]
    record = ArtifactStore(store).list_runs()[-1]
    metrics = ArtifactStore(store).manifest("pseudo_label", record["stages"]["pseudo_label"]["key"])["metrics"]
    projected = ArtifactStore(store).manifest("project", record["stages"]["project"]["key"])["metrics"]
    assert metrics["excluded_translations"] == projected["kept_sentences"] == 100
    assert metrics["sentences"] == 300 - 100


def test_progress_is_logged_as_lines_when_not_on_a_terminal(monkeypatch, capsys):
    from concner.tasks.engine.progress import LOG_INTERVAL_ENV, progress_bar

    monkeypatch.setenv(LOG_INTERVAL_ENV, "0")
    with progress_bar("distilling student", 3) as advance:
        for step in range(3):
            advance(1, status=f"loss {1.0 / (step + 1):.3f}")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("distilling student: 1/3 (") and "ETA" in lines[0] and "loss 1.000" in lines[0]
    assert lines[-1].startswith("distilling student: 3/3 (") and "loss 0.333" in lines[-1]


def _recipe_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_script", REPO / "benchmarks" / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(file: str, machine: dict, rows: dict, runs: dict) -> dict:
    return {"file": file, "machine": machine, "wall_seconds": 150.0, "setting": {"seeds": [13, 14]},
            "runs": runs, "rows": {f"{size}/{row}": {"size": size, "row": row, "f1_per_seed": f1s,
                                                      "mean": None if None in f1s else sum(f1s) / len(f1s),
                                                      "stdev": None}
                                   for (size, row), f1s in rows.items()}}


def test_the_readme_table_keeps_each_file_and_device_in_a_block_of_its_own():
    """The recipe table (docs/benchmarks.md) is written from the result files: rows of one N stay
    together, a CPU file's rows are not mixed in among a GPU file's, each row says its device, and
    a seed the guard stopped is shown as such, not as a score."""
    gpu = _result("recipe_gpu.json", {"cuda_device": "NVIDIA H200", "cpu_count": 16},
                  {(100, "ConCNER teacher"): [0.4, 0.38], (100, "source only"): [0.25, 0.26],
                   (500, "CE + translations"): [0.47, 0.48]},
                  {"100/13": {}, "100/14": {}, "500/13": {}, "500/14": {}})
    cpu = _result("recipe_cpu_n100.json", {"cuda_device": None, "cpu_count": 2},
                  {(100, "source only"): [0.24, None], (100, "student"): [0.39, 0.40]},
                  {"100/13": {}, "100/14": {"source only": {"f1": None, "error": "stopped"}}})
    lines = _recipe_script().markdown_table([gpu, cpu]).splitlines()[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [(c[0], c[1], c[4].split("(")[1]) for c in cells] == [
        ("100", "source only", "recipe_cpu_n100.json)"), ("100", "student", "recipe_cpu_n100.json)"),
        ("100", "source only", "recipe_gpu.json)"), ("100", "ConCNER teacher", "recipe_gpu.json)"),
        ("500", "CE + translations", "recipe_gpu.json)")]
    assert cells[0][2] == "13: 24.0 / 14: guard stopped it" and cells[0][3] == "-"
    assert cells[0][4].startswith("2 min, 2-core CPU") and cells[2][4].startswith("2 min, NVIDIA H200")
    assert cells[3][2] == "13: 40.0 / 14: 38.0" and cells[3][3] == "39.0"


def test_the_readme_table_is_the_one_the_result_files_give():
    """The recipe table in docs/benchmarks.md is generated (`recipe.py --update-readme`), never
    edited by hand: it must equal what the committed result files give."""
    script = _recipe_script()
    table = script.markdown_table(script.table_results(REPO / "benchmarks" / "results"))
    start, end = script.README_MARKERS
    doc = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert doc.split(start, 1)[1].split(end, 1)[0].strip() == table
