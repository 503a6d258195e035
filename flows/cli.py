"""The `concner` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from concner.flows.console_width import print_whole
from concner.tasks.errors import UserError

app = typer.Typer(
    help="concner: cross-lingual NER from a little labeled English data (ConCNER as a Prefect pipeline).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", envvar="CONCNER_STORE", help="Artifact store folder (default: the config's `store`, else ./artifacts)."),
]
TargetOpt = Annotated[
    Optional[str],
    typer.Option("--target", help="In a multi-target config: only this target (its `name`, else its `lang`)."),
]
SetOpt = Annotated[list[str], typer.Option("--set", help="Override a config key, e.g. --set train.epochs=2 (repeatable).")]
RunnerOpt = Annotated[Optional[str], typer.Option(
    "--runner", help="sequential (default: stages one after another in this process) or dask (independent branches "
                     "and sweep members at once on a Dask cluster; a local one unless --dask-address).")]
DaskAddressOpt = Annotated[Optional[str], typer.Option(
    "--dask-address", help="tcp://HOST:PORT of a running `dask scheduler` (implies --runner dask); the store must "
                           "be on a path every worker sees.")]


def _store_root(store: Path | None, config=None) -> Path:
    if store is not None:
        return store.resolve()
    if config is not None and config.store is not None:
        return Path(config.store)
    return Path("artifacts").resolve()


def _read_store(store: Path | None):
    """The store a command only reads. A --store that is no folder is an error: listing nothing
    and exiting 0 would hide a mistyped path."""
    from concner.tasks.store import ArtifactStore

    root = _store_root(store)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: not a folder (--store names a store folder)")
    if store is not None and not root.exists():
        raise UserError(f"{root}: no such store folder (--store)")
    return ArtifactStore(root)


def _print_plan(plan, warn: bool = True) -> None:
    """The plan line; with `warn`, a line per corrupt artifact (a run leaves those to the flow's log,
    which the Prefect UI shows too: printed here as well, each would appear twice)."""
    console.print(
        "plan: " + ", ".join(f"{p.entry} [{'green' if p.action == 'reuse' else 'yellow'}]{p.action}[/]" for p in plan)
    )
    for p in plan if warn else ():
        if p.note.startswith("corrupt"):
            err_console.print(f"warning: {p.entry}: {p.note}", style="yellow", highlight=False, markup=False,
                              soft_wrap=True)


# the signals that ended a run (SIGTERM raises KeyboardInterrupt, which the CLI would report as
# Ctrl-C's 130): main() exits 128 + signal, as a process ended by that signal is expected to
_signals_received: list[int] = []


def _interrupt(signum, frame):
    _signals_received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def _guard_process() -> None:
    """Before a run: SIGTERM ends it like Ctrl-C does (its record then says `interrupted` and names
    the stage), and Prefect's temporary server, when it uses one, ends with this process."""
    import signal

    from concner.flows.temporary_server import end_with_this_process

    signal.signal(signal.SIGTERM, _interrupt)
    end_with_this_process()


def _run_pipeline(config_path: Path, overrides: list[str], store: Path | None, force: list[str], until: str | None,
                  dry_run: bool = False, target: str | None = None, verify: bool = False) -> dict | None:
    from concner.tasks import registry
    from concner.tasks.config import load_config
    from concner.tasks.preflight import check_and_warn
    from concner.tasks.store import ArtifactStore

    config = load_config(config_path, overrides)
    stages = set(registry.upstream_closure(registry.get(until).name)) if until else None
    check_and_warn(config, err_console, _store_root(store, config), stages)  # inputs and store, before any stage
    from concner.flows.pipeline import pipeline_flow, plan_run, run_flow
    from concner.flows.views import stage_summary_table

    root = _store_root(store, config)
    plan = plan_run(config, ArtifactStore(root), force=set(force), until=until, target=target, verify=verify)
    _print_plan(plan, warn=dry_run)
    if dry_run:
        _print_estimates(config, {p.entry for p in plan if p.action != "reuse"})
        return None
    _check_runner(config.runner, root)
    computes = any(p.action != "reuse" for p in plan)
    _guard_process()
    record = run_flow(pipeline_flow, ArtifactStore(root), config.name, config=config.model_dump(mode="json"),
                      force=list(force), until=until, target=target, verify=verify, computes=computes)
    print_whole(console, stage_summary_table(record, ArtifactStore(root)))
    console.print(f"artifacts: {root}   run record: {root / 'runs' / (record['run_id'] + '.json')}")
    return record


