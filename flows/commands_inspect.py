"""`concner runs`, `inspect`, `predict`, `report`, `diff`, `verify`: commands that read a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from concner.flows.cli_common import StoreOpt, TargetOpt, app, console, err_console, is_sweep, read_store
from concner.flows.console_width import print_whole
from concner.tasks.engine.errors import UserError


@app.command()
def runs(
    store: StoreOpt = None,
    wide: Annotated[bool, typer.Option("--wide", help="Print at full width, wrapping nothing (the default when "
                                                      "stdout is not a terminal).")] = False,
) -> None:
    """List the runs in the store: full id, start time, status, stages computed/reused, F1 scores (projection too)."""
    from concner.flows.runs_view import print_runs

    st = read_store(store)
    for path, why in st.scan_runs()[1]:
        err_console.print(f"warning: {path}: unreadable run record, not listed ({why})", style="yellow",
                          highlight=False, markup=False, soft_wrap=True)
    print_runs(console, st, wide=wide)


@app.command()
def inspect(
    run_id: Annotated[str, typer.Argument(
        help="Run id (a unique prefix works), or 'latest'; or a sweep id (sweep-...).")],
    stage_name: Annotated[Optional[str], typer.Option("--stage", help="Show this stage's artifact.")] = None,
    sentence_id: Annotated[Optional[int], typer.Option("--id", help="Show this sentence id.")] = None,
    sort: Annotated[Optional[str], typer.Option(
        help="Row order: translate id|chrf|length, project id|failed|length, "
             "pseudo_label id|confidence|entities|length (worst/longest/least confident first).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        min=1, help="Sentences to show (default 10; 3 for project, 5 for ingest).")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the --sort order.")] = False,
    target: TargetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Show a run's stages, or one stage's artifact: stats, samples with entities highlighted, metrics."""
    from concner.flows.views import InspectOptions, show_stage, stage_summary_table
    from concner.tasks.engine.registry import stage_of

    st = read_store(store)
    if is_sweep(run_id):  # a sweep: mean ± sd per setting of every score
        from concner.flows.sweep import load_sweep
        from concner.flows.views import show_sweep

        sweep_rec = load_sweep(st, run_id)
        if stage_name is not None:
            raise UserError(f"{sweep_rec['sweep_id']} is a sweep: inspect a stage of one of its runs "
                            f"({', '.join(m['run_id'] for m in sweep_rec['members'] if m.get('run_id'))})")
        show_sweep(console, sweep_rec, st)
        return
    record = st.load_run(run_id)
    if stage_name is None:
        print_whole(console, stage_summary_table(record, st))
        return
    entry = f"{stage_name}@{target}" if target else stage_name
    if entry not in record["stages"]:
        branches = [e for e in record["stages"] if e.startswith(f"{stage_name}@")]
        hint = f"; pick a target with --target: {', '.join(branches)}" if branches and not target else ""
        raise UserError(f"run {record['run_id']} has no stage {entry!r} (it has: {', '.join(record['stages'])}){hint}")
    options = InspectOptions(sentence_id=sentence_id, sort=sort, limit=limit, reverse=reverse)
    show_stage(console, st, stage_of(entry), record["stages"][entry]["key"], options=options)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder: a stage's model/ (stages/train|distill/<key>/model) "
                                                "or any transformers token-classification folder.")],
    file: Annotated[Path, typer.Argument(help="Text to tag: CoNLL (tokens in the first column, tags ignored) "
                                               "or one sentence per line.")],
    out: Annotated[Optional[str], typer.Option(
        "--out", help="Output CoNLL file; '-' for stdout (default: FILE's stem + .pred.conll beside it).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Sentences per forward pass.")] = 32,
    max_length: Annotated[int, typer.Option(min=3, help="Subwords per sentence; words past it are tagged O.")] = 128,
    fmt: Annotated[str, typer.Option("--format", help="auto, conll or lines (auto needs a blank line to see CoNLL).")] = "auto",
) -> None:
    """Tag a file with a trained model and write IOB2 CoNLL (token<TAB>tag, blank line between sentences)."""
    from concner.flows.predict import STDOUT, predict_file, summary_lines

    summary = predict_file(model, file, out, batch_size=batch_size, max_length=max_length, fmt=fmt)
    report_to = err_console if out == STDOUT else console  # keep stdout pure CoNLL when piping
    for line in summary_lines(summary):
        report_to.print(line, highlight=False, markup=False, soft_wrap=True,
                        style="yellow" if line.startswith("warning") else None)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(
        help="Run id (a unique prefix works), or 'latest'; or a sweep id (sweep-...).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file to write (default: report-<run-id>.html).")] = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="Also write every plot as <DIR>/<figure>.png.")] = None,
    store: StoreOpt = None,
) -> None:
    """Write a self-contained HTML report of a run: scores, loss curves, projection, translation, timings, config."""
    from concner.flows.report import write_report

    st = read_store(store)
    if is_sweep(run_id):  # a sweep: scores per setting with error bars (sd over seeds)
        from concner.flows.report import write_sweep_report
        from concner.flows.sweep import load_sweep

        record = load_sweep(st, run_id)
        target = out or Path(f"report-{record['sweep_id']}.html")
        sections = write_sweep_report(record, st, target, png)
    else:
        record = st.load_run(run_id)
        target = out or Path(f"report-{record['run_id']}.html")
        sections = write_report(record, st, target, png)
    console.print(f"report: {target.resolve()} ({sum(s.png is not None for s in sections)} plots: "
                  + ", ".join(s.id for s in sections if s.png is not None) + ")")
    for s in sections:
        if s.png is None:
            console.print(f"  {s.id}: {s.note}", style="dim", highlight=False)
    if png is not None:
        console.print(f"plots: {png.resolve()}")


