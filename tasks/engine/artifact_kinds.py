"""The kinds of file a stage publishes, each with its one writer and its one reader.

A stage writes its outputs through these and every reader (a downstream stage, a view, the report)
reads through them: a format detail (parquet without the index, npz without timestamps, CoNLL's
layout) is decided once per kind, not at each call site. The named artifacts of each stage are in
`tasks/engine/artifacts.py`. pandas, numpy and torch load inside the functions that need them: a
run that reuses every stage only names artifacts and never loads them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from concner.tasks.text.corpus import Sentence

A = TypeVar("A", bound="Artifact")


@dataclass(frozen=True)
class Artifact:
    """One file (or folder) of a stage's artifact folder; `file` may name a part, as in
    `predictions_{split}.conll`, filled in by `of(split=...)`."""

    file: str
    about: str = ""  # what a row, a file or a folder holds (for readers of the code and of the store)
    optional: bool = False  # written only under some settings or inputs (e.g. a labeled target set)

    def of(self: A, **parts: str) -> A:
        return dataclasses.replace(self, file=self.file.format(**parts))

    def path(self, folder: Path) -> Path:
        return Path(folder) / self.file

    def exists(self, folder: Path) -> bool:
        return self.path(folder).exists()

    @property
    def pattern(self) -> str:
        """A glob of every file this artifact can be: `predictions_*.conll`; a folder's files: `model/*`."""
        return re.sub(r"\{[^}]*\}", "*", self.file)

    def covers(self, relative: str) -> bool:
        """Whether a file of the stage folder (path relative to it) belongs to this artifact."""
        from fnmatch import fnmatchcase

        return fnmatchcase(relative, self.pattern)


@dataclass(frozen=True)
class Table(Artifact):
    """A parquet table, one row per item, written without pandas' index."""

    def write(self, folder: Path, frame: pd.DataFrame | Sequence[dict[str, Any]]) -> None:
        import pandas as pd

        table = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
        table.to_parquet(self.path(folder), index=False)

    def read(self, folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.path(folder), columns=columns)


@dataclass(frozen=True)
class TaggedText(Artifact):
    """Sentences as CoNLL text (a token and its tag per line, a blank line between sentences): for
    people and for other tools; the stages read the parquet twin."""

    def write(self, folder: Path, sentences: Sequence[Sentence]) -> None:
        from concner.tasks.text.conll import write_conll

        write_conll(sentences, self.path(folder))


@dataclass(frozen=True)
class Arrays(Artifact):
    """Named numpy arrays in one compressed npz."""

    def write(self, folder: Path, **arrays: np.ndarray) -> None:
        """np.savez_compressed with fixed zip timestamps: numpy stamps each member with the current
        time, so two identical runs would write different bytes."""
        import io
        import zipfile

        import numpy as np

        with zipfile.ZipFile(self.path(folder), "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buffer.getvalue())

    def read(self, folder: Path):
        import numpy as np

        return np.load(self.path(folder))


@dataclass(frozen=True)
class Document(Artifact):
    """A JSON document, keys sorted, so that equal content is equal bytes."""

    def write(self, folder: Path, content: Any) -> None:
        self.path(folder).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def read(self, folder: Path) -> Any:
        return json.loads(self.path(folder).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ModelFolder(Artifact):
    """A model folder in the transformers layout (save_pretrained), which any tool can load."""

    @property
    def pattern(self) -> str:
        return f"{self.file}/*"

    def write(self, folder: Path, model) -> None:
        """A model with a `save(folder)` (ConcNerModel); a training loop that saves as it goes
        writes to `path(folder)` itself."""
        model.save(self.path(folder))