def _print_estimates(config, entries: set[str] | None = None) -> None:
    """The time per stage; with `entries` (a dry run's stages to compute) only those, since a reused
    stage costs nothing."""
    from concner.flows.init_config import config_estimates, estimate_table

    langs = {branch: c.target_lang for branch, c in config.branches()}
    for branch, estimates in config_estimates(config):
        if entries is not None:
            # a plan entry is `train` or `train@<target>`; ingest's row also covers ingest_target
            wanted = {e.partition("@")[0] for e in entries if "@" not in e or e.partition("@")[2] == branch}
            wanted |= {"ingest"} if "ingest_target" in wanted else set()
            estimates = [e for e in estimates if e.stage in wanted]
            if not estimates:
                continue
        where = f" @{branch}" if branch else ""
        what = "estimate" if entries is None else "estimate of the stages to compute"
        console.print(estimate_table(f"{what}: {config.name}{where} ({config.source_lang} -> {langs[branch]})",
                                     estimates))


def _check_runner(runner, root: Path) -> None:
    """An existing Dask cluster is checked before anything runs: reachable, with workers that can
    import concner and see the store."""
    if runner.kind == "dask" and runner.address:
        from concner.flows.runner import check_cluster

        workers = check_cluster(runner.address, root)
        err_console.print(f"dask: {workers} workers at {runner.address}", highlight=False, markup=False)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/en-es.yaml.")],
    set_: SetOpt = [],
    force: Annotated[list[str], typer.Option("--force", help="Recompute this stage and everything downstream (repeatable).")] = [],
    until: Annotated[Optional[str], typer.Option(help="Stop after this stage.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print which stages would be reused or computed.")] = False,
    target: TargetOpt = None,
    store: StoreOpt = None,
    runner: RunnerOpt = None,
    dask_address: DaskAddressOpt = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Re-hash every byte of each artifact before reusing it; one found corrupt is recomputed. "
                         "Without it, reuse compares sizes and hashes only files whose size or mtime changed. "
                         "Costs about 1 s per GB of artifacts read on a 2-core machine.")] = False,
) -> None:
    """Run the pipeline DAG for a config; stages whose artifact exists for the same inputs are reused.

    A config with several `targets` runs one branch per target after one shared source ingest."""
    from concner.flows.runner import runner_overrides

    _run_pipeline(config, [*set_, *runner_overrides(runner, dask_address)], store, force, until, dry_run, target,
                  verify)


@app.command()
def demo(
    store: StoreOpt = None,
    set_: SetOpt = [],
    config: Annotated[str, typer.Option("--config", help="Bundled config to run: demo, or demo-multi "
                                                         "(two targets); they ship inside the package.")] = "demo",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print which stages would be reused or computed.")] = False,
) -> None:
    """Run the whole DAG on the bundled sample data with tiny local models (no downloads), from any folder."""
    from concner.tasks.bundled import config_path

    _run_pipeline(config_path(config), set_, store, [], None, dry_run)


@app.command()
def estimate(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOpt = [],
) -> None:
    """Print a rough time per stage for a config, from its files' sentence counts and its models' sizes.

    Nothing runs and the store is not read: every stage is counted, as on a first run."""
    from concner.tasks.config import load_config

    _print_estimates(load_config(config, set_))


