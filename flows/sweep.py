"""`concner sweep`: one config over a grid of settings × seeds, as one Prefect flow.

A sweep is the cartesian product of `--grid KEY=V1,V2,...` (values read as YAML, like `--set`)
and `--seeds`. Every member's config is validated (and its inputs read by the preflight) before
anything runs. Each member is then planned and executed exactly as `concner run` would do it
(`plan_run` + `execute`, so it gets its own `runs/<run-id>.json` and the same stage keys as a
single run of that setting); the store being content-addressed, members share every artifact
upstream of what their setting changes, and a member planned after another reuses what that one
computed.

The sweep record `sweeps/<sweep-id>.json` is written when the sweep starts (`running`) and after
every member: the grid, the seeds, the base config, and per member its setting, seed, run id,
status and scores (from its run record). Scores are read from the record's `evaluate` entries
when it has them, else from `train` (teacher) and `distill` (student), and named
`teacher/target_test` (`teacher/target_test@de` in a multi-target run).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import secrets
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.states import Failed

from concner.tasks.engine.registry import ROLE_OF
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.registry import stage_of
from concner.tasks.engine.store import ArtifactStore

METRICS = ("precision", "recall", "f1")
SWEEPS = "sweeps"  # folder of the sweep records in the store
MODEL_OF = ROLE_OF  # the trained models by stage, as the stages declare them


# -- parsing the command line ------------------------------------------------------------------


def split_values(raw: str) -> list[str]:
    """`0,0.5` -> ['0', '0.5']; commas inside [...], {...} or quotes do not split (`[a, b],[c]`)."""
    values, current, depth, quote = [], [], 0, None
    for ch in raw:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    values.append("".join(current).strip())
    return values


def parse_grid(pairs: list[str]) -> list[tuple[str, list[str]]]:
    """`--grid KEY=V1,V2` options -> [(key, [raw value, ...])], in the order given."""
    grid: list[tuple[str, list[str]]] = []
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--grid {pair!r}: expected KEY=V1,V2,..., e.g. --grid train.lambda_tcl=0,0.5")
        key, raw = (part.strip() for part in pair.split("=", 1))
        if not key:
            raise UserError(f"--grid {pair!r}: no key before '='")
        if key == "seed":
            raise UserError("--grid seed=...: give seeds with --seeds 13,14,15")
        if any(key == k for k, _ in grid):
            raise UserError(f"--grid {key}: given twice; list all its values in one --grid {key}=V1,V2,...")
        values = split_values(raw)
        if any(v == "" for v in values):
            raise UserError(f"--grid {pair}: an empty value (write null for None, '' for an empty text)")
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise UserError(f"--grid {key}: value {', '.join(twice)} given twice")
        grid.append((key, values))
    return grid


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in split_values(text)]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected integers separated by commas, e.g. --seeds 13,14,15") from None
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise UserError(f"--seeds {text}: seed {', '.join(map(str, twice))} given twice")
    return seeds


def parse_metric(metric: str) -> tuple[str, str]:
    """`student/target_test.f1` -> ('student/target_test', 'f1'); without a metric suffix: f1."""
    name, _, last = metric.rpartition(".")
    if last not in METRICS:
        name, last = metric, "f1"
    if "/" not in name or not name.split("/", 1)[1]:
        raise UserError(f"--select {metric!r}: expected MODEL/SET[@TARGET].METRIC, e.g. teacher/target_test.f1 "
                        f"(METRIC: {', '.join(METRICS)})")
    return name, last


# -- members -----------------------------------------------------------------------------------


@dataclass
class Member:
    index: int
    setting: dict[str, str]  # grid key -> the value as given on the command line
    seed: int
    config: Any  # RunConfig

    @property
    def label(self) -> str:
        return setting_label(self.setting)


def setting_label(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "(base config)"


def _grid_problem(message: str, key: str, value: str) -> str:
    """A config error for `--set key=value` reworded as one about the grid value."""
    return message.replace(f"--set {key}={value}: ", "").replace(f"--set {key}={value}", "")


def plan_members(config_path: Path, base_sets: list[str], grid: list[tuple[str, list[str]]],
                 seeds: list[int] | None):
    """(base config, members): every member's config validated, bad grid values named first."""
    from concner.tasks.engine.config_loading import load_config

    base = load_config(config_path, base_sets)
    seeds = seeds or [base.seed]
    # each value alone first: the message then names the key and the value that is wrong
    for key, values in grid:
        problems, reasons = [], set()
        for value in values:
            try:
                load_config(config_path, [*base_sets, f"{key}={value}"])
            except UserError as err:
                reason = _grid_problem(str(err), key, value)
                problems.append(f"value {value!r}: {reason}")
                reasons.add(reason)
        if problems:
            given = ",".join(values)
            if len(problems) == len(values) > 1 and len(reasons) == 1:  # e.g. an unknown key
                raise UserError(f"--grid {key}={given}: {reasons.pop()}")
            if len(problems) == 1:
                raise UserError(f"--grid {key}={given}: {problems[0]}")
            listed = "\n".join("  " + p for p in problems)
            raise UserError(f"--grid {key}={given}: {len(problems)} bad values\n{listed}")
    members = []
    for combo in itertools.product(*[[(key, v) for v in values] for key, values in grid]):
        setting = dict(combo)
        for seed in seeds:
            overrides = [*base_sets, *(f"{k}={v}" for k, v in setting.items()), f"seed={seed}"]
            try:
                config = load_config(config_path, overrides)
            except UserError as err:  # values valid alone, but not together
                raise UserError(f"sweep member {setting_label(setting)}, seed {seed}: {err}") from None
            members.append(Member(len(members), setting, seed, config))
    return base, members


