"""Rich renderings of runs and artifacts for `concner runs` and `concner inspect`."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from concner.tasks.corpus import Sentence
from concner.tasks.errors import UserError
from concner.tasks.registry import stage_of
from concner.tasks.store import ABSENT, ArtifactStore
from concner.tasks.tags import Span, spans

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
            extra = f" {note(e)}" if note else ""
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
            info.get("headline", ""),
            str(store.stage_dir(stage_of(name), info["key"])),
        )
    return table


# -- inspect: options shared by the stage views ----------------------------------------------------


@dataclass(frozen=True)
class InspectOptions:
    """What `concner inspect --stage` was asked for besides the stage: one sentence, a row order, a count."""

    sentence_id: int | None = None
    sort: str | None = None
    limit: int | None = None  # None: the view's own default
    reverse: bool = False


# Sort keys per view (the first is the default) and whether each sorts ascending. Each key's
# direction puts first the rows a user wants to look at: the worst chrF, the longest sentence,
# the most entities lost in projection, the least confident pseudo-labels.
SORT_KEYS: dict[str, dict[str, bool]] = {
    "translate": {"id": True, "chrf": True, "length": False},
    "project": {"id": True, "failed": False, "length": False},
    "pseudo_label": {"id": True, "confidence": True, "entities": False, "length": False},
}
ID_STAGES = ("ingest", "ingest_target", "translate", "project", "pseudo_label")  # views that show sentences


def check_options(stage: str, options: InspectOptions) -> None:
    """Reject options a stage's view cannot honour, rather than silently ignoring them."""
    keys = SORT_KEYS.get(stage, {})
    if options.sort is not None and options.sort not in keys:
        if keys:
            raise UserError(f"--sort {options.sort}: the {stage} view sorts by {', '.join(keys)}")
        raise UserError(f"--sort applies to the {', '.join(SORT_KEYS)} views, not {stage}")
    if options.sentence_id is not None and stage not in ID_STAGES:
        raise UserError(f"--id applies to the {', '.join(ID_STAGES)} views, not {stage}")
    if options.limit is not None and options.limit < 1:
        raise UserError("--limit must be at least 1")


def select_rows(frame: pd.DataFrame, sort_values: pd.Series, *, ascending: bool, options: InspectOptions,
                default_limit: int, what: str) -> pd.DataFrame:
    """The rows to show: the one sentence --id names, else the first `limit` in sort order (ties by id)."""
    if options.sentence_id is not None:
        rows = frame[frame["id"] == options.sentence_id]
        if rows.empty:
            known = f"ids {frame['id'].min()}..{frame['id'].max()}" if len(frame) else "it is empty"
            raise UserError(f"no sentence with id {options.sentence_id} in {what} ({known})")
        return rows
    keyed = frame.assign(_sort=list(sort_values))
    ordered = keyed.sort_values(["_sort", "id"], ascending=[ascending != options.reverse, True],
                                na_position="last", kind="mergesort")
    return ordered.drop(columns="_sort").head(options.limit or default_limit)