FileOpt = Optional[Path]


@app.command()
def init(
    source_train: Annotated[FileOpt, typer.Option("--source-train", help="Labeled source training file (CoNLL).")] = None,
    source_dev: Annotated[FileOpt, typer.Option("--source-dev", help="Labeled source dev file (optional).")] = None,
    source_lang: Annotated[Optional[str], typer.Option("--source-lang", help="Source language code (default en).")] = None,
    target_lang: Annotated[Optional[str], typer.Option("--target-lang", help="Target language code, e.g. es.")] = None,
    target_unlabeled: Annotated[FileOpt, typer.Option("--target-unlabeled", help="Unlabeled target text.")] = None,
    target_test: Annotated[FileOpt, typer.Option("--target-test", help="Labeled target test file (optional).")] = None,
    target_dev: Annotated[FileOpt, typer.Option("--target-dev", help="Labeled target dev file (optional).")] = None,
    translator: Annotated[Optional[str], typer.Option("--translator", help="MarianMT model: hub name or folder.")] = None,
    parallel_file: Annotated[FileOpt, typer.Option("--parallel-file", help="Existing translations of the source "
                                                                          "sentences, in order (instead of a model).")] = None,
    encoder: Annotated[Optional[str], typer.Option("--encoder", help="Encoder: hub name, folder, package:MODULE/folder "
                                                                     "or tiny.")] = None,
    aligner: Annotated[Optional[str], typer.Option("--aligner", help="Aligner for projection (default: the encoder).")] = None,
    sample_size: Annotated[Optional[int], typer.Option("--sample-size", help="Use at most N labeled source sentences.")] = None,
    max_unlabeled: Annotated[Optional[int], typer.Option("--max-unlabeled", help="Distill on at most N unlabeled "
                                                                                 "sentences (default 3000 when more).")] = None,
    repair_tags: Annotated[bool, typer.Option("--repair-tags", help="Read invalid BIOES sequences as conlleval does.")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (default SRC-TGT).")] = None,
    out: Annotated[FileOpt, typer.Option("--out", help="Config file to write (default NAME.yaml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Set up a new language pair: check its files and models, and write a commented run config.

    Asks for whatever no flag gives (on a terminal); without a terminal a missing required flag is an error."""
    from rich.prompt import Prompt

    from concner.flows.init_config import Answers, Asker, gather, plan_table, prepare, write

    given = Answers(source_train, source_dev, source_lang, target_lang, target_unlabeled, target_test, target_dev,
                    translator, parallel_file, encoder, aligner, sample_size, max_unlabeled, repair_tags, name, out)
    say = lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True)
    def prompt(question: str, default: str | None) -> str:
        try:
            return Prompt.ask(question, console=console, default=default) or ""
        except EOFError:
            raise UserError(f"concner init: no answer to {question!r} (input ended)") from None

    plan = gather(given, Asker(prompt if sys.stdin.isatty() else None, say))
    prepared = prepare(plan, force=force)
    console.print(plan_table(plan, prepared.estimates))
    path = write(prepared)
    say(f"wrote {path}\nnext: concner run {path} --dry-run   (then without --dry-run)")


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="Stage to run: ingest, ingest_target, translate, project, train, pseudo_label, distill, evaluate.")],
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOpt = [],
    reuse: Annotated[bool, typer.Option("--reuse", help="Reuse the stage's artifact when it exists instead of recomputing.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print whether the stage would be reused or computed.")] = False,
    target: TargetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Run one stage alone; its inputs are read from the store (run their stages first)."""
    from concner.tasks import registry
    from concner.tasks.config import load_config
    from concner.tasks.preflight import check_and_warn
    from concner.tasks.store import ArtifactStore

    cfg = load_config(config, set_)
    check_and_warn(cfg, err_console, _store_root(store, cfg), {registry.get(name).name})  # before the stage runs
    from concner.flows.pipeline import plan_run, run_flow, stage_flow
    from concner.flows.views import stage_summary_table

    root = _store_root(store, cfg)
    _print_plan(plan_run(cfg, ArtifactStore(root), force=set() if reuse else {name}, only=name, target=target),
                warn=dry_run)
    if dry_run:
        return
    _guard_process()
    record = run_flow(stage_flow, ArtifactStore(root), cfg.name, stage_name=name,
                      config=cfg.model_dump(mode="json"), force=not reuse, target=target)
    print_whole(console, stage_summary_table(record, ArtifactStore(root)))


def _is_sweep(ident: str) -> bool:
    """A sweep id (`sweep-...`, a unique prefix, `sweep-latest`) or the path of a sweep record."""
    return ident.startswith("sweep-") or (ident.endswith(".json") and Path(ident).name.startswith("sweep-"))


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/demo.yaml.")],
    grid: Annotated[list[str], typer.Option("--grid", help="KEY=V1,V2,...: values to sweep, read as YAML like --set "
                                                         "(repeatable: the sweep is their cartesian product).")] = [],
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds per setting, e.g. 13,14,15 "
                                                                 "(default: the config's seed).")] = None,
    set_: SetOpt = [],
    until: Annotated[Optional[str], typer.Option(help="Stop every member after this stage.")] = None,
    select: Annotated[Optional[str], typer.Option(
        "--select", help="Print the best setting's config (highest mean over seeds of METRIC, e.g. "
                         "student/target_test.f1) as YAML on stdout; the tables then go to stderr.")] = None,
    store: StoreOpt = None,
    runner: RunnerOpt = None,
    dask_address: DaskAddressOpt = None,
) -> None:
    """Run a config over a grid of settings × seeds in one Prefect flow; members share upstream artifacts.

    Each member is an ordinary run: its own run record, the keys a single `concner run` of that setting makes.

    The sweep record sweeps/<sweep-id>.json holds the grid, the seeds and every member's run id, status and scores.
    Prints P/R/F1 as mean ± sd over seeds per setting."""
    from concner.flows.runner import runner_overrides
    from concner.flows.sweep import (best_config_yaml, new_sweep_id, parse_grid, parse_metric, parse_seeds,
                                     plan_members, preflight, start_sweep, sweep_record, sweeps_dir)
    from concner.flows.views import show_sweep
    from concner.tasks import registry
    from concner.tasks.preflight import check_store
    from concner.tasks.store import ArtifactStore

    out = err_console if select else console  # with --select, stdout holds only the YAML
    set_ = [*set_, *runner_overrides(runner, dask_address)]  # in every member's config (enters no key)
    parsed_grid = parse_grid(grid)
    seed_list = parse_seeds(seeds)
    if until is not None:
        registry.get(until)
    if select is not None:
        name, _ = parse_metric(select)
        if name.startswith("student/") and until is not None and "distill" not in registry.upstream_closure(until):
            raise UserError(f"--select {select}: the student is trained by distill, which --until {until} leaves out")
    base, members = plan_members(config, set_, parsed_grid, seed_list)
    root = _store_root(store, base)
    check_store(root)
    _check_runner(base.runner, root)
    for warning in preflight(members):  # every member's inputs read before anything runs
        err_console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    st = ArtifactStore(root)
    record = sweep_record(new_sweep_id(base.name), config, set_, base, parsed_grid, members, until, select)
    settings = len({m.label for m in members})
    out.print(f"sweep {record['sweep_id']}: {settings} settings × {len(record['seeds'])} seeds = {len(members)} runs",
              highlight=False, markup=False)
    import contextlib

    # with --select, whatever the stages print (progress bars) goes to stderr too
    _guard_process()
    with contextlib.redirect_stdout(sys.stderr) if select else contextlib.nullcontext():
        final = start_sweep(st, record)
    show_sweep(out, final, st, members=final["status"] != "completed")
    if select is not None and any(m["status"] == "completed" for m in final["members"]):
        sys.stdout.write(best_config_yaml(final, select))
    if final["status"] != "completed":
        path = sweeps_dir(st) / f"{final['sweep_id']}.json"
        err_console.print(f"error: sweep {final['status']}: {final.get('error', '')} (see {path})", style="red",
                          highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def runs(
    store: StoreOpt = None,
    wide: Annotated[bool, typer.Option("--wide", help="Print at full width, wrapping nothing (the default when "
                                                      "stdout is not a terminal).")] = False,
) -> None:
    """List the runs in the store: full id, start time, status, stages computed/reused, F1 scores (projection too)."""
    from concner.flows.runs_view import print_runs

    st = _read_store(store)
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
    from concner.tasks.registry import stage_of

    st = _read_store(store)
    if _is_sweep(run_id):  # a sweep: mean ± sd per setting of every score
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

    st = _read_store(store)
    if _is_sweep(run_id):  # a sweep: scores per setting with error bars (sd over seeds)
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

    st = _read_store(store)
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

    from concner.tasks.registry import stage_of

    st = _read_store(store)
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


CronOpt = Annotated[list[str], typer.Option("--cron", help='Cron schedule, e.g. "0 3 * * 1" (Mondays 03:00); repeatable.')]
TimezoneOpt = Annotated[Optional[str], typer.Option("--timezone", help="IANA time zone of the cron schedules (default UTC).")]


@app.command()
def deploy(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); its validated content is stored in the deployment.")],
    cron: CronOpt = [],
    name: Annotated[Optional[str], typer.Option("--name", help="Deployment name (default: the config's name).")] = None,
    timezone: TimezoneOpt = None,
    set_: SetOpt = [],
    store: StoreOpt = None,
) -> None:
    """Register the pipeline for a config as a scheduled Prefect deployment (runs execute in `concner serve`)."""
    from concner.flows.deploy import FLOW_NAME, pipeline_deployment, require_server
    from concner.tasks.config import load_config

    url = require_server()
    cfg = load_config(config, set_)
    root = _store_root(store, cfg)
    deployment = pipeline_deployment(cfg, config, root, cron, name, timezone)
    deployment_id = deployment.apply()
    console.print(f"registered [bold]{FLOW_NAME}/{deployment.name}[/bold] ({deployment_id}) on {url}", highlight=False)
    console.print(f"schedule: {', '.join(cron) or 'none (manual runs only)'}{f' ({timezone})' if timezone else ''}; "
                  f"artifacts: {root}", highlight=False)
    console.print("runs execute where `concner serve` runs; run one now with "
                  f"`prefect deployment run '{FLOW_NAME}/{deployment.name}'`; list with `concner deployments`",
                  highlight=False)


@app.command()
def serve(
    configs: Annotated[Optional[list[Path]], typer.Argument(
        help="Run configs to serve (one deployment each); none = every registered concner deployment.")] = None,
    cron: CronOpt = [],
    name: Annotated[Optional[str], typer.Option("--name", help="Deployment name, with a single config.")] = None,
    timezone: TimezoneOpt = None,
    set_: SetOpt = [],
    store: StoreOpt = None,
    runner: RunnerOpt = None,
    dask_address: DaskAddressOpt = None,
) -> None:
    """Execute scheduled and manual runs of concner deployments in this process until stopped (Ctrl-C).

    --runner/--dask-address set how the served runs execute their stages (for every deployment served)."""
    from prefect import serve as prefect_serve

    from concner.flows.deploy import FLOW_NAME, pipeline_deployment, registered, require_server, served_copy
    from concner.flows.runner import runner_overrides, runner_update
    from concner.tasks.config import RunnerConfig, load_config

    url = require_server()
    configs = configs or []
    if configs:
        if len(cron) not in (0, 1, len(configs)):
            raise UserError(f"{len(cron)} --cron for {len(configs)} configs: give one for all, or one per config")
        if name and len(configs) > 1:
            raise UserError("--name needs a single config (deployments are named after their config's name)")
        crons = [cron] * len(configs) if len(cron) <= 1 else [[c] for c in cron]
        deployments = []
        for path, schedule in zip(configs, crons):
            cfg = load_config(path, [*set_, *runner_overrides(runner, dask_address)])
            _check_runner(cfg.runner, _store_root(store, cfg))
            deployments.append(pipeline_deployment(cfg, path, _store_root(store, cfg), schedule, name, timezone))
    else:
        if cron or set_ or name or store or timezone:
            raise UserError("--cron, --set, --name, --store and --timezone apply to configs: pass CONFIG...")
        update = runner_update(runner, dask_address)
        deployments = [served_copy(d, update) for flow_name, d in registered((FLOW_NAME,))]
        for d in deployments:
            config = (d.parameters or {}).get("config") or {}
            _check_runner(RunnerConfig.model_validate(config.get("runner") or {}),
                          Path((d.parameters or {}).get("store_root") or "artifacts"))
        if not deployments:
            raise UserError(f"no {FLOW_NAME} deployments on {url}: `concner deploy CONFIG --cron ...` first, "
                            "or pass configs to serve")
    names = {d.name for d in deployments}
    if len(names) < len(deployments):
        raise UserError("two configs give the same deployment name: give them different `name:` keys")
    console.print(f"serving {', '.join(f'{FLOW_NAME}/{n}' for n in sorted(names))} from {url}; "
                  "Ctrl-C stops (Prefect pauses their schedules on exit, the next serve resumes them)", highlight=False)
    prefect_serve(*deployments)


@app.command()
def deployments() -> None:
    """List the concner deployments on the Prefect server with their schedules and next scheduled run."""
    from rich.table import Table

    import datetime as dt

    from concner.flows.deploy import deployment_rows, require_server

    url = require_server()
    table = Table(title=f"concner deployments on {url}")
    for col in ("deployment", "schedule", "next run", "languages", "store"):
        table.add_column(col, overflow="fold")
    for row in deployment_rows():
        next_run = "-"
        if row.paused:
            next_run = "paused (`concner serve` resumes)"
        elif row.next_run is not None:
            next_run = row.next_run.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            next_run += "" if row.next_run_scheduled else " (not yet scheduled by the server)"
        table.add_row(row.name, row.schedules, next_run, row.target, row.store)
    console.print(table)


def main() -> None:
    _signals_received.clear()
    if not sys.stderr.isatty():
        # transformers draws its "Loading weights" / "Writing model shards" bars with carriage
        # returns; in a log file or pipe they splice into the log lines. The setting is read when
        # transformers is first imported, so it must be in place before any stage loads a model.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except (KeyboardInterrupt, SystemExit) as err:
        if _signals_received and not (isinstance(err, SystemExit) and err.code in (0, None)):
            sys.exit(128 + _signals_received[0])
        raise
    except UserError as err:
        err_console.print(f"error: {err}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except OSError as err:
        # A path the user chose cannot be written or read (a read-only or missing --store folder, a
        # full disk): one message, not a traceback. Other OSErrors (no file name) are bugs: re-raised.
        import errno

        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        if err.filename is None and not full:
            raise
        if full:
            hint = "free some space, or give another --store"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
            hint = "check that the folder exists and is writable, or give another --store"
        else:
            hint = "check the path"
        where = f"{err.filename}: " if err.filename else ""
        if err.filename2:
            where = f"{err.filename} -> {err.filename2}: "
        err_console.print(f"error: {where}{err.strerror or err} ({hint})", style="red", highlight=False,
                          markup=False, soft_wrap=True)
        sys.exit(UserError.exit_code)


if __name__ == "__main__":
    main()