@app.command()
def diff(
    run_a: Annotated[str, typer.Argument(help="First run (id, unique prefix, or 'latest').")],
    run_b: Annotated[str, typer.Argument(help="Second run (id, unique prefix, or 'latest').")],
    per_type: Annotated[bool, typer.Option("--per-type", help="Also compare F1 per entity type.")] = False,
    store: StoreOpt = None,
) -> None:
    """Compare two runs: config changes, which stages changed and why, and score deltas."""
    from concner.flows.diff import diff_runs, render

    st = read_store(store)
    console.print(render(diff_runs(st, st.load_run(run_a), st.load_run(run_b), per_type=per_type)))


@app.command()
def verify(
    run_id: Annotated[Optional[str], typer.Argument(help="Run whose artifacts to check (id, unique prefix, 'latest'); "
                                                         "omit with --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Check every artifact in the store.")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="Remove corrupt artifacts and dead writers' temp folders, "
                                                          "so that the next run recomputes them.")] = False,
    store: StoreOpt = None,
) -> None:
    """Check artifacts byte for byte against their manifests (sha256 of every file).

    Exits 1 when something is corrupt (and was not repaired), 0 when all is intact."""
    import shutil

    from concner.tasks.engine.registry import stage_of

    st = read_store(store)
    if all_ == (run_id is not None):
        raise UserError("give a RUN or --all")
    if all_:
        targets = st.artifacts()
    else:
        record = st.load_run(run_id)
        targets = [(stage_of(entry), info["key"]) for entry, info in record["stages"].items()]
    say = lambda text, style=None: console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)
    say(f"verify {st.root}")
    corrupt = 0
    for stage_name, key in targets:
        problems = st.problems(stage_name, key, full=True)
        if not problems:
            say(f"  ok       {stage_name}/{key}", "green")
            continue
        corrupt += 1
        if repair:
            st.remove(stage_name, key)
        for problem in problems:
            say(f"  {'removed' if repair else 'CORRUPT'}  {stage_name}/{key}: {problem}", "yellow" if repair else "red")
    leftovers = st.leftovers()
    for tmp in leftovers:
        if repair:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"  {'removed' if repair else 'LEFTOVER'} {tmp}: temporary folder of a writer that is gone",
            "yellow" if repair else "red")
    # a run record is never removed, not even by --repair: it may be the only trace of what a run
    # did, and the user decides whether it can go
    bad_records = st.scan_runs()[1]
    for path, why in bad_records:
        say(f"  UNREADABLE {path}: run record ({why}); fix or remove it by hand", "red")
    say(f"{len(targets)} artifacts checked, {corrupt} corrupt, {len(leftovers)} leftover temp folders"
        + (f", {len(bad_records)} unreadable run records" if bad_records else "")
        + (" (repaired: the next run recomputes what was removed)" if repair and (corrupt or leftovers) else ""))
    if ((corrupt or leftovers) and not repair) or bad_records:
        raise typer.Exit(1)