def preflight(members: list[Member]) -> list[str]:
    """Read every input of every member (each file once) before anything runs; the warnings, once each."""
    from concner.tasks.engine.preflight import Preflight  # one reader cache for all members: each file read once

    check = Preflight()
    for member in members:
        for _branch, branch_config in member.config.branches():
            check.branch(branch_config)
    return list(dict.fromkeys(check.warnings))


# -- the sweep record --------------------------------------------------------------------------


def new_sweep_id(name: str) -> str:
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def sweeps_dir(store: ArtifactStore) -> Path:
    return store.root / SWEEPS


def save_sweep(store: ArtifactStore, record: dict) -> Path:
    folder = sweeps_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['sweep_id']}.json"
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def list_sweeps(store: ArtifactStore) -> list[dict]:
    records = []
    for path in sorted(sweeps_dir(store).glob("sweep-*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("started", 0))


def load_sweep(store: ArtifactStore, sweep_id: str) -> dict:
    """A sweep by id, unique id prefix, 'sweep-latest', or the path of its record."""
    path = Path(sweep_id)
    if sweep_id.endswith(".json") and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    sweeps = list_sweeps(store)
    if sweep_id == "sweep-latest" and sweeps:
        return sweeps[-1]
    matches = ([s for s in sweeps if s["sweep_id"] == sweep_id]
               or [s for s in sweeps if s["sweep_id"].startswith(sweep_id)])
    if len(matches) != 1:
        known = ", ".join(s["sweep_id"] for s in sweeps[-5:]) or "none"
        raise UserError(f"sweep {sweep_id!r} {'is ambiguous' if matches else 'not found'} in {sweeps_dir(store)} "
                        f"(latest sweeps: {known})")
    return matches[0]


def sweep_record(sweep_id: str, config_path: Path, base_sets: list[str], base, grid, members: list[Member],
                 until: str | None, select: str | None = None) -> dict:
    return {
        "sweep_id": sweep_id,
        "name": base.name,
        "status": "running",
        "started": time.time(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "config_file": str(Path(config_path).resolve()),
        "set": list(base_sets),
        "grid": {key: [yaml.safe_load(v) for v in values] for key, values in grid},
        "grid_text": {key: values for key, values in grid},
        "seeds": list(dict.fromkeys(m.seed for m in members)),
        "until": until,
        "select": select,
        "base_config": base.model_dump(mode="json"),
        "members": [
            {"index": m.index, "setting": setting_label(m.setting), "overrides": dict(m.setting), "seed": m.seed,
             "config": m.config.model_dump(mode="json"), "run_id": None, "status": "pending", "scores": {}}
            for m in members
        ],
    }


def mark_dead_sweeps(store: ArtifactStore) -> list[str]:
    """Sweeps left `running` by a process of this host that is gone (kill -9) are marked `interrupted`."""
    from concner.flows.records import alive

    marked = []
    for record in list_sweeps(store):
        if record.get("status") != "running" or record.get("host") != socket.gethostname() or alive(record.get("pid")):
            continue
        record.update(status="interrupted", error=f"process {record.get('pid')} ended without finishing (killed?)")
        for member in record["members"]:
            if member["status"] == "running":
                member["status"] = "interrupted"
        save_sweep(store, record)
        marked.append(record["sweep_id"])
    return marked


# -- scores ------------------------------------------------------------------------------------


def member_scores(run_record: dict) -> dict[str, dict[str, float]]:
    """{'teacher/target_test': {precision, recall, f1}, ...} from a run record's `scores`.

    Per target: the `evaluate` entry when the run has one, else `train` (teacher) and `distill`
    (student). A multi-target run's names end in `@<target>`."""
    by_target: dict[str | None, dict[str, dict]] = {}
    for entry, by_set in (run_record.get("scores") or {}).items():
        target = entry.split("@", 1)[1] if "@" in entry else None
        by_target.setdefault(target, {})[stage_of(entry)] = by_set or {}
    out: dict[str, dict[str, float]] = {}
    for target, stages in by_target.items():
        suffix = f"@{target}" if target else ""
        if "evaluate" in stages:
            named = {name: s for name, s in stages["evaluate"].items()}
        else:
            named = {f"{MODEL_OF[stage]}/{split}": s for stage, by_set in stages.items() if stage in MODEL_OF
                     for split, s in by_set.items()}
        for name, s in named.items():
            if isinstance(s, dict) and all(m in s for m in METRICS):
                out[name + suffix] = {m: float(s[m]) for m in METRICS}
    return out


@dataclass
class Stat:
    mean: float
    sd: float | None  # None with one seed
    n: int
    values: list[float]


def settings_of(record: dict) -> list[str]:
    return list(dict.fromkeys(m["setting"] for m in record["members"]))


def score_names(record: dict) -> list[str]:
    names: dict[str, None] = {}
    for m in record["members"]:
        names.update(dict.fromkeys(m.get("scores") or {}))
    return sorted(names, key=lambda n: (n.split("@", 1)[1] if "@" in n else "", n.split("@", 1)[0]))


def setting_stats(record: dict) -> dict[str, dict[str, dict[str, Stat]]]:
    """setting -> score name -> metric -> mean and sd over the completed members' seeds."""
    out: dict[str, dict[str, dict[str, Stat]]] = {}
    for setting in settings_of(record):
        done = [m for m in record["members"] if m["setting"] == setting and m["status"] == "completed"]
        per_score: dict[str, dict[str, Stat]] = {}
        for name in score_names(record):
            for metric in METRICS:
                values = [m["scores"][name][metric] for m in done if name in (m.get("scores") or {})]
                if values:
                    sd = statistics.stdev(values) if len(values) > 1 else None
                    per_score.setdefault(name, {})[metric] = Stat(statistics.fmean(values), sd, len(values), values)
        out[setting] = per_score
    return out


def best_setting(record: dict, metric: str) -> tuple[str, Stat]:
    """The setting with the highest mean of `metric` (`student/target_test.f1`); UserError when absent."""
    name, which = parse_metric(metric)
    stats = setting_stats(record)
    scored = [(setting, per[name][which]) for setting, per in stats.items() if name in per]
    if not scored:
        raise UserError(f"--select {metric}: no completed member has the score {name!r} "
                        f"(scores in this sweep: {', '.join(score_names(record)) or 'none'})")
    return max(scored, key=lambda pair: pair[1].mean)  # first of equals: the grid order decides ties


def best_config_yaml(record: dict, metric: str) -> str:
    """The best setting's full config (its first seed) as YAML, with a comment saying why."""
    setting, stat = best_setting(record, metric)
    member = next(m for m in record["members"] if m["setting"] == setting)
    sd = f" ± {stat.sd:.4f}" if stat.sd is not None else ""
    seeds = [m["seed"] for m in record["members"] if m["setting"] == setting and m["status"] == "completed"]
    head = (f"# concner sweep {record['sweep_id']}: best setting by {metric}\n"
            f"# {setting}: mean {stat.mean:.4f}{sd} over seeds {', '.join(map(str, seeds))}"
            f" (seed below: {member['seed']})\n")
    return head + yaml.safe_dump(member["config"], sort_keys=False, allow_unicode=True)


def fmt_stat(stat: Stat | None) -> str:
    """Percent, mean ± sd: `45.2 ± 1.3` (one seed: `45.2`)."""
    if stat is None or math.isnan(stat.mean):
        return "-"
    return f"{100 * stat.mean:.1f}" + (f" ± {100 * stat.sd:.1f}" if stat.sd is not None else "")


# -- running -----------------------------------------------------------------------------------


def run_sweep(store: ArtifactStore, record: dict, log) -> dict:
    """Run every member of a sweep record in order (no Prefect of its own: call it inside a flow).

    Each member is planned just before it runs, so it reuses what earlier members computed. A
    failed member is recorded and the sweep goes on with the next; Ctrl-C stops it (`interrupted`)."""
    from concner.flows.execute import execute
    from concner.flows.plan import plan_run

    mark_dead_sweeps(store)
    save_sweep(store, record)
    with _recording(store, record):
        for member, config in _start_pending(record):
            save_sweep(store, record)
            log.info("sweep member %d/%d: %s, seed %d (run %s)", member["index"] + 1, len(record["members"]),
                     member["setting"], member["seed"], member["run_id"])
            try:
                plan = plan_run(config, store, until=record.get("until"))
                run = execute(config, store, plan, member["run_id"], log)
            except Exception as err:  # a stage failed with a bug: recorded, the other members still run
                run = _run_or_none(store, member["run_id"]) or {"status": "failed", "error": str(err)}
                run.setdefault("error", str(err) or type(err).__name__)
                run["status"] = "failed"
            _member_finished(member, run)
            save_sweep(store, record)
    return record


def _start_pending(record: dict) -> Iterator[tuple[dict, Any]]:
    """Each member that has not run yet, with its config, marked running under a new run id."""
    from concner.flows.records import new_run_id
    from concner.tasks.engine.config import RunConfig

    for member in record["members"]:
        if member["status"] != "pending":
            continue
        config = RunConfig.model_validate(member["config"])
        member.update(run_id=new_run_id(config.name), status="running")
        yield member, config


@contextlib.contextmanager
def _recording(store: ArtifactStore, record: dict) -> Iterator[None]:
    """The sweep record says how the sweep ended: interrupted (Ctrl-C, SIGTERM, a broken cluster) or
    finished, with its end time; saved either way."""
    try:
        yield
    except BaseException as err:
        _interrupted(record, err)
        raise
    else:
        _finished(record)
    finally:
        record["ended"] = time.time()
        save_sweep(store, record)


def _member_finished(member: dict, run: dict) -> None:
    member.update(status=run.get("status"), scores=member_scores(run))
    if run.get("status") != "completed":
        member["error"] = run.get("error", "")
        member["failed_stage"] = run.get("failed_stage")


def _interrupted(record: dict, err: BaseException) -> None:
    record.update(status="interrupted", error=f"interrupted ({type(err).__name__})")
    for member in record["members"]:
        if member["status"] == "running":
            member["status"] = "interrupted"


def _finished(record: dict) -> None:
    failed = [m for m in record["members"] if m["status"] != "completed"]
    record["status"] = "failed" if failed else "completed"
    if failed:
        record["error"] = f"{len(failed)} of {len(record['members'])} members did not complete"


def run_sweep_concurrently(store: ArtifactStore, record: dict, runner, log) -> dict:
    """Every member of a sweep record at once on the Dask runner `runner` (flows/execute.py).

    All members are planned first; a stage that several members share is computed by one of them
    (the others wait for it and reuse it), so each key is computed once, as in `run_sweep`. A
    member whose stage fails stops; the other members go on."""
    from concner.flows.execute import RunJob, execute_many
    from concner.flows.pipeline import plan_run

    mark_dead_sweeps(store)
    save_sweep(store, record)
    jobs: list[RunJob] = []
    member_of: dict[str, dict] = {}
    with _recording(store, record):
        for member, config in _start_pending(record):
            try:
                plan = plan_run(config, store, until=record.get("until"))
            except UserError as err:
                _member_finished(member, {"status": "failed", "error": str(err)})
                continue
            jobs.append(RunJob(config, plan, member["run_id"]))
            member_of[member["run_id"]] = member
        save_sweep(store, record)
        log.info("sweep: %d members at once on Dask", len(jobs))

        def finished(job: RunJob) -> None:
            _member_finished(member_of[job.run_id], job.record)
            save_sweep(store, record)

        execute_many(jobs, store, runner, log, on_finished=finished)
    return record


def _run_or_none(store: ArtifactStore, run_id: str) -> dict | None:
    path = store.runs_dir() / f"{run_id}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@flow(name="concner-sweep", log_prints=True)
def sweep_flow(sweep_id: str, store_root: str) -> dict:
    """Every member of the sweep record `sweeps/<sweep_id>.json` as ordinary pipeline runs (each
    with its run record; their stages are this flow's tasks): one after the other, or side by side
    on Dask when the base config says `runner.kind: dask`."""
    from concner.tasks.engine.config import RunnerConfig

    store = ArtifactStore(store_root)
    record = load_sweep(store, sweep_id)
    runner = RunnerConfig.model_validate(record["base_config"].get("runner") or {})
    if runner.kind == "dask":  # members side by side on a Dask cluster
        record = run_sweep_concurrently(store, record, runner, get_run_logger())
    else:
        record = run_sweep(store, record, get_run_logger())
    if record["status"] != "completed":
        return Failed(message=record.get("error", "sweep failed"))
    return record


def start_sweep(store: ArtifactStore, record: dict) -> dict:
    """Write the record (running), run the flow, give back the final record."""
    save_sweep(store, record)
    state = sweep_flow(sweep_id=record["sweep_id"], store_root=str(store.root), return_state=True)
    final = load_sweep(store, record["sweep_id"])
    if state.is_failed() and final.get("status") == "running":  # the flow died before it could say so
        final.update(status="failed", error=state.message or "the sweep flow failed", ended=time.time())
        save_sweep(store, final)
    return final
