"""What a stage key covers, DVC-style: code, parameters, input content, local models, libraries.

A key is the hash of its *key material*:
- code: a fingerprint of the source of the stage's module and of every concner module it imports,
  directly or not (found by reading the import statements), plus the spec's hand-set version;
- params: the stage's own parameters, with every local model folder replaced by its content digest;
- inputs: for each upstream artifact, the digest of the files this stage reads from it (recorded
  sha256s in the upstream manifest), not the upstream key: a stage recomputed in place with
  different bytes changes every key below it, and an identical recompute changes none;
- libraries: the versions of the libraries that change the stage's numbers.
The material is stored in the manifest, so `inspect` and `diff` can say which part changed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import secrets
import threading
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from concner.tasks.engine.store import ArtifactStore, digest_of, file_digest

# Keys are made here: a change to how they are made changes them by itself.
ENGINE_ONLY = True

PACKAGE = "concner"


@lru_cache(maxsize=None)
def _is_package(name: str) -> bool:
    spec = _spec(name)
    return spec is not None and spec.submodule_search_locations is not None


@lru_cache(maxsize=None)
def _spec(name: str):
    parent = name.rpartition(".")[0]
    # `from concner.tasks.training.train import fit` also names `concner.tasks.training.train.fit`: asking for its spec
    # would import concner.tasks.training.train (and torch with it) just to learn that it is no module, and
    # fingerprinting must not import what a run that reuses everything never loads
    if parent and not _is_package(parent):
        return None
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _module_file(name: str) -> str | None:
    spec = _spec(name)
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None


_PARSE_LOCK = threading.Lock()


def _parse(source: bytes) -> ast.Module:
    """ast.parse, one thread at a time and retried once on a SystemError.

    CPython 3.11 keeps the AST builder's recursion depth in shared state: two threads parsing at
    once (flow runs that `concner serve` starts side by side, Dask threads) can end one parse in
    "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905), which killed
    a served run here once. Parsing is deterministic, so a retry gives the right tree."""
    with _PARSE_LOCK:
        try:
            return ast.parse(source)
        except SystemError:
            return ast.parse(source)


def _imports(name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """The concner modules a module's source imports, at top level or inside functions."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == PACKAGE and _module_file(m)}


@lru_cache(maxsize=None)
def code_fingerprint(module: str) -> str:
    """sha256 over the source of `module` and of every concner module it reaches through imports."""
    seen: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        facts = _module_facts(name)
        if facts is None:
            continue
        seen[name], imported = facts
        todo.extend(imported - seen.keys())
    return digest_of(sorted(seen.items()))


@lru_cache(maxsize=None)
def _module_facts(name: str) -> tuple[str, frozenset[str]] | None:
    """(sha256 of the module's source, the concner modules it imports), read once per process:
    the stages share most of their modules, and parsing them is most of what planning costs.

    None for a module that is not concner's, or that declares `PRESENTATION_ONLY = True` (it only
    renders artifacts: summaries, tables) or `ENGINE_ONLY = True` (the engine around the stages:
    the config schema, whose values enter keys as params, the store, messages, progress): an edit
    to one of those must not recompute every stage. Neither are the modules they import followed."""
    path = _module_file(name)
    if path is None:
        return None
    source = Path(path).read_bytes()
    tree = _parse(source)
    if _left_out(tree):
        return None
    return hashlib.sha256(source).hexdigest(), frozenset(_imports(name, tree, path.endswith("__init__.py")))


LEFT_OUT_MARKERS = ("PRESENTATION_ONLY", "ENGINE_ONLY")


def _left_out(tree: ast.Module) -> bool:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in LEFT_OUT_MARKERS
                                                 for t in node.targets)):
            if isinstance(node.value, ast.Constant) and node.value.value is True:
                return True
    return False


def library_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: _library_version(name) for name in names}


@lru_cache(maxsize=None)
def _library_version(name: str) -> str | None:
    """Looked up once per process: each lookup scans the installed distributions, and most
    stages name the same libraries (a process keeps running the version it loaded anyway)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def folder_digest(folder: Path, cache_dir: Path | None = None) -> str:
    """Content digest of a local model folder; cached by (path, size, mtime) of each file so a
    700 MB encoder is hashed once, not on every run."""
    folder = folder.resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    stats = {p.relative_to(folder).as_posix(): [(st := p.stat()).st_size, st.st_mtime_ns] for p in files}
    cache_file = cache_dir / "model-digests.json" if cache_dir is not None else None
    cache: dict = {}
    if cache_file is not None:
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        hit = cache.get(str(folder))
        if hit and hit.get("stats") == stats:
            return hit["digest"]
    digest = digest_of(sorted((name, file_digest(folder / name)) for name in stats))
    if cache_file is not None:
        cache[str(folder)] = {"stats": stats, "digest": digest}
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f"{cache_file.name}.{secrets.token_hex(4)}")
            tmp.write_text(json.dumps(cache), encoding="utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only store: hash again next time
    return digest


def keyed_params(params: Mapping[str, Any], model_params: tuple[str, ...], cache_dir: Path | None) -> dict[str, Any]:
    """`params` with each local model folder named in `model_params` replaced by its content digest
    (a hub name or `tiny` stays as it is: `tiny` is built from the stage's inputs, which are keyed)."""
    from concner.tasks.engine.model_info import local_model_path

    out = dict(params)
    for name in model_params:
        value = out.get(name)
        path = Path(local_model_path(value)).expanduser() if isinstance(value, str) and value else None
        if path is not None and path.is_dir():
            out[name] = {"local_folder_sha256": folder_digest(path, cache_dir)}
    return out


def key_material(spec, config, store: ArtifactStore, params: Mapping[str, Any],
                 input_keys: Mapping[str, str]) -> dict[str, Any]:
    """Everything the key of `spec` covers, given its inputs' (intact) artifacts."""
    reads = spec.reads(config) if spec.reads is not None else {}
    inputs = {dep: store.content(dep, key, reads.get(dep)) for dep, key in input_keys.items()}
    return {
        "code": code_fingerprint(spec.compute.__module__),
        "version": spec.version,
        "params": keyed_params(params, spec.model_params, store.root / "cache"),
        "inputs": inputs,
        "libraries": library_versions(spec.libraries),
    }


def key_of(stage: str, material: Mapping[str, Any]) -> str:
    return digest_of({"stage": stage, **material})[:16]
