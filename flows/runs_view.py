"""`concner runs`: one row per run with its F1 scores, at any width.

Run ids are never cut (the id column is as wide as the longest id), the score column wraps on a
narrow terminal, and `--wide` or a stdout that is not a terminal prints the table at its natural
width, so a pipe or a log file gets every id and score whole. Scores come from the run record
(`scores`: train and distill as teacher/student, or evaluate's table when the run has it) plus
projection F1 from the project stage's manifest, so an `--until project` run shows its score too.
Imports only the store and rich (no stage modules): listing runs stays fast.
"""

from __future__ import annotations

import datetime as dt
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from concner.tasks.engine.registry import ROLE_OF
from concner.flows.console_width import natural_width, print_whole
from concner.tasks.engine.store import MANIFEST, ArtifactStore

MODEL_OF = ROLE_OF  # the trained models by stage, as the stages declare them
CAPTION = "F1 x 100, seqeval default (conlleval) mode"


def _stage(entry: str) -> tuple[str, str]:
    """`train@de` -> ("train", "@de"); `train` -> ("train", "")."""
    stage, _, branch = entry.partition("@")
    return stage, f"@{branch}" if branch else ""


def projection_f1(record: dict, store: ArtifactStore) -> dict[str, float]:
    """Projection F1 per project entry of the run (when the translations had gold tags)."""
    out = {}
    for entry, info in record.get("stages", {}).items():
        stage, branch = _stage(entry)
        if stage != "project" or not info.get("key"):
            continue
        try:
            manifest = json.loads((store.stage_dir(stage, info["key"]) / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        quality = manifest.get("metrics", {}).get("projection_quality")
        if isinstance(quality, dict) and "f1" in quality:
            out[f"project{branch}"] = quality["f1"]
    return out


def model_f1(scores: dict) -> dict[str, float]:
    """F1 per model/split: evaluate's table where the run has it, else train's (teacher) and distill's (student)."""
    out: dict[str, float] = {}
    evaluated = {_stage(e)[1] for e in scores if _stage(e)[0] == "evaluate"}
    for entry, by_split in scores.items():
        stage, branch = _stage(entry)
        if stage != "evaluate" and (branch in evaluated or stage not in MODEL_OF):
            continue
        for split, s in by_split.items():
            if isinstance(s, dict) and isinstance(s.get("f1"), (int, float)):
                name = split if stage == "evaluate" else f"{MODEL_OF[stage]}/{split}"
                out[f"{name}{branch}"] = s["f1"]
    return out


def score_cell(record: dict, store: ArtifactStore) -> str:
    scores = {**projection_f1(record, store), **model_f1(record.get("scores", {}))}
    return ", ".join(f"{name} {100 * f1:.1f}" for name, f1 in scores.items()) or "-"


def _when(ts: float | None) -> str:  # as flows/views.py's when(), which imports every stage module
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _rows(store: ArtifactStore) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for r in store.list_runs():
        stages = r.get("stages", {}).values()
        rows.append((r["run_id"], _when(r.get("started")), r.get("status", "?"),
                     str(sum(s.get("status") == "computed" for s in stages)),
                     str(sum(s.get("status") == "reused" for s in stages)), score_cell(r, store)))
    return rows


def runs_table(store: ArtifactStore, rows: list | None = None) -> Table:
    table = Table(title=f"runs in {escape(str(store.root))}", caption=CAPTION)
    for col in ("run", "started", "status", "computed", "reused", "F1"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("computed", "reused") else "left")
    for row in _rows(store) if rows is None else rows:
        table.add_row(*(escape(cell) for cell in row))  # a folder or score such as [x] is text, not markup
    return table


def print_runs(console: Console, store: ArtifactStore, *, wide: bool = False) -> None:
    """The table at its natural width with --wide or when stdout is not a terminal (nothing cut or
    wrapped); on a terminal too narrow for it, one block per run (id and figures, then the scores)."""
    rows = _rows(store)
    table = runs_table(store, rows)
    if wide or not console.is_terminal or natural_width(console, table) <= console.width:
        print_whole(console, table, wide=wide)
    else:
        console.print(f"runs in {store.root} ({CAPTION})", style="italic", highlight=False, markup=False)
        for run_id, started, status, computed, reused, scores in rows:
            console.print(f"{run_id}  {started}  {status}  {computed} computed, {reused} reused", style="bold",
                          highlight=False, markup=False, overflow="fold")
            console.print(f"  F1: {scores}", highlight=False, markup=False, overflow="fold")