def sort_title(stage: str, options: InspectOptions, shown: int, total: int) -> str:
    if options.sentence_id is not None:
        return f"sentence {options.sentence_id}"
    sort = options.sort or next(iter(SORT_KEYS[stage]))
    direction = "ascending" if SORT_KEYS[stage][sort] != options.reverse else "descending"
    return f"{shown} of {total}, by {sort} ({direction})"


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def key_value_table(title: str, items: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in items.items():
        table.add_row(k, str(v))
    return table


# -- ingest ----------------------------------------------------------------------------------------


def show_ingest(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                options: InspectOptions | None = None) -> None:
    from concner.tasks.artifacts import load_split, sample_split

    options = options or InspectOptions(sentence_id=sentence_id)
    metrics = manifest["metrics"]
    types = metrics.get("entity_types", [])
    table = Table(title=f"{manifest.get('stage', 'ingest')}: corpora")
    for col in ("split", "sentences", "tokens", "entities", "file"):
        table.add_column(col)
    for split, s in metrics["splits"].items():
        ents = ", ".join(f"{k} {v}" for k, v in s["entities"].items()) or "-"
        table.add_row(split, str(s["sentences"]), str(s["tokens"]), ents, s["file"])
    console.print(table)
    split = sample_split(metrics["splits"])
    if split is None:
        return
    sentences = load_split(folder, split)
    if sentence_id is not None:
        chosen = [s for s in sentences if s.id == sentence_id]
        if not chosen:
            raise UserError(f"no sentence with id {sentence_id} in {split} (0..{len(sentences) - 1})")
    else:
        chosen = sentences[: options.limit or 5]
    console.print(f"[bold]{split} samples[/bold]")
    for s in chosen:
        console.print(Text(f"#{s.id} ", style="dim") + highlight(s, types))


# -- translate -------------------------------------------------------------------------------------


def chrf_column(frame: pd.DataFrame) -> str | None:
    """The per-sentence chrF column: against a reference when there is one, else round-trip."""
    return next((c for c in ("chrf", "round_trip_chrf") if c in frame.columns), None)


def source_lengths(frame: pd.DataFrame) -> pd.Series:
    """Source length in words (the artifact keeps the source as text)."""
    from concner.tasks.wordtok import word_tokenize

    return frame["source_text"].map(lambda text: len(word_tokenize(text)))


def translation_rows(frame: pd.DataFrame, options: InspectOptions, default_limit: int = 10) -> pd.DataFrame:
    """The translations to show, in the order `options.sort` asks for (`id`, `chrf` lowest first, `length`
    longest first)."""
    sort = options.sort or "id"
    if sort == "chrf":
        column = chrf_column(frame)
        if column is None:
            raise UserError("this translate artifact has no per-sentence chrF (it needs translate.reference_file, "
                            "or translate.reverse_model for round-trip chrF): sort by id or length")
        values = frame[column]
    elif sort == "length":
        values = source_lengths(frame)
    else:
        values = frame["id"]
    return select_rows(frame, values, ascending=SORT_KEYS["translate"][sort], options=options,
                       default_limit=default_limit, what="translations")


def translation_flags(row) -> str:
    flags = [name for name in ("empty", "truncated") if bool(getattr(row, name, False))]
    if not row.kept and not row.empty:
        flags.append("dropped (below translate.min_chrf)")
    return ", ".join(flags)


def show_translate(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                   options: InspectOptions | None = None) -> None:
    options = options or InspectOptions(sentence_id=sentence_id)
    m = manifest["metrics"]
    summary: dict[str, object] = {"backend": m.get("backend", "?")}
    if m.get("backend") == "parallel":
        summary["parallel file"] = m.get("parallel_file", "?")
    else:
        summary["model"] = m.get("model", "?")
    summary.update({
        "sentences": m.get("sentences"),
        "kept": m.get("kept"),
        "empty translations": m.get("empty", 0),
        "truncated inputs": m.get("truncated", 0),
        "dropped below min_chrf": m.get("dropped_below_threshold", 0),
    })
    for name, value in (m.get("quality") or {}).items():
        if isinstance(value, (int, float)):
            summary[f"{name} (vs reference)"] = f"{value:.2f}"
    round_trip = m.get("round_trip_chrf")
    if isinstance(round_trip, (int, float)):
        summary["round-trip chrF"] = f"{round_trip:.2f}"
    if m.get("sentences_per_second"):
        summary["speed"] = f"{m['sentences_per_second']} sentences/s ({m.get('seconds')} s)"
    console.print(key_value_table("translate: summary", summary))

    frame = pd.read_parquet(folder / "translations.parquet")
    rows = translation_rows(frame, options)
    score = chrf_column(frame)
    lengths = source_lengths(rows)
    table = Table(title=f"translations ({sort_title('translate', options, len(rows), len(frame))})")
    table.add_column("id", justify="right")
    table.add_column("source", ratio=1)
    table.add_column("translation", ratio=1)
    table.add_column("words", justify="right")
    if score:
        table.add_column("chrF" if score == "chrf" else "rt chrF", justify="right")
    table.add_column("flags")
    for row, n_src in zip(rows.itertuples(), lengths):
        cells = [str(row.id), row.source_text, row.translation_text or "", f"{n_src}/{len(row.translation_tokens)}"]
        if score:
            cells.append(f"{getattr(row, score):.1f}")
        cells.append(translation_flags(row))
        table.add_row(*cells)
    console.print(table)
    if not score:
        console.print("[dim]no per-sentence chrF: set translate.reference_file (or translate.reverse_model)[/dim]")


# -- project ---------------------------------------------------------------------------------------

SUCCESS = ("projected", "repaired", "merged")
OUTCOME_WHY = {  # the rule of tasks/projection.py behind each outcome, in a few words
    "projected": "aligned words form one run",
    "repaired": "aligned words not contiguous: 1-word gap bridged, else longest run kept",
    "merged": "overlapped a same-type span: merged",
    "collided": "overlapped a longer span of another type: dropped",
    "unaligned": "no aligned non-punctuation word: dropped",
}


def projection_entities(frame: pd.DataFrame) -> list[list[dict]]:
    return [json.loads(e) for e in frame["entities"]]


def failed_counts(frame: pd.DataFrame) -> pd.Series:
    """Entities per sentence that did not make it onto the translation (collided or unaligned)."""
    return pd.Series([sum(e["outcome"] not in SUCCESS for e in ents) for ents in projection_entities(frame)],
                     index=frame.index)


def outcome_table(frame: pd.DataFrame, metrics: dict) -> Table:
    """Outcome counts per entity type, with each type's projection rate."""
    from concner.tasks.projection import OUTCOMES

    by_type: dict[str, Counter] = {}
    for ents in projection_entities(frame):
        for e in ents:
            by_type.setdefault(e["label"], Counter())[e["outcome"]] += 1
    total = sum((c for c in by_type.values()), Counter())
    table = Table(title="project: outcome per source entity", pad_edge=False)  # fits 80 columns
    table.add_column("type")
    for outcome in OUTCOMES:
        table.add_column(outcome, justify="right")
    table.add_column("total", justify="right")
    table.add_column("rate %", justify="right")
    for label, counts in [*sorted(by_type.items()), ("ALL", total)]:
        n = sum(counts.values())
        rate = sum(counts[o] for o in SUCCESS) / n if n else None
        table.add_row(label, *(str(counts[o]) for o in OUTCOMES), str(n), pct(rate),
                      style="bold" if label == "ALL" else None)
    return table


def quality_table(title: str, scores: dict) -> Table:
    """P/R/F1 overall and per type from a score_tags dict."""
    table = Table(title=title)
    for col in ("type", "P", "R", "F1", "support"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for label, s in sorted(scores.get("per_type", {}).items()):
        table.add_row(label, pct(s["precision"]), pct(s["recall"]), pct(s["f1"]), str(s.get("support", "")))
    table.add_row("ALL", pct(scores["precision"]), pct(scores["recall"]), pct(scores["f1"]),
                  str(sum(s.get("support", 0) for s in scores.get("per_type", {}).values())), style="bold")
    return table


def alignment_links(source: Sequence[str], target: Sequence[str], links: Sequence[Sequence[int]],
                    source_spans: Sequence[Span], labels: list[str]) -> Text:
    """`Pedro→Pedro, visited→visitó, ...` in source order; links from inside an entity take its colour."""
    label_at = {i: s.label for s in source_spans for i in range(s.start, s.end)}
    text = Text()
    for n, (s, t) in enumerate(sorted((int(a), int(b)) for a, b in links)):
        if n:
            text.append(", ")
        style = entity_style(label_at[s], labels) if s in label_at else ""
        text.append(f"{source[s]}→{target[t]}", style=style)
    return text


def entity_outcomes(source: Sequence[str], target: Sequence[str], links: Sequence[Sequence[int]],
                    entities: list[dict], labels: list[str]) -> Table:
    """One row per source entity: where its words aligned, where it landed, and why."""
    table = Table(show_edge=False, pad_edge=False)
    for col in ("type", "source span", "aligned to", "target span", "outcome"):
        table.add_column(col)
    for e in entities:
        aligned = sorted({int(t) for s, t in links if e["source_start"] <= int(s) < e["source_end"]})
        landed = (" ".join(target[e["target_start"] : e["target_end"]])
                  if e["outcome"] in SUCCESS and e["target_start"] is not None else "-")
        style = entity_style(e["label"], labels)
        table.add_row(
            Text(e["label"], style=style),
            " ".join(source[e["source_start"] : e["source_end"]]),
            " ".join(target[t] for t in aligned) or "-",
            landed,
            Text(f"{e['outcome']}: {OUTCOME_WHY.get(e['outcome'], '')}",
                 style="green" if e["outcome"] in SUCCESS else "red"),
        )
    return table


def show_projected_sentence(console: Console, row, labels: list[str]) -> None:
    source, target = list(row.source_tokens), list(row.target_tokens)
    links = [list(pair) for pair in row.alignment]
    source_spans = spans(list(row.source_tags))
    kept = "kept" if row.kept else "dropped (an entity was lost and project.keep=complete)"
    console.print(Text(f"#{row.id} ({kept})", style="bold"))
    console.print(Text("  source:    ", style="dim") + highlight_spans(source, source_spans, labels))
    console.print(Text("  projected: ", style="dim") + highlight_spans(target, spans(list(row.projected_tags)), labels))
    if row.gold_tags is not None:
        console.print(Text("  gold:      ", style="dim") + highlight_spans(target, spans(list(row.gold_tags)), labels))
    console.print(Text("  links:     ", style="dim") + alignment_links(source, target, links, source_spans, labels))
    linked = {int(s) for s, _ in links}
    loose = [tok for i, tok in enumerate(source) if i not in linked]
    if loose:  # the words no link leaves from: often why an entity came out unaligned
        console.print(Text("  no link:   ", style="dim") + Text(" ".join(loose)))
    entities = json.loads(row.entities)
    if entities:
        console.print(entity_outcomes(source, target, links, entities, labels))
    console.print()


def show_project(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                 options: InspectOptions | None = None) -> None:
    options = options or InspectOptions(sentence_id=sentence_id)
    m = manifest["metrics"]
    frame = pd.read_parquet(folder / "projected.parquet")
    aligner = m.get("aligner", {})
    summary = {
        "aligner": f"{aligner.get('model')} layer {aligner.get('layer')} {aligner.get('method')}",
        "sentence pairs": m.get("pairs"),
        "kept / dropped sentences": f"{m.get('kept_sentences')} / {m.get('dropped_sentences')}",
        "projection rate": f"{pct(m.get('projection_rate'))}%",
        **{k.replace("_", " "): v for k, v in (m.get("counts") or {}).items() if v},
    }
    console.print(key_value_table("project: summary", summary))
    console.print(outcome_table(frame, m))
    if m.get("projection_quality"):
        console.print(quality_table("projection vs gold target tags (%)", m["projection_quality"]))
    sort = options.sort or "id"
    values = {"id": frame["id"], "failed": failed_counts(frame),
              "length": frame["source_tokens"].map(len)}[sort]
    rows = select_rows(frame, values, ascending=SORT_KEYS["project"][sort], options=options, default_limit=3,
                       what="projected sentences")
    labels = sorted({e["label"] for ents in projection_entities(frame) for e in ents})
    console.print(Text(f"sentences ({sort_title('project', options, len(rows), len(frame))})", style="bold"))
    for row in rows.itertuples():
        show_projected_sentence(console, row, labels)


# -- train and distill -----------------------------------------------------------------------------

_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """The curve in `width` block characters (bucket means), scaled between its min and max."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return ""
    buckets = [values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)]
    means = [sum(b) / len(b) for b in buckets if b]
    lo, hi = min(means), max(means)
    if hi == lo:
        return _SPARK[0] * len(means)
    return "".join(_SPARK[round((v - lo) / (hi - lo) * (len(_SPARK) - 1))] for v in means)


def loss_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """First, last and minimum (with its step) of every loss term logged per optimizer step."""
    terms = [c for c in steps.columns if c not in ("step", "epoch", "lr")]
    rows = []
    for term in terms:
        values = steps[term].astype(float)
        best = int(values.to_numpy().argmin())
        rows.append({"term": term, "first": values.iloc[0], "last": values.iloc[-1], "min": values.min(),
                     "min_step": int(steps["step"].iloc[best]), "curve": sparkline(list(values))})
    return pd.DataFrame(rows)


def scores_table(title: str, scores: dict) -> Table:
    """Per labeled set and entity type: P/R/F1 and support."""
    table = Table(title=title)
    for col in ("set", "type", "P", "R", "F1", "support"):
        table.add_column(col, justify="right" if col in ("P", "R", "F1", "support") else "left")
    for split, s in scores.items():
        for label, t in sorted(s.get("per_type", {}).items()):
            table.add_row(split, label, pct(t["precision"]), pct(t["recall"]), pct(t["f1"]), str(t.get("support", "")))
        support = sum(t.get("support", 0) for t in s.get("per_type", {}).values())
        table.add_row(split, "ALL", pct(s["precision"]), pct(s["recall"]), pct(s["f1"]), str(support),
                      style="bold", end_section=True)
    return table


def epochs_table(epochs: pd.DataFrame, best_epoch: int | None) -> Table:
    table = Table(title="epochs (* = best, its weights are the saved model)")
    cols = [c for c in ("epoch", "loss", "dev_precision", "dev_recall", "dev_f1") if c in epochs.columns]
    for col in cols:
        table.add_column({"loss": "mean loss"}.get(col, col.replace("dev_", "dev ")), justify="right")
    for row in epochs.to_dict("records"):
        cells = [f"{int(row['epoch'])}{'*' if row['epoch'] == best_epoch else ''}", f"{row['loss']:.4f}"]
        cells += [pct(row[c]) for c in cols[2:]]
        table.add_row(*cells)
    return table


def show_training(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                  options: InspectOptions | None = None) -> None:
    """The train (teacher) and distill (student) stages: scores, epochs and loss curves."""
    m = manifest["metrics"]
    summary = {
        "encoder": m.get("encoder"),
        "labels": " ".join(m.get("labels", [])),
        "training data": (f"{m['train_sources']} source sentences, {m['train_pairs']} with a projected translation"
                          if "train_sources" in m else f"{m.get('train_sentences')} pseudo-labeled sentences"),
        "dev set (model selection)": m.get("dev_set") or "none: the last epoch is kept",
        "best epoch": f"{m.get('best_epoch')} of {len(m.get('epochs', []))}"
                      + (" (stopped early)" if m.get("stopped_early") else ""),
        "model": folder / "model",
    }
    console.print(key_value_table(f"{manifest['stage']}: summary", summary))
    if m.get("scores"):
        console.print(scores_table("scores on labeled target sets (%)", m["scores"]))
    else:
        console.print("[dim]no labeled target set in this run: no scores[/dim]")
    epochs_file = folder / "epochs.parquet"
    epochs = pd.read_parquet(epochs_file) if epochs_file.exists() else pd.DataFrame(m.get("epochs", []))
    if len(epochs):
        console.print(epochs_table(epochs, m.get("best_epoch")))
    steps_file = folder / "steps.parquet"
    if steps_file.exists():
        steps = pd.read_parquet(steps_file)
        table = Table(title=f"loss terms over {len(steps)} steps")
        for col in ("term", "first", "last", "min", "at step", "curve"):
            table.add_column(col, justify="left" if col in ("term", "curve") else "right")
        for r in loss_summary(steps).to_dict("records"):
            table.add_row(r["term"], f"{r['first']:.4f}", f"{r['last']:.4f}", f"{r['min']:.4f}", str(r["min_step"]),
                          r["curve"])
        console.print(table)


# -- pseudo_label ----------------------------------------------------------------------------------


def histogram_bars(counts: Sequence[int], edges: Sequence[float], width: int = 40) -> Text:
    """One text bar per confidence bin, scaled to the fullest bin."""
    top = max(counts) if counts else 0
    text = Text()
    for i, n in enumerate(counts):
        bar = "█" * (round(width * n / top) if top else 0)
        text.append(f"  {edges[i]:.2f}-{edges[i + 1]:.2f} ")
        text.append(bar or "·", style="cyan" if bar else "dim")
        text.append(f" {n}\n")
    return text


def show_pseudo_label(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                      options: InspectOptions | None = None) -> None:
    options = options or InspectOptions(sentence_id=sentence_id)
    m = manifest["metrics"]
    frame = pd.read_parquet(folder / "pseudo_labels.parquet")
    summary = {
        "sentences": m.get("sentences"),
        "kept / dropped": f"{m.get('kept')} / {m.get('dropped')}",
        "mean sentence confidence": f"{m.get('mean_confidence', 0):.3f}",
        "entities in kept sentences": ", ".join(f"{k} {v}" for k, v in m.get("entities", {}).items()) or "none",
    }
    if m.get("tags_ignored"):
        summary["note"] = "the unlabeled file had a tag column: it was ignored"
    console.print(key_value_table("pseudo_label: summary", summary))
    hist = m.get("confidence_histogram")
    if hist:
        console.print(Text("sentence confidence (mean of the teacher's top word probability)", style="bold"))
        console.print(histogram_bars(hist["counts"], hist["edges"]))
    sort = options.sort or "id"
    values = {"id": frame["id"], "confidence": frame["confidence"], "entities": frame["entities"],
              "length": frame["tokens"].map(len)}[sort]
    rows = select_rows(frame, values, ascending=SORT_KEYS["pseudo_label"][sort], options=options, default_limit=10,
                       what="pseudo-labeled sentences")
    labels = [label[2:] for label in m.get("labels", []) if label.startswith("B-")]
    console.print(Text(f"sentences ({sort_title('pseudo_label', options, len(rows), len(frame))}); "
                       "an entity shows its mean word confidence", style="bold"))
    for row in rows.itertuples():
        conf = [float(c) for c in row.word_confidence]
        note = lambda span, conf=conf: f"{sum(conf[span.start:span.end]) / (span.end - span.start):.2f}"  # noqa: E731
        head = Text(f"#{row.id} conf {row.confidence:.3f} {'kept' if row.kept else 'dropped'} ",
                    style="dim" if row.kept else "red")
        console.print(head + highlight_spans(list(row.tokens), spans(list(row.tags)), labels, note))


# -- evaluate --------------------------------------------------------------------------------------


def comparison_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """scores.parquet (a row per model, set, type) as a row per set and type with teacher and student side by side."""
    wide = scores.pivot_table(index=["set", "type"], columns="model", values=["precision", "recall", "f1"],
                              aggfunc="first")
    wide.columns = [f"{model}_{metric}" for metric, model in wide.columns]
    support = scores.dropna(subset=["support"]).groupby(["set", "type"])["support"].first()
    wide = wide.join(support).reset_index()
    # ALL last within each set, where a total belongs
    wide["_all"] = wide["type"] == "ALL"
    return wide.sort_values(["set", "_all", "type"]).drop(columns="_all").reset_index(drop=True)


def show_evaluate(console: Console, folder: Path, manifest: dict, sentence_id: int | None,
                  options: InspectOptions | None = None) -> None:
    scores = pd.read_parquet(folder / "scores.parquet")
    if scores.empty:
        console.print("[dim]no labeled target set in this run: nothing to compare[/dim]")
        return
    wide = comparison_frame(scores)
    models = [m for m in ("teacher", "student") if f"{m}_f1" in wide.columns]
    for split, rows in wide.groupby("set", sort=False):
        console.print(comparison_table(split, rows, models))


def comparison_table(split: str, rows: pd.DataFrame, models: list[str]) -> Table:
    """One labeled set: P/R/F1 of each model per type, the student's F1 gain, and the entity support."""
    # one-letter model prefixes keep the nine columns inside an 80-column terminal
    table = Table(title=f"{split}: teacher vs student (%)",
                  caption="T = teacher (train), S = student (distill), n = gold entities; seqeval default (conlleval)")
    table.add_column("type")
    for model in models:
        for metric in ("P", "R", "F1"):
            table.add_column(f"{model[0].upper()} {metric}", justify="right")
    if len(models) == 2:
        table.add_column("Δ F1", justify="right")
    table.add_column("n", justify="right")
    total = int(rows["support"].fillna(0).sum()) if "support" in rows else 0
    for r in rows.to_dict("records"):
        cells: list = [r["type"]]
        for model in models:
            cells += [pct(r[f"{model}_precision"]), pct(r[f"{model}_recall"]), pct(r[f"{model}_f1"])]
        if len(models) == 2:
            delta = 100 * (r["student_f1"] - r["teacher_f1"])
            cells.append(Text(f"{delta:+.1f}", style="green" if delta > 0 else "red" if delta < 0 else ""))
        support = r.get("support")
        if r["type"] == "ALL":
            support = total
        cells.append("" if support is None or math.isnan(support) else str(int(support)))
        table.add_row(*cells, style="bold" if r["type"] == "ALL" else None)
    return table


# (console, artifact folder, manifest, sentence id, options); the sentence id stays a positional
# argument of its own so callers of the original four-argument form keep working
Inspector = Callable[[Console, Path, dict, int | None, InspectOptions | None], None]

INSPECTORS: dict[str, Inspector] = {
    "ingest": show_ingest,
    "ingest_target": show_ingest,
    "translate": show_translate,
    "project": show_project,
    "train": show_training,
    "pseudo_label": show_pseudo_label,
    "distill": show_training,
    "evaluate": show_evaluate,
}


def show_stage(console: Console, store: ArtifactStore, stage: str, key: str, sentence_id: int | None = None,
               options: InspectOptions | None = None) -> None:
    options = options or InspectOptions(sentence_id=sentence_id)
    check_options(stage, options)
    problems = store.problems(stage, key)
    if problems == [ABSENT]:
        raise UserError(f"artifact {stage}/{key} is not in {store.root} (deleted? rerun the config to rebuild it)")
    if problems:
        raise UserError(f"artifact {stage}/{key} is corrupt: {'; '.join(problems)} "
                        "(rerun the config to recompute it; `concner verify --all` checks the whole store)")
    manifest = store.manifest(stage, key) or {}
    console.print(f"[bold]{stage}[/bold] {key}  {store.stage_dir(stage, key)}")
    material = manifest.get("key_material")
    if material:
        inputs = ", ".join(f"{dep} {digest[:8]}" for dep, digest in material.get("inputs", {}).items()) or "none"
        libraries = ", ".join(f"{k} {v}" for k, v in material.get("libraries", {}).items()) or "none"
        console.print(f"key covers: code {material.get('code', '')[:8]} (v{material.get('version')}), "
                      f"params, input content [{inputs}], libraries [{libraries}]", style="dim", highlight=False)
    inspector = INSPECTORS.get(stage)
    if inspector:
        inspector(console, store.stage_dir(stage, key), manifest, options.sentence_id, options)
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
        table.add_column(Text(name), justify="right")
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
    if members:
        console.print(sweep_members_table(record))
    for table in sweep_setting_tables(record):
        console.print(table)
    if score_names(record):
        console.print(sweep_overview_table(record))
    path = sweeps_dir(store) / f"{record['sweep_id']}.json"
    console.print(f"sweep record: {path}", highlight=False, markup=False, soft_wrap=True)
