"""Rich renderings of runs and artifacts for `concner inspect` (and the run table of `concner run`).

A stage's view is its StageSummary (declared in its module under tasks/stages/) rendered by the
generic `render_summary` here: no per-stage code.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from concner.flows.console_width import print_whole
from concner.tasks.text.corpus import Sentence
from concner.tasks.presentation import training_summary
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.registry import stage_of
from concner.tasks.engine.store import ABSENT, ArtifactStore
from concner.tasks.presentation.summary import Figures, Histogram, Note, Sample, SampleQuery, Samples, StageSummary
from concner.tasks.presentation.summary import Table as SummaryTable
from concner.tasks.text.tags import Span

_COLOURS = ["bold cyan", "bold magenta", "bold green", "bold yellow", "bold blue", "bold red"]


def entity_style(label: str, labels: list[str]) -> str:
    return _COLOURS[labels.index(label) % len(_COLOURS)] if label in labels else "bold"


def highlight(sentence: Sentence, labels: list[str]) -> Text:
    """The sentence with every entity coloured by type and followed by its type."""
    return highlight_spans(sentence.tokens, sentence.entities, labels)


def highlight_spans(tokens: Sequence[str], entities: Sequence[Span], labels: list[str],
                    note: Callable[[Span], str] | None = None) -> Text:
    """Tokens with each span coloured by type and followed by `[TYPE]` (plus `note`, e.g. a confidence)."""
    text = Text()
    starts = {e.start: e for e in entities}
    i = 0
    while i < len(tokens):
        if i in starts:
            e = starts[i]
            text.append(" ".join(tokens[e.start : e.end]), style=entity_style(e.label, labels))
            extra = f" {n}" if note and (n := note(e)) else ""
            text.append(f"[{e.label}{extra}]", style="dim")
            i = e.end
        else:
            text.append(tokens[i])
            i += 1
        text.append(" ")
    return text


def when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


# `concner runs` is flows/runs_view.py (it imports no stage module, so it stays fast).


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
            escape(info.get("headline", "")),
            escape(str(store.stage_dir(stage_of(name), info["key"]))),
        )
    return table


# -- inspect: every stage's view is its summary, rendered generically -------------------------------

# What `concner inspect --stage` was asked for besides the stage: one sentence, a row order, a count.
InspectOptions = SampleQuery


def check_options(stage: str, options: InspectOptions) -> None:
    """Reject options a stage's view cannot honour, rather than silently ignoring them."""
    from concner.tasks.engine.registry import STAGES, get

    keys = get(stage).view.sort_keys
    if options.sort is not None and options.sort not in keys:
        if keys:
            raise UserError(f"--sort {options.sort}: the {stage} view sorts by {', '.join(keys)}")
        raise UserError(f"--sort applies to the {', '.join(s.name for s in STAGES if s.view.sort_keys)} views, not {stage}")
    if options.sentence_id is not None and not get(stage).view.sentence_ids:
        raise UserError(f"--id applies to the {', '.join(s.name for s in STAGES if s.view.sentence_ids)} views, not {stage}")
    if options.limit is not None and options.limit < 1:
        raise UserError("--limit must be at least 1")


