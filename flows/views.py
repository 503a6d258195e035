"""Rich renderings of runs and artifacts for `concner runs` and `concner inspect`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from concner.tasks.corpus import Sentence
from concner.tasks.store import ArtifactStore

_COLOURS = ["bold cyan", "bold magenta", "bold green", "bold yellow", "bold blue", "bold red"]


def entity_style(label: str, labels: list[str]) -> str:
    return _COLOURS[labels.index(label) % len(_COLOURS)] if label in labels else "bold"


def highlight(sentence: Sentence, labels: list[str]) -> Text:
    """The sentence with every entity coloured by type and followed by its type."""
    text = Text()
    spans = {e.start: e for e in sentence.entities}
    i = 0
    while i < len(sentence.tokens):
        if i in spans:
            e = spans[i]
            text.append(" ".join(sentence.tokens[e.start : e.end]), style=entity_style(e.label, labels))
            text.append(f"[{e.label}]", style="dim")
            i = e.end
        else:
            text.append(sentence.tokens[i])
            i += 1
        text.append(" ")
    return text


def when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def runs_table(store: ArtifactStore) -> Table:
    table = Table(title=f"runs in {store.root}")
    for col in ("run", "started", "status", "computed", "reused", "scores"):
        table.add_column(col)
    for r in store.list_runs():
        stages = r.get("stages", {}).values()
        table.add_row(
            r["run_id"],
            when(r.get("started")),
            r.get("status", "?"),
            str(sum(s["status"] == "computed" for s in stages)),
            str(sum(s["status"] == "reused" for s in stages)),
            score_line(r.get("scores", {})),
        )
    return table


def score_line(scores: dict) -> str:
    parts = []
    for stage, by_set in scores.items():
        for set_name, s in by_set.items():
            if isinstance(s, dict) and "f1" in s:
                parts.append(f"{stage}/{set_name} F1 {100 * s['f1']:.1f}")
    return ", ".join(parts)


def stage_summary_table(record: dict, store: ArtifactStore) -> Table:
    table = Table(title=f"run {record['run_id']} ({record.get('status')})")
    for col in ("stage", "status", "seconds", "key figure", "artifact"):
        table.add_column(col)
    for name, info in record.get("stages", {}).items():
        style = "green" if info["status"] == "reused" else "yellow"
        table.add_row(
            name,
            Text(info["status"], style=style),
            f"{info.get('seconds', 0):.1f}",
            info.get("headline", ""),
            str(store.stage_dir(name, info["key"])),
        )
    return table


def show_ingest(console: Console, folder: Path, manifest: dict, sentence_id: int | None) -> None:
    from concner.tasks.ingest import load_split

    metrics = manifest["metrics"]
    types = metrics.get("entity_types", [])
    table = Table(title="ingest: corpora")
    for col in ("split", "sentences", "tokens", "entities", "file"):
        table.add_column(col)
    for split, s in metrics["splits"].items():
        ents = ", ".join(f"{k} {v}" for k, v in s["entities"].items()) or "-"
        table.add_row(split, str(s["sentences"]), str(s["tokens"]), ents, s["file"])
    console.print(table)
    sentences = load_split(folder, "source_train")
    chosen = [s for s in sentences if s.id == sentence_id] if sentence_id is not None else sentences[:5]
    console.print("[bold]source_train samples[/bold]")
    for s in chosen:
        console.print(Text(f"#{s.id} ", style="dim") + highlight(s, types))


INSPECTORS: dict[str, Callable[[Console, Path, dict, int | None], None]] = {"ingest": show_ingest}


def show_stage(console: Console, store: ArtifactStore, stage: str, key: str, sentence_id: int | None) -> None:
    manifest = store.manifest(stage, key)
    if manifest is None:
        console.print(f"[red]artifact {stage}/{key} is not in {store.root} (deleted? rerun the config)[/red]")
        return
    console.print(f"[bold]{stage}[/bold] {key}  {store.stage_dir(stage, key)}")
    inspector = INSPECTORS.get(stage)
    if inspector:
        inspector(console, store.stage_dir(stage, key), manifest, sentence_id)
    else:
        console.print_json(json.dumps(manifest.get("metrics", {}), default=str))
