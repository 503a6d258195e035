"""The configs and sample corpora that ship inside the package, found with `importlib.resources`.

`configs/` and `data/` are the packages `concner.configs` and `concner.data` (pyproject.toml), so
the same lookup works in an editable install (the source folders) and in an installed wheel
(`site-packages/concner/configs`, `.../concner/data/samples`). The bundled configs name the
samples relative to themselves (`../data/samples/en_train.conll`), which holds in both layouts.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from concner.tasks.engine.errors import UserError

CONFIGS_PACKAGE = "concner.configs"
DATA_PACKAGE = "concner.data"
DEMO = "demo"


def _folder(package: str, sub: str = "") -> Path:
    """The package's folder on disk (wheels install unpacked; a zipped install is not supported)."""
    root = files(package)
    folder = root.joinpath(sub) if sub else root
    path = Path(str(folder))
    if not path.is_dir():
        raise UserError(f"{package}{'/' + sub if sub else ''}: bundled folder not found at {path} "
                        "(is concner installed from a complete wheel or source tree?)")
    return path


def configs_dir() -> Path:
    return _folder(CONFIGS_PACKAGE)


def samples_dir() -> Path:
    """The synthetic sample corpora the demo runs on (data/samples in the source tree)."""
    return _folder(DATA_PACKAGE, "samples")


def config_names() -> list[str]:
    """The bundled configs by name (file name without `.yaml`), e.g. ["demo", "demo-multi", ...]."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def config_path(name: str = DEMO) -> Path:
    """A bundled config by name (`demo`, `demo-multi`, ...); `.yaml` may be given or left out."""
    stem = name.removesuffix(".yaml")
    path = configs_dir() / f"{stem}.yaml"
    if not path.is_file():
        raise UserError(f"no bundled config {name!r}; bundled configs: {', '.join(config_names())}")
    return path
