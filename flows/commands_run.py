"""`concner run`, `demo`, `estimate`, `init`, `stage`, `sweep`: commands that plan and run the DAG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from concner.flows.cli_common import (
    DaskAddressOpt,
    RunnerOpt,
    SetOpt,
    StoreOpt,
    TargetOpt,
    app,
    check_runner,
    console,
    err_console,
    signals_received,
    store_root,
)
from concner.flows.console_width import print_whole
from concner.tasks.engine.errors import UserError


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


def _interrupt(signum, frame):
    signals_received.append(signum)
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
    from concner.tasks.engine import registry
    from concner.tasks.engine.config_loading import load_config
    from concner.tasks.engine.preflight import check_and_warn
    from concner.tasks.engine.store import ArtifactStore

    config = load_config(config_path, overrides)
    stages = set(registry.upstream_closure(registry.get(until).name)) if until else None
    check_and_warn(config, err_console, store_root(store, config), stages)  # inputs and store, before any stage
    from concner.flows.pipeline import pipeline_flow, plan_run, run_flow
    from concner.flows.views import stage_summary_table

    root = store_root(store, config)
    plan = plan_run(config, ArtifactStore(root), force=set(force), until=until, target=target, verify=verify)
    _print_plan(plan, warn=dry_run)
    if dry_run:
        _print_estimates(config, {p.entry for p in plan if p.action != "reuse"})
        return None
    check_runner(config.runner, root)
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
    from concner.tasks.engine.bundled import config_path

    _run_pipeline(config_path(config), set_, store, [], None, dry_run)


@app.command()
def estimate(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOpt = [],
) -> None:
    """Print a rough time per stage for a config, from its files' sentence counts and its models' sizes.

    Nothing runs and the store is not read: every stage is counted, as on a first run."""
    from concner.tasks.engine.config_loading import load_config

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
    name: Annotated[str, typer.Argument(help="Stage to run, by name: train, distill, ... (an unknown name lists the DAG's stages).")],
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOpt = [],
    reuse: Annotated[bool, typer.Option("--reuse", help="Reuse the stage's artifact when it exists instead of recomputing.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print whether the stage would be reused or computed.")] = False,
    target: TargetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Run one stage alone; its inputs are read from the store (run their stages first)."""
    from concner.tasks.engine import registry
    from concner.tasks.engine.config_loading import load_config
    from concner.tasks.engine.preflight import check_and_warn
    from concner.tasks.engine.store import ArtifactStore

    cfg = load_config(config, set_)
    check_and_warn(cfg, err_console, store_root(store, cfg), {registry.get(name).name})  # before the stage runs
    from concner.flows.pipeline import plan_run, run_flow, stage_flow
    from concner.flows.views import stage_summary_table

    root = store_root(store, cfg)
    _print_plan(plan_run(cfg, ArtifactStore(root), force=set() if reuse else {name}, only=name, target=target),
                warn=dry_run)
    if dry_run:
        return
    _guard_process()
    record = run_flow(stage_flow, ArtifactStore(root), cfg.name, stage_name=name,
                      config=cfg.model_dump(mode="json"), force=not reuse, target=target)
    print_whole(console, stage_summary_table(record, ArtifactStore(root)))


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
    from concner.flows.sweep import (
        best_config_yaml,
        new_sweep_id,
        parse_grid,
        parse_metric,
        parse_seeds,
        plan_members,
        preflight,
        start_sweep,
        sweep_record,
        sweeps_dir,
    )
    from concner.flows.views import show_sweep
    from concner.tasks.engine import registry
    from concner.tasks.engine.preflight import check_store
    from concner.tasks.engine.store import ArtifactStore

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
    root = store_root(store, base)
    check_store(root)
    check_runner(base.runner, root)
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
