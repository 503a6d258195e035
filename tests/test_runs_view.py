"""`concner runs` at any width: full run ids, and an F1 column that has projection F1 for a run
that stopped after `project`."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from concner.flows.runs_view import print_runs
from concner.tasks.engine.store import ArtifactStore
from tests.conftest import REPO

DEMO = REPO / "configs" / "demo.yaml"


def test_runs_shows_full_ids_and_projection_f1_for_an_until_project_run(cli, tmp_path: Path):
    store = tmp_path / "store"
    code, _, err = cli("run", DEMO, "--store", store, "--until", "project")
    assert code == 0, err[-2000:]
    record = ArtifactStore(store).list_runs()[-1]
    manifest = ArtifactStore(store).manifest("project", record["stages"]["project"]["key"])
    f1 = 100 * manifest["metrics"]["projection_quality"]["f1"]

    code, out, _ = cli("runs", "--store", store)  # stdout is not a terminal here
    assert code == 0
    assert record["run_id"] in out and "…" not in out  # nothing cut
    row = next(line for line in out.splitlines() if record["run_id"] in line)
    assert re.search(rf"project {f1:.1f}\b", row)  # the whole row on one line, its score in it

    # a narrow terminal: one block per run, still the full id and the score
    narrow = io.StringIO()
    print_runs(Console(file=narrow, width=50, force_terminal=True, color_system=None), ArtifactStore(store))
    text = narrow.getvalue()
    assert record["run_id"] in text and f"project {f1:.1f}" in text and max(map(len, text.splitlines())) <= 50

    # --wide on a terminal: the table at its natural width, whatever the terminal's
    wide = io.StringIO()
    print_runs(Console(file=wide, width=50, force_terminal=True, color_system=None), ArtifactStore(store), wide=True)
    assert any(record["run_id"] in line and f"project {f1:.1f}" in line for line in wide.getvalue().splitlines())
