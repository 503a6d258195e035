"""Markdown for the Prefect UI: each stage's key figures and a few samples, and the run summary.

A user sees what a stage produced in the Prefect UI without opening files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from concner.tasks.artifacts import sample_split

SAMPLES = 5


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _marked(tokens, tags) -> str:
    """Tokens with entities in bold and their type as a suffix: **Pedro Sánchez**`PER`."""
    from concner.tasks.tags import spans

    out, i, found = [], 0, {s.start: s for s in spans(list(tags))}
    while i < len(tokens):
        if i in found:
            s = found[i]
            out.append(f"**{' '.join(tokens[s.start:s.end])}**`{s.label}`")
            i = s.end
        else:
            out.append(str(tokens[i]))
            i += 1
    return " ".join(out)


def _scores(metrics: dict) -> str:
    rows = []
    for split, s in metrics.get("scores", {}).items():
        rows.append([split, "ALL", f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}"])
        for typ, t in s.get("per_type", {}).items():
            rows.append([split, typ, f"{t['precision']:.3f}", f"{t['recall']:.3f}", f"{t['f1']:.3f}"])
    return _table(["set", "type", "P", "R", "F1"], rows) if rows else ""


def ingest_md(folder: Path, metrics: dict) -> str:
    rows = [[k, v["sentences"], v["tokens"], ", ".join(f"{t} {n}" for t, n in v["entities"].items())]
            for k, v in metrics["splits"].items()]
    table = _table(["split", "sentences", "tokens", "entities"], rows)
    split = sample_split(metrics["splits"])
    if split is None:
        return table
    frame = pd.read_parquet(folder / f"{split}.parquet").head(SAMPLES)
    samples = "\n".join(f"- {_marked(r.tokens, r.tags)}" for r in frame.itertuples())
    return f"{table}\n\n{split} samples:\n\n{samples}"


def translate_md(folder: Path, metrics: dict) -> str:
    frame = pd.read_parquet(folder / "translations.parquet")
    score = "chrf" if "chrf" in frame else None
    if score:
        frame = frame.sort_values(score)
    rows = [[r.source_text, r.translation_text, f"{getattr(r, score):.1f}" if score else ""]
            for r in frame.head(SAMPLES).itertuples()]
    quality = metrics.get("quality")
    head = f"BLEU {quality['bleu']:.1f}, chrF {quality['chrf']:.1f}\n\n" if quality else ""
    return head + _table(["source", "translation", "chrF"], rows)


def project_md(folder: Path, metrics: dict) -> str:
    frame = pd.read_parquet(folder / "projected.parquet").head(SAMPLES)
    rows = [[o, n] for o, n in metrics["outcomes"].items()]
    samples = "\n".join(f"- {_marked(r.source_tokens, r.source_tags)} → {_marked(r.target_tokens, r.projected_tags)}"
                        for r in frame.itertuples())
    return _table(["outcome", "entities"], rows) + "\n\n" + samples


def pseudo_label_md(folder: Path, metrics: dict) -> str:
    frame = pd.read_parquet(folder / "pseudo_labels.parquet").sort_values("confidence").head(SAMPLES)
    rows = [[f"{r.confidence:.3f}", _marked(r.tokens, r.tags)] for r in frame.itertuples()]
    return "Lowest-confidence sentences:\n\n" + _table(["confidence", "pseudo-labels"], rows)


def scores_md(folder: Path, metrics: dict) -> str:
    return _scores(metrics)


def evaluate_md(folder: Path, metrics: dict) -> str:
    rows = [[k, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}"] for k, v in metrics["scores"].items()]
    return _table(["model/set", "P", "R", "F1"], rows)


STAGE_MARKDOWN: dict[str, Callable[[Path, dict], str]] = {
    "ingest": ingest_md, "ingest_target": ingest_md, "translate": translate_md, "project": project_md, "train": scores_md,
    "pseudo_label": pseudo_label_md, "distill": scores_md, "evaluate": evaluate_md,
}


def stage_markdown(stage: str, key: str, folder: Path, headline: str) -> str:
    metrics = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["metrics"]
    body = STAGE_MARKDOWN.get(stage, lambda f, m: "")(folder, metrics)
    return f"### {stage} `{key}`\n\n{headline}\n\n{body}\n\nartifact: `{folder}`"


def run_markdown(record: dict) -> str:
    rows = [[name, info["status"], f"{info['seconds']:.1f}", info.get("headline", ""), info["key"]]
            for name, info in record["stages"].items()]
    return (f"### concner run `{record['run_id']}` ({record['status']})\n\n"
            + _table(["stage", "status", "seconds", "key figure", "key"], rows))
