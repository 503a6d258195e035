"""Reading a run config: the YAML file (each key's line kept, a key given twice refused), --set
overrides, validation against the schema (tasks/engine/config.py), and errors that name the file,
the line of the key and the key path (`run.yaml, line 12: train.epochs: ...`) or the --set that
gave the value. Relative paths in the file are resolved against the file's folder, so a config
works from any working directory.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from concner.tasks.engine.config import RunConfig, same_language
from concner.tasks.engine.errors import UserError

ENGINE_ONLY = True  # how a config is read and reported: values enter keys through the stages' params


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """`key.sub=value` strings; values are read as YAML so numbers, booleans and null work."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set train.epochs=2")
        key, raw = pair.split("=", 1)
        if not key.strip():
            raise UserError(f"--set {pair!r}: the key is empty; expected KEY=VALUE, e.g. --set train.epochs=2")
        if any(not part.strip() for part in key.split(".")):
            raise UserError(f"--set {pair!r}: the key {key.strip()!r} has an empty part; "
                            "expected SECTION.KEY=VALUE, e.g. --set train.epochs=2")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise UserError(
                f"--set {pair!r}: the value {raw!r} is not valid YAML ({getattr(err, 'problem', None) or err}); "
                "e.g. --set 'train.epochs=2', a list as --set 'key=[a, b]', text with YAML characters quoted: "
                "--set 'key=\"[text\"'"
            ) from None
        out.append((key.strip(), value))
    return out


KeyPath = tuple[str, ...]


class Origins:
    """Where a config value came from: its line in the file, or the --set that gave it."""

    def __init__(self, source: str, lines: dict[KeyPath, int] | None, overrides: list[str]):
        self.source = source
        self.lines = lines or {}
        self.overrides = [(tuple(pair.split("=", 1)[0].strip().split(".")), pair) for pair in overrides]

    def __call__(self, loc: KeyPath, prefix: KeyPath = ()) -> tuple[str, KeyPath]:
        """(place, key path) for an error at `loc`; `prefix` is tried first (a target's own keys)."""
        for path in ([prefix + loc] if prefix else []) + [loc]:
            for key, pair in reversed(self.overrides):  # the last --set of a key wins
                if path[: len(key)] == key:
                    return f"--set {pair}", path
            if path in self.lines:
                return f"{self.source}, line {self.lines[path]}", path
        return self.source, prefix + loc


def _format_validation(err: ValidationError, where: Origins, prefix: KeyPath = ()) -> str:
    problems = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across keys (model validator): its message says it all
            problems.append(f"{where.source}: {msg}")
            continue
        place, path = where(loc, prefix)
        if path not in where.lines:
            # an unknown section given only by a --set (`--set nosection.x=1`): the error is at the
            # section, above the --set's key, so `where` finds no match and would blame the file
            below = [pair for key, pair in where.overrides if key[: len(path)] == path]
            if below:
                place = f"--set {below[-1]}"
        key = ".".join(path)
        if e["type"] == "extra_forbidden":
            problems.append(f"{place}: {key}: unknown key")
        elif e["type"] == "missing":
            problems.append(f"{place}: {key}: required key is missing")
        elif e["type"] == "path_type":
            got = "null" if e.get("input") is None else repr(e.get("input"))
            problems.append(f"{place}: {key}: needs a file path (got {got})")
        else:
            got = f" (got {e.get('input')!r})" if e["type"] != "value_error" else ""
            problems.append(f"{place}: {key}: {msg}{got}")
    if len(problems) == 1:
        return problems[0]
    return f"{where.source}: invalid config ({len(problems)} problems)\n" + "\n".join("  " + p for p in problems)


def _resolve_paths(model: BaseModel, base: Path) -> None:
    for name, value in model:
        if isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)
        elif isinstance(value, Path) and not value.is_absolute():
            setattr(model, name, (base / value).resolve())


def config_from_dict(raw: dict, *, base_dir: Path, source: str = "config", overrides: list[str] = (),
                     lines: dict[KeyPath, int] | None = None) -> RunConfig:
    """Validate a config; `lines` (key path -> line in `source`) lets errors say where a key is."""
    raw = copy.deepcopy(raw)  # overrides must never leak into the caller's (possibly shared) dict
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(raw, key, value)
    where = Origins(source, lines, list(overrides))
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_validation(err, where)) from None
    for i, target in enumerate(config.targets):
        problem = same_language(target.lang, config.source_lang)
        if problem:
            place, path = where(("targets", str(i), "lang"))
            raise UserError(f"{place}: {'.'.join(path)}: {problem}")
        try:  # a target's translate override must make a valid translate section
            config.branch_config(target)
        except ValidationError as err:
            raise UserError(_format_validation(err, where, ("targets", str(i)))) from None
    _resolve_paths(config, base_dir)
    config.remember_origins(where)
    return config


def _yaml_with_lines(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    """The YAML document and the line (1-based) of every key and list item, by key path.

    A key given twice in one mapping is an error: YAML loaders silently keep the last value.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        if node is not None:
            _key_lines(node, (), lines, source)
        return (loader.construct_document(node) if node is not None else None), lines
    finally:
        loader.dispose()


def _key_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in seen:
                raise UserError(f"{source}, line {line}: {'.'.join(path + (key,))}: key given twice "
                                f"(first at line {seen[key]}); remove one")
            seen[key] = line
            lines[path + (key,)] = line
            _key_lines(value_node, path + (key,), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (str(i),)] = item.start_mark.line + 1
            _key_lines(item, path + (str(i),), lines, source)


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: is a folder, expected a config file" if path.is_dir() else f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        byte = err.object[err.start]
        raise UserError(f"{path}, line {line}: not UTF-8 text (byte 0x{byte:02x} cannot be decoded)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read: {err.strerror or err}") from None
    try:
        raw, lines = _yaml_with_lines(text, str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a YAML mapping of config keys")
    return config_from_dict(raw, base_dir=path.parent.resolve(), source=str(path), overrides=overrides, lines=lines)