def key_value_table(title: str, items: Mapping[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in items.items():
        table.add_row(escape(k), escape(str(v)))  # values such as lists print their brackets
    return table


def histogram_bars(counts: Sequence[int], edges: Sequence[float], width: int = 40) -> Text:
    """One text bar per bin, scaled to the fullest bin."""
    top = max(counts) if counts else 0
    text = Text()
    for i, n in enumerate(counts):
        bar = "█" * (round(width * n / top) if top else 0)
        text.append(f"  {edges[i]:.2f}-{edges[i + 1]:.2f} ")
        text.append(bar or "·", style="cyan" if bar else "dim")
        text.append(f" {n}\n")
    return text


def natural_width(block: SummaryTable) -> int:
    """Characters the table takes unwrapped, with padding and borders."""
    widths = [max([len(str(c))] + [len(str(row[i])) for row in block.rows]) for i, c in enumerate(block.columns)]
    return sum(widths) + 3 * len(widths) + 1


def summary_table(block: SummaryTable, width: int = 80) -> Table:
    # A table one edge padding too wide for the terminal (projection outcomes in 80 columns) drops
    # it rather than wrap its numbers; an untitled table is nested under a sample (a sentence's
    # entities) and drops its frame and padding.
    pad = bool(block.title) and natural_width(block) <= width
    table = Table(title=block.title or None, caption=block.caption or None, show_edge=bool(block.title),
                  pad_edge=pad)
    for col in block.columns:
        table.add_column(col, justify="right" if col in block.numeric else "left")
    for i, row in enumerate(block.rows):
        table.add_row(*(escape(str(c)) for c in row), style="bold" if i in block.total_rows else None,
                      end_section=i in block.section_ends)
    return table


def sample_text(sample: Sample, labels: list[str]) -> Text:
    """A sample row: its head, its tokens with the spans coloured (notes after their type), then
    the other side of a pair after an arrow."""
    def note(span: Span) -> str:
        return sample.notes.get(span.start, "")

    text = Text(sample.head, style="red" if sample.dropped else "dim")
    text += highlight_spans(sample.tokens, sample.spans, labels, note if sample.notes else None)
    if sample.target is not None:
        text += Text("→ ", style="dim") + highlight_spans(sample.target.tokens, sample.target.spans, labels)
    return text


def render_summary(console: Console, summary: StageSummary) -> None:
    """Any stage's summary in the terminal: one rendering per block kind, no per-stage code."""
    for block in summary.blocks:
        if isinstance(block, Figures):
            console.print(key_value_table(block.title, block.items))
        elif isinstance(block, SummaryTable):
            console.print(summary_table(block, console.width))
        elif isinstance(block, Samples):
            console.print(Text(block.title, style="bold"))
            for sample in block.rows:
                console.print(sample_text(sample, list(block.labels)))
        elif isinstance(block, Histogram):
            console.print(Text(block.title, style="bold"))
            console.print(histogram_bars(block.counts, block.edges))
        elif isinstance(block, Note):
            console.print(Text(block.text, style="dim"))


def show_summary(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                 options: InspectOptions | None = None) -> None:
    """The view of one artifact: its stage's summary (sentence_id stays positional for old callers)."""
    from concner.tasks.engine.registry import get

    options = options or InspectOptions(sentence_id=sentence_id)
    spec = get(manifest.get("stage", ""))
    render_summary(console, spec.view.summary(manifest, folder, options))


def show_pseudo_label(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                      options: InspectOptions | None = None) -> None:
    show_summary(console, folder, {"stage": "pseudo_label", **manifest}, sentence_id, options)


def show_evaluate(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                  options: InspectOptions | None = None) -> None:
    show_summary(console, folder, {"stage": "evaluate", **manifest}, sentence_id, options)


loss_summary = training_summary.loss_summary  # kept importable from here for existing callers


def translation_rows(frame, options: InspectOptions, default_limit: int = 10):
    from concner.tasks.stage_summaries.translate import translation_rows as rows

    return rows(frame, options, default_limit)


def show_stage(console: Console, store: ArtifactStore, stage: str, key: str, sentence_id: int | None = None,
               options: InspectOptions | None = None) -> None:
    from concner.tasks.engine.registry import get

    options = options or InspectOptions(sentence_id=sentence_id)
    check_options(stage, options)
    problems = store.problems(stage, key)
    if problems == [ABSENT]:
        raise UserError(f"artifact {stage}/{key} is not in {store.root} (deleted? rerun the config to rebuild it)")
    if problems:
        raise UserError(f"artifact {stage}/{key} is corrupt: {'; '.join(problems)} "
                        "(rerun the config to recompute it; `concner verify --all` checks the whole store)")
    manifest = store.manifest(stage, key) or {}
    console.print(f"[bold]{stage}[/bold] {key}  {escape(str(store.stage_dir(stage, key)))}")
    material = manifest.get("key_material")
    if material:
        inputs = ", ".join(f"{dep} {digest[:8]}" for dep, digest in material.get("inputs", {}).items()) or "none"
        libraries = ", ".join(f"{k} {v}" for k, v in material.get("libraries", {}).items()) or "none"
        # escaped: rich would read the bracketed lists as style tags and print nothing of them
        console.print(escape(f"key covers: code {material.get('code', '')[:8]} (v{material.get('version')}), "
                             f"params, input content [{inputs}], libraries [{libraries}]"), style="dim",
                      highlight=False)
    summarize = get(stage).view.summary
    if summarize is not None:
        render_summary(console, summarize({"stage": stage, **manifest}, store.stage_dir(stage, key), options))
    else:
        console.print_json(json.dumps(manifest.get("metrics", {}), default=str))


# -- sweeps (`concner sweep`, `concner inspect SWEEP_ID`) ------------------------------------------


def sweep_setting_tables(record: dict) -> list[Table]:
    """One table per setting: every score (model/set[@target]) with P, R, F1 as mean ± sd over seeds."""
    from concner.flows.sweep import fmt_stat, setting_stats

    tables = []
    for setting, per_score in setting_stats(record).items():
        members = [m for m in record["members"] if m["setting"] == setting]
        done = [m for m in members if m["status"] == "completed"]
        title = (f"{setting}: seeds {', '.join(str(m['seed']) for m in members)} "
                 f"({len(done)}/{len(members)} completed)")
        table = Table(title=Text(title), title_justify="left")
        for col in ("score", "P", "R", "F1", "seeds"):
            table.add_column(col, justify="left" if col == "score" else "right")
        for name, stats in per_score.items():
            table.add_row(Text(name), *(fmt_stat(stats.get(m)) for m in ("precision", "recall", "f1")),
                          str(stats["f1"].n if "f1" in stats else 0))
        if not per_score:
            table.add_row("no scores", "-", "-", "-", "0")
        tables.append(table)
    return tables


def sweep_overview_table(record: dict, metric: str = "f1") -> Table:
    """Settings (rows) × scores (columns), one metric as mean ± sd; the best mean per score in bold."""
    from concner.flows.sweep import fmt_stat, score_names, setting_stats

    stats = setting_stats(record)
    names = score_names(record)
    what = "F1" if metric == "f1" else metric
    table = Table(title=f"sweep {record['sweep_id']} ({record.get('status')}): {what} in %, mean ± sd over seeds "
                        "(seqeval default mode)")
    table.add_column("setting")
    for name in names:
        table.add_column(Text(name), justify="right", overflow="fold")  # on a narrow terminal: folded, not cut
    best = {}
    for name in names:
        means = [per[name][metric].mean for per in stats.values() if name in per and metric in per[name]]
        best[name] = max(means) if means else None
    for setting, per in stats.items():
        cells = []
        for name in names:
            stat = per.get(name, {}).get(metric)
            is_best = stat is not None and stat.mean == best[name] and len(stats) > 1
            cells.append(Text(fmt_stat(stat), style="bold green" if is_best else ""))
        table.add_row(Text(setting), *cells)
    return table


def sweep_members_table(record: dict) -> Table:
    table = Table(title=f"members of {record['sweep_id']}")
    for col in ("#", "setting", "seed", "run", "status", "scores"):
        table.add_column(col, no_wrap=col in ("run", "status"))  # a run id must stay copyable
    for m in record["members"]:
        style = {"completed": "green", "failed": "red", "interrupted": "red"}.get(m["status"], "yellow")
        scores = ", ".join(f"{name} F1 {100 * s['f1']:.1f}" for name, s in (m.get("scores") or {}).items())
        if m.get("error"):  # the first sentence: the whole message is in the member's run record
            error = m["error"].split(". ", 1)[0]
            error = error if len(error) <= 160 else error[:157] + "..."
            where = f" in {m['failed_stage']}" if m.get("failed_stage") else ""
            scores = (scores + "; " if scores else "") + f"error{where}: {error}"
        table.add_row(str(m["index"] + 1), Text(m["setting"]), str(m["seed"]), m.get("run_id") or "-",
                      Text(m["status"], style=style), Text(scores))
    return table


def show_sweep(console: Console, record: dict, store: ArtifactStore, members: bool = True) -> None:
    """A sweep: grid and seeds, (its members,) a table per setting and the overview."""
    from concner.flows.sweep import score_names, sweeps_dir

    grid = ", ".join(f"{k}={','.join(map(str, v))}" for k, v in (record.get("grid_text") or record["grid"]).items())
    head = Text("sweep ")
    head.append(record["sweep_id"], style="bold")
    until = f"  until {record['until']}" if record.get("until") else ""
    head.append(f" ({record.get('status')}): {record.get('config_file')}  grid {grid or '-'}  "
                f"seeds {', '.join(map(str, record['seeds']))}{until}")
    console.print(head, highlight=False)
    # piped or logged: each table at its natural width, so no score name is cut to `student/targ…`
    # (dev and test would look alike) and no mean ± sd loses its digits
    if members:
        print_whole(console, sweep_members_table(record))
    for table in sweep_setting_tables(record):
        print_whole(console, table)
    if score_names(record):
        print_whole(console, sweep_overview_table(record))
    path = sweeps_dir(store) / f"{record['sweep_id']}.json"
    console.print(f"sweep record: {path}", highlight=False, markup=False, soft_wrap=True)
