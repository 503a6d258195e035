"""Content-addressed artifact store.

Layout under the root:
  stages/<stage>/<key>/manifest.json + files   one finished stage output
  runs/<run-id>.json                           what a run used and computed
A stage writes into a temporary folder that is renamed into place only once its manifest is
written, so a crash leaves no folder that the cache would take for a finished artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_VERSIONED_PACKAGES = ("concner", "torch", "transformers", "prefect", "simalign", "sacrebleu", "seqeval", "pandas")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(stage: str, version: str, params: Mapping[str, Any], input_keys: Mapping[str, str]) -> str:
    """Hash of everything that determines a stage's output; any change upstream changes it."""
    payload = canonical_json({"stage": stage, "version": version, "params": params, "inputs": input_keys})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass(frozen=True)
class ArtifactRef:
    stage: str
    key: str
    path: Path


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / key

    def manifest(self, stage: str, key: str) -> dict | None:
        """The manifest of a finished artifact, or None when there is none or it is unreadable."""
        path = self.stage_dir(stage, key) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("stage") != stage or data.get("key") != key:
            return None
        for entry in data.get("files", []):
            if not (path.parent / entry["path"]).is_file():
                return None
        return data

    def exists(self, stage: str, key: str) -> bool:
        return self.manifest(stage, key) is not None

    def ref(self, stage: str, key: str) -> ArtifactRef:
        return ArtifactRef(stage, key, self.stage_dir(stage, key))

    @contextmanager
    def writing(
        self, stage: str, key: str, *, params: Mapping[str, Any], inputs: Mapping[str, str]
    ) -> Iterator[tuple[Path, dict]]:
        """Yield (temporary folder, metrics dict) to fill; publish atomically when the block ends cleanly.

        On an exception the temporary folder is removed and nothing is published.
        """
        parent = self.stage_dir(stage, key).parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))
        metrics: dict[str, Any] = {}
        started = time.time()
        try:
            yield tmp, metrics
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            manifest = {
                "stage": stage,
                "key": key,
                "params": dict(params),
                "inputs": dict(inputs),
                "versions": package_versions(),
                "started": started,
                "ended": time.time(),
                "seconds": round(time.time() - started, 3),
                "metrics": metrics,
                "files": [
                    {"path": str(p.relative_to(tmp)), "bytes": p.stat().st_size, "sha256": file_digest(p)}
                    for p in files
                ],
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            final = self.stage_dir(stage, key)
            if final.exists():  # an invalid leftover or a forced recompute: replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # runs -------------------------------------------------------------------------------
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def save_run(self, record: Mapping[str, Any]) -> Path:
        self.runs_dir().mkdir(parents=True, exist_ok=True)
        path = self.runs_dir() / f"{record['run_id']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def load_run(self, run_id: str) -> dict:
        """A run by id, by unique id prefix, or 'latest'."""
        runs = self.list_runs()
        if run_id == "latest" and runs:
            return runs[-1]
        matches = [r for r in runs if r["run_id"] == run_id] or [r for r in runs if r["run_id"].startswith(run_id)]
        if len(matches) != 1:
            from concner.tasks.errors import UserError

            known = ", ".join(r["run_id"] for r in runs[-5:]) or "none"
            problem = "is ambiguous" if matches else "not found"
            raise UserError(f"run {run_id!r} {problem} in {self.runs_dir()} (latest runs: {known})")
        return matches[0]

    def list_runs(self) -> list[dict]:
        records = []
        for path in sorted(self.runs_dir().glob("*.json")):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                continue
        return sorted(records, key=lambda r: r.get("started", 0))
