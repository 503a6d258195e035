"""Which config fields a piece of code reads, and whether changing one changes a stage's key.

`recorded_reads(config)` notes every field of `config`'s sections read while the block runs
(attribute access, and every field of a section that is dumped whole). `perturbed(config, field)`
gives the same config with that one field set to another value of its type, so a test can check
that a stage's key material reacts to it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from concner.tasks.engine import config as config_module


def _sections(model: BaseModel, prefix: str = "") -> dict[int, str]:
    """id of each section instance under `model` -> its dotted path ('' for the top)."""
    out = {id(model): prefix}
    for name in type(model).model_fields:
        value = model.__dict__.get(name)
        if isinstance(value, BaseModel):
            out.update(_sections(value, f"{prefix}{name}."))
    return out


def _config_classes() -> list[type[BaseModel]]:
    return [obj for obj in vars(config_module).values()
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == config_module.__name__]


@contextlib.contextmanager
def recorded_reads(config: BaseModel) -> Iterator[set[str]]:
    """The dotted names of the leaf fields of `config` read inside the block."""
    paths = _sections(config)
    reads: set[str] = set()
    originals: dict[type, tuple[Any, Any]] = {}

    def getattribute(self, name):
        value = object.__getattribute__(self, name)
        if not name.startswith("_"):
            path = paths.get(id(self))
            if path is not None and name in type(self).model_fields and not isinstance(value, BaseModel):
                reads.add(path + name)
        return value

    def model_dump(self, *args, **kwargs):
        path = paths.get(id(self))
        if path is not None:
            names = set(type(self).model_fields)
            if isinstance(kwargs.get("include"), (set, frozenset)):
                names &= kwargs["include"]
            if isinstance(kwargs.get("exclude"), (set, frozenset)):
                names -= kwargs["exclude"]
            reads.update(path + name for name in names if not isinstance(self.__dict__.get(name), BaseModel))
            for name, value in self.__dict__.items():  # nested sections are dumped whole too
                if isinstance(value, BaseModel) and name in type(self).model_fields:
                    value.model_dump()
        return originals[BaseModel][1](self, *args, **kwargs)

    originals[BaseModel] = (None, BaseModel.model_dump)
    for cls in _config_classes():
        originals[cls] = (cls.__dict__.get("__getattribute__"), None)
        cls.__getattribute__ = getattribute
    BaseModel.model_dump = model_dump
    try:
        yield reads
    finally:
        BaseModel.model_dump = originals[BaseModel][1]
        for cls, (original, _) in originals.items():
            if cls is BaseModel:
                continue
            if original is None:
                del cls.__getattribute__
            else:
                cls.__getattribute__ = original


def _other_value(value: Any, annotation: Any, scratch: Path) -> Any:
    """A value of `annotation` other than `value`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return next(a for a in typing.get_args(annotation) if a != value)
    if args and origin is not list and origin is not Literal:  # X | None
        if len(args) == 1:
            inner = args[0]
            if value is None:
                return _fresh(inner, scratch)
            return _other_value(value, inner, scratch)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, Path):
        copy = scratch / f"changed-{value.name}"
        shutil.copyfile(value, copy)
        with copy.open("a", encoding="utf-8") as out:
            out.write("\n")  # the same sentences, other bytes: a key of the file's content changes
        return copy
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, list):
        return [*value, "CHANGED"]
    if value is None:
        return _fresh(annotation, scratch)
    raise TypeError(f"no other value known for {value!r} ({annotation})")


def _fresh(annotation: Any, scratch: Path) -> Any:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)[0]
    if annotation is bool:
        return True
    if annotation is int:
        return 1
    if annotation is float:
        return 0.5
    if annotation is str:
        return "changed"
    if annotation is Path:
        path = Path(tempfile.mkstemp(dir=scratch, suffix=".txt")[1])
        path.write_text("changed\n", encoding="utf-8")
        return path
    if typing.get_origin(annotation) is list:
        return ["CHANGED"]
    raise TypeError(f"no value known for {annotation}")


def perturbed(config: BaseModel, field: str, scratch: Path) -> BaseModel:
    """`config` with the dotted `field` set to another value (no validation: only keys are computed)."""
    *sections, leaf = field.split(".")
    chain = [config]
    for name in sections:
        chain.append(getattr(chain[-1], name))
    owner = chain[-1]
    annotation = type(owner).model_fields[leaf].annotation
    new = owner.model_copy(update={leaf: _other_value(owner.__dict__[leaf], annotation, scratch)})
    for parent, name in zip(reversed(chain[:-1]), reversed(sections)):
        new = parent.model_copy(update={name: new})
    return new
