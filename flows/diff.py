"""`concner diff RUN_A RUN_B`: what changed between two runs, and what that did.

Three answers: which config keys differ; which stage keys differ and why (the stage's own
parameters changed, or only its inputs did, which is how a change propagates downstream); and
how the scores moved. The "why" reads the parameters and input keys each artifact's manifest
recorded, so it explains the keys the runs actually used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from concner.tasks.engine.registry import ROLE_OF
from concner.flows.views import when
from concner.tasks.engine import registry
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.errors import UserError
from concner.tasks.engine.store import ArtifactStore

MISSING = "<absent>"
_METRICS = ("precision", "recall", "f1")


@dataclass(frozen=True)
class Change:
    key: str  # dotted
    old: Any
    new: Any


@dataclass
class StageDiff:
    stage: str
    key_a: str | None
    key_b: str | None
    status_b: str | None  # computed / reused in run B
    params: list[Change] = field(default_factory=list)  # the stage's own parameters that differ
    inputs: list[str] = field(default_factory=list)  # upstream stages whose content (or key) differs
    code: bool = False  # the fingerprint of the stage's source (or its version) differs
    libraries: list[Change] = field(default_factory=list)  # numerics-relevant library versions that differ
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.key_a is None or self.key_b is None:
            return "only in A" if self.key_b is None else "only in B"
        if self.key_a == self.key_b:
            return "same"
        if self.params:
            return "own params changed"
        if self.inputs:
            return "inputs changed"
        if self.libraries:
            return "library versions changed"
        return "code changed"


@dataclass(frozen=True)
class ScoreDelta:
    model: str  # teacher, student
    set: str  # target_dev, target_test
    type: str  # ALL (micro average) or an entity type
    a: dict[str, float] | None  # precision, recall, f1 in run A
    b: dict[str, float] | None

    def delta(self, metric: str = "f1") -> float | None:
        if not self.a or not self.b or metric not in self.a or metric not in self.b:
            return None
        return self.b[metric] - self.a[metric]


@dataclass
class RunDiff:
    a: dict
    b: dict
    config: list[Change]
    stages: list[StageDiff]
    scores: list[ScoreDelta]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {dotted.key: leaf}; lists stay leaves (they are compared whole)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def dict_changes(a: dict, b: dict) -> list[Change]:
    flat_a, flat_b = flatten(a), flatten(b)
    keys = list(dict.fromkeys([*flat_a, *flat_b]))
    return [Change(k, flat_a.get(k, MISSING), flat_b.get(k, MISSING)) for k in keys
            if flat_a.get(k, MISSING) != flat_b.get(k, MISSING)]


def _stage_inputs(store: ArtifactStore, record: dict, stage: str) -> tuple[dict | None, dict | None, str]:
    """(params, input keys, note) the stage used in a run: from its manifest, else re-derived from the config."""
    info = record.get("stages", {}).get(stage)
    if info is None:
        return None, None, ""
    manifest = store.manifest(registry.stage_of(stage), info["key"])
    if manifest is not None:
        return manifest.get("params", {}), manifest.get("inputs", {}), ""
    spec = registry.get(registry.stage_of(stage))
    # the keys of the stages this entry could have read: shared ones and those of its own target
    keys = {registry.stage_of(name): s["key"] for name, s in record["stages"].items()
            if s.get("target") in (None, info.get("target"))}
    try:
        branches = dict(RunConfig.model_validate(record["config"]).branches())
        params = spec.params(branches[info.get("target")] if info.get("target") else next(iter(branches.values())))
    except (UserError, ValueError, KeyError):
        return None, {dep: keys.get(dep) for dep in spec.inputs}, f"artifact {stage}/{info['key']} is gone"
    note = f"artifact {stage}/{info['key']} is gone: params re-derived from the run's config"
    return params, {dep: keys.get(dep) for dep in spec.inputs}, note


def _material(store: ArtifactStore, record: dict, entry: str) -> dict | None:
    info = record.get("stages", {}).get(entry)
    manifest = store.manifest(registry.stage_of(entry), info["key"]) if info else None
    material = (manifest or {}).get("key_material")
    return material if material and {"params", "inputs", "code", "version", "libraries"} <= material.keys() else None


def stage_diffs(store: ArtifactStore, a: dict, b: dict) -> list[StageDiff]:
    # record entries: stage names, and `stage@target` in multi-target runs (in run order)
    names = list(dict.fromkeys([*a.get("stages", {}), *b.get("stages", {})]))
    out = []
    for name in names:
        info_a, info_b = a.get("stages", {}).get(name), b.get("stages", {}).get(name)
        diff = StageDiff(name, info_a and info_a["key"], info_b and info_b["key"], info_b and info_b["status"])
        if diff.verdict not in ("same", "only in A", "only in B"):
            params_a, inputs_a, note_a = _stage_inputs(store, a, name)
            params_b, inputs_b, note_b = _stage_inputs(store, b, name)
            if params_a is not None and params_b is not None:
                diff.params = dict_changes(params_a, params_b)
            diff.inputs = [dep for dep in dict.fromkeys([*(inputs_a or {}), *(inputs_b or {})])
                           if (inputs_a or {}).get(dep) != (inputs_b or {}).get(dep)]
            diff.note = "; ".join(n for n in (note_a, note_b) if n)
            material_a, material_b = _material(store, a, name), _material(store, b, name)
            if material_a and material_b:  # what the keys cover: say exactly which part moved
                diff.params = dict_changes(material_a["params"], material_b["params"])
                diff.inputs = [dep for dep in dict.fromkeys([*material_a["inputs"], *material_b["inputs"]])
                               if material_a["inputs"].get(dep) != material_b["inputs"].get(dep)]
                diff.code = (material_a["code"], material_a["version"]) != (material_b["code"], material_b["version"])
                diff.libraries = dict_changes(material_a["libraries"], material_b["libraries"])
        out.append(diff)
    return out


# Where each model is scored; evaluate only copies these into one table, so it is not compared twice.
MODEL_STAGES = ROLE_OF  # the trained models by stage, as the stages declare them


def _score_table(scores: dict, per_type: bool) -> dict[tuple[str, str, str], dict[str, float]]:
    out = {}
    for entry, by_set in (scores or {}).items():
        stage, _, target = entry.partition("@")
        if stage == "evaluate":
            continue
        model = MODEL_STAGES.get(stage, stage) + (f"@{target}" if target else "")
        for set_name, s in by_set.items():
            if not isinstance(s, dict) or "f1" not in s:
                continue
            out[(model, set_name, "ALL")] = {m: s[m] for m in _METRICS if m in s}
            if per_type:
                for label, t in sorted((s.get("per_type") or {}).items()):
                    out[(model, set_name, label)] = {m: t[m] for m in _METRICS if m in t}
    return out


def score_deltas(a: dict, b: dict, per_type: bool = False) -> list[ScoreDelta]:
    table_a, table_b = _score_table(a.get("scores"), per_type), _score_table(b.get("scores"), per_type)
    keys = list(dict.fromkeys([*table_a, *table_b]))
    return [ScoreDelta(*k, table_a.get(k), table_b.get(k)) for k in keys]


def diff_runs(store: ArtifactStore, a: dict, b: dict, per_type: bool = False) -> RunDiff:
    return RunDiff(a, b, dict_changes(a.get("config", {}), b.get("config", {})), stage_diffs(store, a, b),
                   score_deltas(a, b, per_type))


# rendering -------------------------------------------------------------------------------------

def _short(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _keys(d: StageDiff) -> str:
    # 8 characters tell keys apart at a glance; the full keys are in the run records.
    a, b = (d.key_a or "-")[:8], (d.key_b or "-")[:8]
    return a if d.key_a == d.key_b else f"{a} → {b}"


def _why(d: StageDiff) -> Text:
    if d.verdict == "same":
        if d.status_b == "computed":
            # Same key yet computed: forced, or the artifact (or Prefect's cached result) was missing.
            return Text("same key, recomputed in B", style="green")
        return Text("same", style="green")
    parts = []
    if d.params:
        parts.append("own params: " + ", ".join(f"{c.key} {_short(c.old, 16)} → {_short(c.new, 16)}" for c in d.params))
    if d.inputs:
        parts.append("inputs changed (content): " + ", ".join(d.inputs))
    if d.code:
        parts.append("code changed (source fingerprint or version)")
    if d.libraries:
        parts.append("libraries: " + ", ".join(f"{c.key} {c.old} → {c.new}" for c in d.libraries))
    if d.verdict == "code changed" and not d.code:
        parts.append("same params and inputs: the stage's code changed")
    if d.verdict.startswith("only"):
        parts.append(f"stage ran {d.verdict}")
    if d.note:
        parts.append(d.note)
    return Text("; ".join(parts), style="yellow")


def render(diff: RunDiff) -> Group:
    a, b = diff.a, diff.b
    head = Text.assemble(
        ("A ", "bold"), f"{a['run_id']} ({a.get('status')}, {when(a.get('started'))})\n",
        ("B ", "bold"), f"{b['run_id']} ({b.get('status')}, {when(b.get('started'))})",
    )
    config = Table(title="config: A → B")
    for col in ("key", "A", "B"):
        config.add_column(col, overflow="fold")
    for c in diff.config:
        config.add_row(c.key, _short(c.old, 60), _short(c.new, 60))
    if not diff.config:
        config.add_row(Text("(identical)", style="dim"), "", "")

    stages = Table(title="stages: keys (A → B) and why they differ")
    stages.add_column("stage", no_wrap=True)
    stages.add_column("key", no_wrap=True)
    stages.add_column("in B", no_wrap=True)
    stages.add_column("why", overflow="fold")
    for d in diff.stages:
        stages.add_row(d.stage, _keys(d), d.status_b or "-", _why(d))

    scores = Table(title="scores (seqeval default mode, ×100)")
    for col in ("model", "set", "type", "F1 A", "F1 B", "Δ F1", "Δ P", "Δ R"):
        scores.add_column(col, justify="left" if col in ("model", "set", "type") else "right")
    for s in diff.scores:
        scores.add_row(s.model, s.set, s.type, _pct((s.a or {}).get("f1")), _pct((s.b or {}).get("f1")),
                       *(_delta(s.delta(m)) for m in _METRICS[::-1]))
    if not diff.scores:
        scores.add_row(Text("(no scores in either run)", style="dim"), *[""] * 7)
    return Group(head, config, stages, scores)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _delta(value: float | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text(f"{100 * value:+.1f}", style="dim" if abs(value) < 5e-4 else "green" if value > 0 else "red")
