"""Content-addressed artifact store.

Layout under the root:
  stages/<stage>/<key>/manifest.json + files   one finished stage output
  runs/<run-id>.json                           what a run used and computed
  locks/<stage>.<key>.lock                     held by the one process that may write <key>
  cache/verified/<stage>.<key>.json            size/mtime of files whose sha256 was last checked
  cache/model-digests.json                     content digests of local model folders
A stage writes into a temporary folder that is renamed into place only once its manifest is
written, so a crash leaves no folder that the cache would take for a finished artifact.
Reuse verifies what the manifest recorded: sizes always, sha256 whenever a file changed since it
was last hashed (size or mtime, as DVC does), every byte on `verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest_sha256"  # the manifest's own digest, over every other field
ABSENT = "absent"  # what `problems` says of an artifact that was never written (not a corruption)
_VERSIONED_PACKAGES = ("concner", "torch", "transformers", "prefect", "simalign", "sacrebleu", "seqeval", "pandas",
                       "pyarrow", "numpy")

# Where and how artifacts are kept, not what they hold: stage keys leave this module out (tasks/engine/keys.py).
ENGINE_ONLY = True


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_digest(files: Iterable[Mapping[str, Any]], patterns: Iterable[str] | None = None) -> str:
    """Hash of an artifact's files (path + sha256 from its manifest), or of those matching `patterns`.

    This, not the artifact's key, is what a downstream key covers: a stage recomputed in place
    with different bytes changes every key below it, and an identical recompute changes none.
    """
    pats = None if patterns is None else tuple(patterns)
    chosen = sorted((f["path"], f["sha256"]) for f in files if pats is None or any(fnmatch(f["path"], p) for p in pats))
    return digest_of(chosen)


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The digest a manifest keeps of itself: of its content as JSON reads it back (keys as strings,
    values as written), all fields but this one, so an edit to a metric or a file's hash shows."""
    return digest_of({k: v for k, v in manifest.items() if k != MANIFEST_DIGEST})


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _umask() -> int:
    """The process umask, read without changing it where the platform says it (setting it to read
    it back would race with threads creating files meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


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

    def _lock_file(self, stage: str, key: str) -> Path:
        return self.root / "locks" / f"{stage}.{key}.lock"

    def _stamp_file(self, stage: str, key: str) -> Path:
        return self.root / "cache" / "verified" / f"{stage}.{key}.json"

    def manifest(self, stage: str, key: str) -> dict | None:
        """The manifest of a finished, intact artifact (files present with their recorded sizes
        and hashes), or None. Corruption is logged by `problems`; callers just see no artifact."""
        if self.problems(stage, key):
            return None
        return self._read_manifest(stage, key)

    def _read_manifest(self, stage: str, key: str) -> dict | None:
        path = self.stage_dir(stage, key) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("stage") != stage or data.get("key") != key:
            return None
        return data

    def exists(self, stage: str, key: str) -> bool:
        return not self.problems(stage, key)

    def problems(self, stage: str, key: str, *, full: bool = False) -> list[str]:
        """What is wrong with an artifact: [] when intact, [ABSENT] when there is none.

        Sizes are always compared with the manifest; a file's sha256 is recomputed when `full`,
        or when the file or the manifest changed (size, mtime) since it was last hashed.
        """
        folder = self.stage_dir(stage, key)
        if not folder.is_dir():
            return [ABSENT]
        data = self._read_manifest(stage, key)
        if data is None:
            return [f"{folder / MANIFEST}: missing, unreadable or not this artifact's"]
        found: list[str] = []
        recorded = data.get(MANIFEST_DIGEST)
        # a manifest written before it kept its own digest has none to check: still valid
        if recorded is not None and recorded != manifest_digest(data):
            found.append(f"{folder / MANIFEST}: edited after it was written (its content no longer matches "
                         f"its {MANIFEST_DIGEST})")
        stamp_path = self._stamp_file(stage, key)
        try:
            stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stamp = {}
        manifest_stat = _stat(folder / MANIFEST)
        trusted = {} if full or stamp.get("manifest") != manifest_stat else stamp.get("files", {})
        hashed: dict[str, list[int]] = {}
        for entry in data.get("files", []):
            path = folder / entry["path"]
            try:
                stat = _stat(path)
            except OSError:
                found.append(f"{path}: missing (manifest lists {entry['bytes']} bytes)")
                continue
            if stat[0] != entry["bytes"]:
                found.append(f"{path}: expected {entry['bytes']} bytes, found {stat[0]}")
                continue
            if trusted.get(entry["path"]) == stat:
                hashed[entry["path"]] = stat
                continue
            actual = file_digest(path)
            if actual != entry["sha256"]:
                found.append(f"{path}: sha256 expected {entry['sha256'][:12]}…, found {actual[:12]}…")
            else:
                hashed[entry["path"]] = stat
        if not found and (hashed != stamp.get("files") or stamp.get("manifest") != manifest_stat):
            self._write_stamp(stage, key, manifest_stat, hashed)
        return found

    def _write_stamp(self, stage: str, key: str, manifest_stat: list[int], files: dict) -> None:
        path = self._stamp_file(stage, key)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"manifest": manifest_stat, "files": files}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a read-only store can still be read; it just rehashes next time
            tmp.unlink(missing_ok=True)

    @contextmanager
    def declared_view(self, stage: str, key: str, patterns: Iterable[str] | None) -> Iterator[Path]:
        """A folder that holds only the artifact's files matching `patterns` (all when None), as
        symbolic links, plus its manifest; removed when the block ends. A stage computes from these
        views: a file it did not declare in `reads` is not there, so none can be read unkeyed."""
        data = self._read_manifest(stage, key)
        if data is None:
            raise FileNotFoundError(f"{self.stage_dir(stage, key)}: no artifact")
        pats = None if patterns is None else tuple(patterns)
        source = self.stage_dir(stage, key)
        parent = self.root / "cache" / "views"
        parent.mkdir(parents=True, exist_ok=True)
        view = Path(tempfile.mkdtemp(prefix=f"{stage}-{key}-", dir=parent))
        try:
            for entry in data.get("files", []):
                if pats is None or any(fnmatch(entry["path"], p) for p in pats):
                    link = view / entry["path"]
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(source / entry["path"])
            (view / MANIFEST).symlink_to(source / MANIFEST)
            yield view
        finally:
            shutil.rmtree(view, ignore_errors=True)

    def content(self, stage: str, key: str, patterns: Iterable[str] | None = None) -> str:
        """The content digest of an intact artifact (all files, or those matching `patterns`)."""
        data = self._read_manifest(stage, key)
        if data is None:
            raise FileNotFoundError(f"{self.stage_dir(stage, key)}: no artifact")
        return content_digest(data.get("files", []), patterns)

    def ref(self, stage: str, key: str) -> ArtifactRef:
        return ArtifactRef(stage, key, self.stage_dir(stage, key))

    # writing ----------------------------------------------------------------------------

    @contextmanager
    def lock(self, stage: str, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold the one-writer lock of an artifact; temp folders left by dead writers of the same
        key are removed once it is held (a live writer would hold the lock)."""
        parent = self.stage_dir(stage, key).parent
        lock_file = self._lock_file(stage, key)
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_file), timeout=timeout):
            for leftover in list(parent.glob(f".{key}.tmp-*")) + list(parent.glob(f".{key}.old-*")):
                shutil.rmtree(leftover, ignore_errors=True)
            yield

    @contextmanager
    def writing(
        self, stage: str, key: str, *, params: Mapping[str, Any], inputs: Mapping[str, Any],
        key_material: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[Path, dict]]:
        """Yield (temporary folder, metrics dict) to fill; publish atomically when the block ends cleanly.

        On an exception the temporary folder is removed and nothing is published. Callers hold
        `lock(stage, key)` so that no two processes publish the same key.
        """
        parent = self.stage_dir(stage, key).parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))
        # mkdtemp makes the folder private (0700); once published it must be as readable as any
        # folder this user creates, or a store shared by a group could not be read by the others
        os.chmod(tmp, 0o777 & ~_umask())
        metrics: dict[str, Any] = {}
        started = time.time()
        try:
            yield tmp, metrics
            files = [
                {"path": p.relative_to(tmp).as_posix(), "bytes": p.stat().st_size, "sha256": file_digest(p)}
                for p in sorted(p for p in tmp.rglob("*") if p.is_file())
            ]
            manifest = {
                "stage": stage,
                "key": key,
                "params": dict(params),
                "inputs": dict(inputs),
                "key_material": dict(key_material or {}),
                "content": content_digest(files),
                "versions": package_versions(),
                "started": started,
                "ended": time.time(),
                "seconds": round(time.time() - started, 3),
                "metrics": metrics,
                "files": files,
            }
            manifest = json.loads(json.dumps(manifest, default=str))  # as a reader will see it
            manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            self._publish(tmp, self.stage_dir(stage, key))
            self._write_stamp(stage, key, _stat(self.stage_dir(stage, key) / MANIFEST),
                              {f["path"]: _stat(self.stage_dir(stage, key) / f["path"]) for f in files})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        """Rename into place. A previous folder (corrupt, or a forced recompute) is first renamed
        aside, never deleted in place, so a reader sees the old folder or the new one, whole."""
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def remove(self, stage: str, key: str) -> None:
        """Take an artifact out of the store (atomically for readers: renamed aside, then deleted)."""
        final = self.stage_dir(stage, key)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        self._stamp_file(stage, key).unlink(missing_ok=True)

    def artifacts(self) -> list[tuple[str, str]]:
        """(stage, key) of every artifact folder in the store, intact or not."""
        out = []
        for stage_dir in sorted((self.root / "stages").glob("*")):
            for folder in sorted(stage_dir.iterdir()) if stage_dir.is_dir() else []:
                if folder.is_dir() and not folder.name.startswith("."):
                    out.append((stage_dir.name, folder.name))
        return out

    def leftovers(self) -> list[Path]:
        """Temporary folders of writers that are gone (their key's lock is free)."""
        found = []
        for tmp in sorted((self.root / "stages").glob("*/.*.tmp-*")) + sorted((self.root / "stages").glob("*/.*.old-*")):
            key = tmp.name[1:].split(".", 1)[0]
            try:
                with FileLock(str(self._lock_file(tmp.parent.name, key)), timeout=0):
                    found.append(tmp)
            except TimeoutError:
                continue
        return found

    # runs -------------------------------------------------------------------------------
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def save_run(self, record: Mapping[str, Any]) -> Path:
        self.runs_dir().mkdir(parents=True, exist_ok=True)
        path = self.runs_dir() / f"{record['run_id']}.json"
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def load_run(self, run_id: str) -> dict:
        """A run by id, by unique id prefix, or 'latest'."""
        runs, unreadable = self.scan_runs()
        if run_id == "latest" and runs:
            return runs[-1]
        matches = [r for r in runs if r["run_id"] == run_id] or [r for r in runs if r["run_id"].startswith(run_id)]
        if len(matches) != 1:
            from concner.tasks.engine.errors import UserError

            known = ", ".join(r["run_id"] for r in runs[-5:]) or "none"
            problem = "is ambiguous" if matches else "not found"
            skipped = "".join(f"; unreadable run record {path} ({why})" for path, why in unreadable[:3])
            skipped += f"; {len(unreadable) - 3} more unreadable" if len(unreadable) > 3 else ""
            raise UserError(f"run {run_id!r} {problem} in {self.runs_dir()} (latest runs: {known}){skipped}")
        return matches[0]

    def list_runs(self) -> list[dict]:
        return self.scan_runs()[0]

    def scan_runs(self) -> tuple[list[dict], list[tuple[Path, str]]]:
        """(the readable run records, oldest first; (path, why) of each record that cannot be read).

        A record cut short or edited into something else is left out of every listing, so the
        commands that list runs name it rather than let a run vanish without a word."""
        records, unreadable = [], []
        for path in sorted(self.runs_dir().glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except OSError as err:
                unreadable.append((path, err.strerror or str(err)))
                continue
            except ValueError as err:
                unreadable.append((path, f"not valid JSON: {err}"))
                continue
            if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
                unreadable.append((path, "not a run record (no run_id)"))
                continue
            records.append(record)
        return sorted(records, key=lambda r: r.get("started", 0)), unreadable
