"""`concner report RUN`: one self-contained HTML page of plots for a finished (or failed) run.

Every figure reads a stage's artifact from the store, so the page shows only what the run has:
a run stopped with `--until project` gets no loss curves, and a stage whose artifact was deleted
gets a note instead of a plot. Plots are drawn on `matplotlib.figure.Figure` objects with the Agg
canvas (no pyplot global state, no display needed) and embedded as base64 PNG.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: reports are made on headless machines

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from concner.flows.views import when
from concner.tasks.engine.artifacts import EPOCHS, SCORES, STEPS, load_projected_frame, load_pseudo_label_frame, load_translations
from concner.tasks.engine.registry import ROLE_OF, STAGE_OF_ROLE, stage_of
from concner.tasks.engine.store import ArtifactStore

TEACHER, STUDENT = "#1f77b4", "#ff7f0e"
COMPUTED, REUSED = "#e3a21a", "#4caf50"
OUTCOME_COLOURS = {"projected": "#2e7d32", "repaired": "#9ccc65", "merged": "#42a5f5", "collided": "#ffa726",
                   "unaligned": "#e53935"}
META_COLUMNS = {"step", "epoch", "lr"}


@dataclass(frozen=True)
class RunArtifacts:
    """A run record and the store its artifacts live in."""

    record: dict
    store: ArtifactStore

    @property
    def stages(self) -> list[str]:
        return list(self.record.get("stages", {}))

    def folder(self, stage: str) -> Path | None:
        """The stage's artifact folder, or None when the run has no such stage or it was deleted."""
        info = self.record.get("stages", {}).get(stage)
        if info is None or not self.store.exists(stage_of(stage), info["key"]):
            return None
        return self.store.stage_dir(stage_of(stage), info["key"])

    def manifest(self, stage: str) -> dict | None:
        info = self.record.get("stages", {}).get(stage)
        return self.store.manifest(stage_of(stage), info["key"]) if info else None

    def branch(self, target: str) -> "RunArtifacts":
        """One target of a multi-target run, its entries (`train@de`) under plain stage names, plus
        the shared stages: every figure reads it as it reads a one-target run."""
        stages = {stage_of(entry): info for entry, info in self.record.get("stages", {}).items()
                  if info.get("target") in (None, target)}
        return RunArtifacts({**self.record, "stages": stages}, self.store)


@dataclass
class Section:
    """One figure of the report: a PNG, or a note saying why there is none."""

    id: str
    title: str
    stage: str  # the stage whose artifact it shows ("run" for the run record itself)
    png: bytes | None = None
    note: str = ""


Builder = Callable[[RunArtifacts], "Figure | str"]


# figures ---------------------------------------------------------------------------------------

