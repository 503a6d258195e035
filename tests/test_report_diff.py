"""`concner report` and `concner diff` on finished demo runs.

The shared demo store is only read; runs that add to a store (a changed train.lambda_lcl, a run
stopped after project) go into one copy of it, made once for this module.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from concner.flows.diff import Change, diff_runs
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO, SAMPLES
from tests.demo_store import FAST, DemoRun, run_cli

DEMO = REPO / "configs" / "demo.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FULL_RUN_FIGURES = {"scores-f1", "train-loss", "distill-loss", "pseudo-label-confidence", "project-outcomes",
                    "translate-chrf", "ingest-entities", "timings"}


@dataclass(frozen=True)
class Variants:
    store: Path  # a copy of the demo store holding the runs below
    base: dict  # the demo run
    lcl: dict  # the same config with train.lambda_lcl=0.5
    until_project: dict  # stopped after project, translations scored against references


def latest(store: Path) -> dict:
    return ArtifactStore(store).list_runs()[-1]


@pytest.fixture(scope="module")
def variants(demo_run: DemoRun, tmp_path_factory) -> Variants:
    store = tmp_path_factory.mktemp("report-diff") / "store"
    shutil.copytree(demo_run.store, store)
    code, _, err = run_cli("run", DEMO, "--store", store, *FAST, "--set", "train.lambda_lcl=0.5")
    assert code == 0, err[-3000:]
    lcl = latest(store)
    code, _, err = run_cli("run", DEMO, "--store", store, *FAST, "--until", "project",
                           "--set", f"translate.reference_file={SAMPLES / 'es_train.conll'}")
    assert code == 0, err[-3000:]
    return Variants(store, demo_run.record, lcl, latest(store))


def figures(page: str) -> dict[str, str]:
    """figure id -> the stage it was drawn for, from the report's <figure> tags."""
    return dict(re.findall(r"<figure id='fig-([\w-]+)' data-stage='(\w+)'>", page))


def embedded_pngs(page: str) -> dict[str, bytes]:
    found = re.findall(r"<figure id='fig-([\w-]+)'[^>]*><h2>[^<]*</h2><img alt='[^']*' src='data:image/png;base64,([^']+)'>",
                       page)
    return {fig_id: base64.b64decode(data, validate=True) for fig_id, data in found}


def assert_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a truncated or corrupt file fails here
    assert image.format == "PNG" and min(image.size) > 100


def test_report_of_a_full_run_embeds_one_png_per_stage_figure(demo_run: DemoRun, tmp_path):
    out, png_dir = tmp_path / "report.html", tmp_path / "png"
    code, stdout, err = run_cli("report", demo_run.record["run_id"], "--store", demo_run.store, "--out", out,
                                "--png", png_dir)
    assert code == 0, err[-3000:]
    page = out.read_text(encoding="utf-8")
    assert set(figures(page)) == FULL_RUN_FIGURES
    pngs = embedded_pngs(page)
    # the demo translates with its bundled Spanish twins and has no references: a note, no histogram
    assert set(pngs) == FULL_RUN_FIGURES - {"translate-chrf"}
    assert "no per-sentence chrF" in page
    for data in pngs.values():
        assert_png(data)
    assert {p.stem: p.read_bytes() for p in png_dir.glob("*.png")} == pngs
    assert "src='http" not in page and "<script" not in page  # self-contained
    assert "lambda_lcl: 1.0" in page  # the config, as YAML
    assert "report.html" in stdout


def test_report_of_a_run_stopped_after_project_has_only_its_stages_figures(variants: Variants, tmp_path):
    out = tmp_path / "until-project.html"
    code, _, err = run_cli("report", variants.until_project["run_id"], "--store", variants.store, "--out", out)
    assert code == 0, err[-3000:]
    page = out.read_text(encoding="utf-8")
    assert figures(page) == {"project-outcomes": "project", "translate-chrf": "translate",
                             "ingest-entities": "ingest", "timings": "run"}
    pngs = embedded_pngs(page)
    assert set(pngs) == set(figures(page))  # with references, translations get a chrF histogram
    for data in pngs.values():
        assert_png(data)


def test_diff_of_a_changed_lambda_lcl_names_train_and_everything_downstream(variants: Variants):
    diff = diff_runs(ArtifactStore(variants.store), variants.base, variants.lcl)
    assert diff.config == [Change("train.lambda_lcl", 1.0, 0.5)]
    verdicts = {d.stage: d.verdict for d in diff.stages}
    assert verdicts == {"ingest": "same", "ingest_target": "same", "translate": "same", "adapt": "same", "project": "same",
                        "train": "own params changed",
                        "pseudo_label": "inputs changed", "distill": "inputs changed", "evaluate": "inputs changed"}
    by_stage = {d.stage: d for d in diff.stages}
    assert by_stage["train"].params == [Change("lambda_lcl", 1.0, 0.5)]
    assert by_stage["distill"].inputs == ["train", "pseudo_label"]
    assert {(s.model, s.set) for s in diff.scores} == {(m, s) for m in ("teacher", "student")
                                                       for s in ("target_dev", "target_test")}

    code, out, err = run_cli("diff", variants.base["run_id"], variants.lcl["run_id"], "--store", variants.store)
    assert code == 0, err[-3000:]
    assert "train.lambda_lcl" in out and "own params" in out and "inputs changed" in out


def test_diff_of_an_unknown_run_is_a_user_error(demo_run: DemoRun):
    code, _, err = run_cli("diff", demo_run.record["run_id"], "no-such-run", "--store", demo_run.store)
    assert code == 2 and "'no-such-run' not found" in err