def fig_timings(run: RunArtifacts) -> Figure | str:
    stages = run.record.get("stages", {})
    if not stages:
        return "the run recorded no stages"
    names = list(stages)
    fig = Figure(figsize=(7.5, 0.45 * len(names) + 1.4))
    ax = fig.subplots()
    for y, name in enumerate(names):
        info = stages[name]
        if info["status"] == "reused":
            # A reused stage took ~0 s in this run; its original compute time shows what reuse saved.
            earlier = (run.manifest(name) or {}).get("seconds", 0.0)
            ax.barh(y, earlier, color="white", edgecolor=REUSED, hatch="//")
            ax.text(earlier, y, f" reused (computed earlier in {earlier:.1f} s)", va="center", fontsize=8)
        else:
            ax.barh(y, info.get("seconds", 0.0), color=COMPUTED)
            ax.text(info.get("seconds", 0.0), y, f" {info.get('seconds', 0.0):.1f} s", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    wall = (run.record.get("ended") or 0) - (run.record.get("started") or 0)
    ax.set_title(f"stage timings (run wall time {wall:.0f} s; yellow computed, hatched reused)", fontsize=10)
    ax.margins(x=0.35)
    return fig


def fig_ingest_entities(run: RunArtifacts) -> Figure | str:
    manifest = run.manifest("ingest")
    if manifest is None:
        return "the ingest artifact is missing from the store"
    splits = {name: s for name, s in manifest["metrics"]["splits"].items() if s.get("entities")}
    target = run.manifest("ingest_target")  # one-target runs: their labeled target sets too
    if target is not None:
        splits.update({name: s for name, s in target["metrics"]["splits"].items() if s.get("entities")})
    if not splits:
        return "no labeled split"
    types = sorted({t for s in splits.values() for t in s["entities"]})
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(splits)
    for i, (name, s) in enumerate(splits.items()):
        x = np.arange(len(types)) + (i - (len(splits) - 1) / 2) * width
        ax.bar(x, [s["entities"].get(t, 0) for t in types], width, label=f"{name} ({s['sentences']} sentences)")
    ax.set_xticks(range(len(types)), types)
    ax.set_ylabel("entities")
    ax.set_title("ingest: entities per type and split", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def fig_translate_chrf(run: RunArtifacts) -> Figure | str:
    folder = run.folder("translate")
    if folder is None:
        return "the translate artifact is missing from the store"
    frame = load_translations(folder)
    columns = [c for c in ("chrf", "round_trip_chrf") if c in frame]
    if not columns:
        return ("no per-sentence chrF in this translate artifact: it had no reference translations "
                "(set translate.reference_file, or translate.reverse_model for round-trip chrF)")
    fig = Figure(figsize=(7.5, 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(columns), squeeze=False)[0])
    for ax, column in zip(axes, columns):
        values = frame[column].dropna()
        ax.hist(values, bins=np.linspace(0, 100, 21), color="#5c6bc0", edgecolor="white")
        ax.axvline(values.mean(), color="black", linestyle="--", linewidth=1)
        label = "chrF against references" if column == "chrf" else "round-trip chrF"
        ax.set_title(f"{label}: mean {values.mean():.1f} over {len(values)} sentences", fontsize=9)
        ax.set_xlabel("sentence chrF")
        ax.set_ylabel("sentences")
    return fig


def projection_outcome_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Entities per type (rows) and projection outcome (columns) from projected.parquet."""
    counts: Counter[tuple[str, str]] = Counter()
    for cell in frame["entities"]:
        for entity in json.loads(cell) if cell else []:
            counts[(entity["label"], entity["outcome"])] += 1
    table = pd.Series(counts, dtype=int).unstack(fill_value=0) if counts else pd.DataFrame()
    order = [o for o in OUTCOME_COLOURS if o in table.columns] + sorted(set(table.columns) - set(OUTCOME_COLOURS))
    return table.reindex(columns=order).sort_index()


def fig_projection_outcomes(run: RunArtifacts) -> Figure | str:
    folder = run.folder("project")
    if folder is None:
        return "the project artifact is missing from the store"
    table = projection_outcome_counts(load_projected_frame(folder, columns=["entities"]))
    if table.empty:
        return "no source entities to project"
    metrics = run.manifest("project")["metrics"]
    rates = metrics.get("projection_rate_by_type", {})
    fig = Figure(figsize=(7.5, 0.55 * len(table) + 1.8))
    ax = fig.subplots()
    left = np.zeros(len(table))
    for outcome in table.columns:
        ax.barh(range(len(table)), table[outcome], left=left, label=outcome,
                color=OUTCOME_COLOURS.get(outcome, "#9e9e9e"))
        left += table[outcome].to_numpy()
    for y, (label, total) in enumerate(zip(table.index, left)):
        rate = f", rate {100 * rates[label]:.0f}%" if label in rates else ""
        ax.text(total, y, f" {int(total)}{rate}", va="center", fontsize=8)
    ax.set_yticks(range(len(table)), table.index)
    ax.invert_yaxis()
    ax.set_xlabel("source entities")
    ax.margins(x=0.2)
    title = f"projection outcomes per entity type (rate {100 * metrics.get('projection_rate', 0):.1f}%"
    if "projection_quality" in metrics:
        title += f", projection F1 {100 * metrics['projection_quality']['f1']:.1f} vs gold"
    ax.set_title(title + ")", fontsize=10)
    ax.legend(fontsize=8, ncols=min(5, len(table.columns)), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return fig


def loss_terms(steps: pd.DataFrame) -> list[str]:
    """The loss columns of steps.parquet; `loss` is left out when it only repeats a single term."""
    terms = [c for c in steps.columns if c not in META_COLUMNS]
    others = [t for t in terms if t != "loss"]
    if "loss" in terms and len(others) == 1 and np.allclose(steps["loss"], steps[others[0]]):
        terms.remove("loss")
    return terms


def _loss_figure(run: RunArtifacts, stage: str, title: str) -> Figure | str:
    folder = run.folder(stage)
    if folder is None:
        return f"the {stage} artifact is missing from the store"
    steps = STEPS.read(folder)
    epochs = EPOCHS.read(folder) if EPOCHS.exists(folder) else None
    panels: list[str] = loss_terms(steps)
    if epochs is not None and "dev_f1" in epochs:
        panels.append("dev F1")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.6 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    boundaries = steps["step"][steps["epoch"].diff() > 0]
    window = max(1, len(steps) // 20)  # a readable trend without hiding the raw curve
    for ax, panel in zip(axes, panels):
        if panel == "dev F1":
            ax.plot(epochs["epoch"], 100 * epochs["dev_f1"], marker="o", color="black")
            ax.set_ylim(0, max(5.0, 110 * epochs["dev_f1"].max()))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            best = run.manifest(stage)["metrics"].get("best_epoch")
            if best is not None:
                ax.axvline(best, color="green", linestyle=":", label=f"best epoch {best}")
                ax.legend(fontsize=7)
            ax.set_xlabel("epoch")
            ax.set_title("dev F1 per epoch", fontsize=9)
            continue
        ax.plot(steps["step"], steps[panel], alpha=0.35, linewidth=0.8)
        ax.plot(steps["step"], steps[panel].rolling(window, min_periods=1).mean(), linewidth=1.6, color="C0")
        for b in boundaries:
            ax.axvline(b, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"{panel} (last {steps[panel].iloc[-1]:.3f})", fontsize=9)
        ax.set_xlabel("step")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: loss terms per step (dotted: epoch boundaries)", fontsize=10)
    return fig


def fig_train_loss(run: RunArtifacts) -> Figure | str:
    return _loss_figure(run, "train", "teacher (train)")


def fig_distill_loss(run: RunArtifacts) -> Figure | str:
    return _loss_figure(run, "distill", "student (distill)")


def fig_pseudo_label_confidence(run: RunArtifacts) -> Figure | str:
    folder = run.folder("pseudo_label")
    if folder is None:
        return "the pseudo_label artifact is missing from the store"
    frame = load_pseudo_label_frame(folder, columns=["confidence", "kept"])
    manifest = run.manifest("pseudo_label")
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    ax.hist([frame.loc[frame["kept"], "confidence"], frame.loc[~frame["kept"], "confidence"]], bins=bins,
            stacked=True, color=["#26a69a", "#bdbdbd"], label=["kept for distillation", "dropped"])
    threshold = manifest["params"].get("min_confidence")
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"min_confidence {threshold}")
    ax.set_xlabel("sentence confidence (mean of the teacher's word probabilities)")
    ax.set_ylabel("sentences")
    ax.set_title(f"pseudo-label confidence: {int(frame['kept'].sum())}/{len(frame)} kept, "
                 f"mean {frame['confidence'].mean():.3f}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def score_rows(run: RunArtifacts) -> pd.DataFrame:
    """F1 per model, labeled target set and entity type ('ALL' = micro average).

    From evaluate's scores.parquet when the run has it, else from the train (teacher) and distill
    (student) manifests, so a run stopped before evaluate still gets the figure.
    """
    folder = run.folder("evaluate")
    if folder is not None and SCORES.exists(folder):
        return SCORES.read(folder, ["model", "set", "type", "f1", "support"])
    rows = []
    for stage, model in ROLE_OF.items():
        manifest = run.manifest(stage)
        for set_name, s in ((manifest or {}).get("metrics", {}).get("scores") or {}).items():
            rows.append({"model": model, "set": set_name, "type": "ALL", "f1": s["f1"], "support": np.nan})
            for label, t in s.get("per_type", {}).items():
                rows.append({"model": model, "set": set_name, "type": label, "f1": t["f1"], "support": t["support"]})
    return pd.DataFrame(rows, columns=["model", "set", "type", "f1", "support"])


def fig_scores(run: RunArtifacts) -> Figure | str:
    rows = score_rows(run)
    if rows.empty:
        return "no scores: the run has no labeled target dev or test set"
    sets = list(dict.fromkeys(rows["set"]))
    models = list(dict.fromkeys(rows["model"]))
    fig = Figure(figsize=(4.6 * len(sets), 3.8), layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, set_name in zip(axes, sets):
        part = rows[rows["set"] == set_name]
        types = ["ALL"] + sorted(set(part["type"]) - {"ALL"})
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            by_type = part[part["model"] == model].set_index("type")["f1"]
            values = [100 * by_type.get(t, np.nan) for t in types]
            x = np.arange(len(types)) + (i - (len(models) - 1) / 2) * width
            colour = {"teacher": TEACHER, "student": STUDENT}.get(model, f"C{i + 2}")
            bars = ax.bar(x, values, width, label=model, color=colour)
            # Labels make a zero score visibly zero rather than a missing bar.
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        support = part.drop_duplicates("type").set_index("type")["support"]
        ax.set_xticks(range(len(types)), [t if t == "ALL" or pd.isna(support.get(t)) else f"{t}\n(n={int(support[t])})"
                                          for t in types], fontsize=8)
        ax.set_ylim(0, 115)  # room for the bar labels and the legend above a score of 100
        ax.set_ylabel("F1 (seqeval default mode)")
        ax.set_title(set_name, fontsize=10)
        ax.legend(fontsize=8, ncols=len(models), loc="upper center")
    fig.suptitle("F1 per model and entity type (ALL = micro average); " + selection_label(run), fontsize=10)
    return fig


def selection_label(run: RunArtifacts) -> str:
    """Which split chose the models' epochs: its scores are never among the results."""
    chosen = {name: ((run.manifest(stage) or {}).get("metrics") or {}).get("dev_set")
              for name, stage in STAGE_OF_ROLE.items() if run.manifest(stage)}
    if not chosen:
        return "no model selection"
    splits = set(chosen.values())
    if len(splits) == 1:
        split = splits.pop()
        return f"selected on {split}" if split else "no selection split (last epoch)"
    return ", ".join(f"{model} selected on {split or 'nothing'}" for model, split in chosen.items())


# (id, title, stages any of which makes the figure apply, builder), in page order
FIGURES: list[tuple[str, str, tuple[str, ...], Builder]] = [
    ("scores-f1", "F1 per model and entity type", ("evaluate", "distill", "train"), fig_scores),
    ("train-loss", "Teacher loss curves", ("train",), fig_train_loss),
    ("distill-loss", "Student (distillation) loss curves", ("distill",), fig_distill_loss),
    ("pseudo-label-confidence", "Pseudo-label confidence", ("pseudo_label",), fig_pseudo_label_confidence),
    ("project-outcomes", "Projection outcomes per entity type", ("project",), fig_projection_outcomes),
    ("translate-chrf", "Translation quality (chrF)", ("translate",), fig_translate_chrf),
    ("ingest-entities", "Corpora", ("ingest",), fig_ingest_entities),
    ("timings", "Stage timings", ("run",), fig_timings),
]


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


RUN_WIDE = ("ingest-entities", "timings")  # figures of the shared source ingest and of the whole run


def build_sections(run: RunArtifacts) -> list[Section]:
    """The figures that apply to the stages this run has, drawn (or explained by a note).
    A multi-target run gets the per-stage figures once per target, ids and titles marked with it."""
    targets = run.record.get("targets") or []
    if not targets:
        return _draw(run, FIGURES)
    sections = []
    for target in targets:
        sections += _draw(run.branch(target), [f for f in FIGURES if f[0] not in RUN_WIDE], target)
    return sections + _draw(run, [f for f in FIGURES if f[0] in RUN_WIDE])


def _draw(run: RunArtifacts, figures, target: str | None = None) -> list[Section]:
    present = set(run.stages) | {"run"}
    sections = []
    for fig_id, title, stages, builder in figures:
        owner = next((s for s in stages if s in present), None)
        if owner is None:
            continue
        if target is not None:
            fig_id, title = f"{target}-{fig_id}", f"{title} — target {target}"
        result = builder(run)
        if isinstance(result, str):
            sections.append(Section(fig_id, title, owner, note=result))
        else:
            sections.append(Section(fig_id, title, owner, png=png_bytes(result)))
    return sections


def stage_summaries(run: RunArtifacts) -> list[tuple[str, str, str]]:
    """(entry, stage, HTML) for every stage of the run, from the stage's own summary: a stage
    gets its report section without code here."""
    from concner.flows.summary_html import SAMPLES, summary_html
    from concner.tasks.engine.registry import get
    from concner.tasks.presentation.summary import SampleQuery

    out = []
    for entry, info in run.record.get("stages", {}).items():
        stage, folder = stage_of(entry), run.folder(entry)
        summarize = get(stage).view.summary
        if summarize is None:
            continue
        if folder is None:
            body = "<p class='note'>the artifact is missing from the store</p>"
        else:
            manifest = run.manifest(entry) or {}
            body = summary_html(summarize({"stage": stage, **manifest}, folder, SampleQuery(limit=SAMPLES)))
        out.append((entry, stage, body))
    return out


# HTML ------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.computed { color: #b07800; } .reused { color: #2e7d32; } .failed { color: #c62828; }
figure { margin: 1em 0; } figure img { max-width: 100%; } .note { color: #666; font-style: italic; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.85em; } code { font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding: 0.4em 0; } section.summary table { margin: 0.6em 0; }
mark { background: #fff3b0; } li.failed { color: #c62828; }
"""


def render_html(run: RunArtifacts, sections: list[Section]) -> str:
    r = run.record
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(name)}</td><td class='{e(info['status'])}'>{e(info['status'])}</td>"
        f"<td>{info.get('seconds', 0):.1f}</td><td><code>{e(info['key'])}</code></td>"
        f"<td>{e(info.get('headline', ''))}</td></tr>"
        for name, info in r.get("stages", {}).items()
    )
    figures = []
    for s in sections:
        body = (f"<img alt='{e(s.title)}' src='data:image/png;base64,{base64.b64encode(s.png).decode()}'>"
                if s.png is not None else f"<p class='note'>{e(s.note)}</p>")
        figures.append(f"<figure id='fig-{e(s.id)}' data-stage='{e(s.stage)}'><h2>{e(s.title)}</h2>{body}</figure>")
    error = f"<p class='failed'>error: {e(r['error'])}</p>" if r.get("error") else ""
    summaries = "".join(
        f"<section class='summary' id='summary-{e(entry)}' data-stage='{e(stage)}'><h2>{e(entry)}: "
        f"{e(r['stages'][entry].get('headline', ''))}</h2>{body}</section>"
        for entry, stage, body in stage_summaries(run))
    config = yaml.safe_dump(r.get("config", {}), sort_keys=False, allow_unicode=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>concner run {e(r['run_id'])}</title><style>{_CSS}</style></head>
<body>
<h1>concner run <code>{e(r['run_id'])}</code></h1>
<p>name <b>{e(str(r.get('name')))}</b> · status <b class="{e(str(r.get('status')))}">{e(str(r.get('status')))}</b> ·
started {e(when(r.get('started')))} · ended {e(when(r.get('ended')))} · store <code>{e(str(run.store.root))}</code></p>
<p>model selection: <b>{e(selection_label(run))}</b> (that split's scores are not reported as results)</p>
{error}
<table><tr><th>stage</th><th>status</th><th>seconds</th><th>key</th><th>key figure</th></tr>{rows}</table>
{''.join(figures)}
{summaries}
<h2>Config</h2>
<pre>{e(config)}</pre>
</body></html>
"""


def write_report(record: dict, store: ArtifactStore, out: Path, png_dir: Path | None = None) -> list[Section]:
    """Write the HTML report (and each figure as <png_dir>/<id>.png); returns the sections."""
    run = RunArtifacts(record, store)
    sections = build_sections(run)
    return _write_page(out, render_html(run, sections), sections, png_dir)


def _write_page(out: Path, page: str, sections: list[Section], png_dir: Path | None) -> list[Section]:
    """The HTML page, and each figure as <png_dir>/<id>.png when asked; returns the sections."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for s in sections:
            if s.png is not None:
                (png_dir / f"{s.id}.png").write_bytes(s.png)
    return sections


# sweeps (`concner report SWEEP_ID`) ------------------------------------------------------------


def fig_sweep_scores(record: dict, metric: str = "f1") -> Figure | str:
    """Grouped bars: one group per score (model/set[@target]), one bar per setting, mean over
    seeds with the sd as error bar and every seed's value as a dot."""
    from concner.flows.sweep import score_names, setting_stats

    stats = setting_stats(record)
    names = score_names(record)
    if not names:
        return "no scores: no member completed a stage that scores (train, distill or evaluate)"
    settings = list(stats)
    width = 0.8 / len(settings)
    fig = Figure(figsize=(max(5.0, 1.6 * len(names) * max(1, len(settings)) ** 0.5 + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    for i, setting in enumerate(settings):
        x = np.arange(len(names)) + (i - (len(settings) - 1) / 2) * width
        means = [100 * stats[setting][n][metric].mean if n in stats[setting] else np.nan for n in names]
        sds = [100 * (stats[setting][n][metric].sd or 0.0) if n in stats[setting] else 0.0 for n in names]
        ax.bar(x, means, width, yerr=sds, capsize=3, label=setting, color=f"C{i}", alpha=0.85)
        for xi, mean, sd in zip(x, means, sds):  # the mean above its error bar: a zero stays visibly zero
            if not np.isnan(mean):
                ax.text(xi, mean + sd + 1, f"{mean:.1f}", ha="center", va="bottom", fontsize=7)
        for xi, n in zip(x, names):
            if n in stats[setting]:
                values = [100 * v for v in stats[setting][n][metric].values]
                ax.scatter([xi] * len(values), values, s=8, color="black", zorder=3)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(0, 115)
    ax.set_ylabel(f"{metric.upper() if metric == 'f1' else metric} (seqeval default mode)")
    seeds = ", ".join(map(str, record.get("seeds", [])))
    ax.set_title(f"sweep {record['sweep_id']}: mean ± sd over seeds {seeds} (dots: single seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", ncols=min(3, len(settings)))
    return fig


def write_sweep_report(record: dict, store: ArtifactStore, out: Path, png_dir: Path | None = None) -> list[Section]:
    """The HTML page of a sweep: P/R/F1 per setting as mean ± sd, an F1 bar chart with error bars,
    the members with their run ids, and the base config."""
    from concner.flows.sweep import METRICS, fmt_stat, score_names, setting_stats

    result = fig_sweep_scores(record, "f1")  # P and R are in the table
    title = "F1 per score and setting (error bars: sd over seeds)"
    sections = [Section("sweep-f1", title, "sweep", note=result) if isinstance(result, str)
                else Section("sweep-f1", title, "sweep", png=png_bytes(result))]
    e = html.escape
    stats = setting_stats(record)
    head = "".join(f"<th>{e(n)} {m}</th>" for n in score_names(record) for m in ("P", "R", "F1"))
    rows = "".join(
        f"<tr><td>{e(setting)}</td>"
        + "".join(f"<td>{e(fmt_stat(per.get(n, {}).get(m)))}</td>" for n in score_names(record) for m in METRICS)
        + "</tr>" for setting, per in stats.items())
    members = "".join(
        f"<tr><td>{m['index'] + 1}</td><td>{e(m['setting'])}</td><td>{m['seed']}</td>"
        f"<td><code>{e(str(m.get('run_id')))}</code></td><td class='{e(m['status'])}'>{e(m['status'])}</td><td>{e(m.get('error', ''))}</td></tr>"
        for m in record["members"])
    figures = "".join(
        f"<figure id='fig-{e(s.id)}' data-stage='sweep'><h2>{e(s.title)}</h2>"
        + (f"<img alt='{e(s.title)}' src='data:image/png;base64,{base64.b64encode(s.png).decode()}'>"
           if s.png is not None else f"<p class='note'>{e(s.note)}</p>") + "</figure>"
        for s in sections)
    grid = ", ".join(f"{k} = {', '.join(map(str, v))}" for k, v in record.get("grid", {}).items()) or "-"
    config = yaml.safe_dump(record.get("base_config", {}), sort_keys=False, allow_unicode=True)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>concner sweep {e(record['sweep_id'])}</title>
<style>{_CSS}</style></head>
<body>
<h1>concner sweep <code>{e(record['sweep_id'])}</code></h1>
<p>status <b class="{e(str(record.get('status')))}">{e(str(record.get('status')))}</b> · grid {e(grid)} ·
seeds {e(', '.join(map(str, record.get('seeds', []))))} · started {e(when(record.get('started')))} ·
ended {e(when(record.get('ended')))} · store <code>{e(str(store.root))}</code></p>
<h2>Scores in %, mean ± sd over seeds (seqeval default mode)</h2>
<table><tr><th>setting</th>{head}</tr>{rows}</table>
{figures}
<h2>Members</h2>
<table><tr><th>#</th><th>setting</th><th>seed</th><th>run</th><th>status</th><th>error</th></tr>{members}</table>
<h2>Base config</h2>
<pre>{e(config)}</pre>
</body></html>
"""
    return _write_page(out, page, sections, png_dir)
