"""The fp8pass file: a safetensors file holding a model's weights with its converted layers in FP8,
and how it was made, as data.

Tensors: each converted weight ``NAME`` as ``NAME.fp8`` (float8) and ``NAME.fp8_scale`` (float32:
one per output channel, or one); every other tensor of the model (parameters and buffers) as
``NAME`` in its dtype. Metadata, all strings:

- ``format``: ``"fp8pass-1"``;
- ``config``: the :class:`~fp8pass.config.FP8Config` it was made with, as JSON;
- ``dtypes``: each converted weight's own dtype (what it loads back as);
- ``aliases``: tied weights, stored once: name -> the name it is stored under;
- ``kept``: each layer weight of a kind fp8pass converts that stayed in its dtype -> why.

**The plan is the data.** Which layers are FP8 is which tensors are ``.fp8`` in the file; a
reader never compiles the file's ``skip`` / ``convert`` patterns (a pattern from a file could
backtrack for minutes) and never runs anything from it. Every field is checked
(:func:`read_metadata`) before it is used; a field that fails is a
:class:`~fp8pass.safetensors_io.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .computes import AUTO, COMPUTES
from .config import FP8_DTYPES, GRANULARITIES, FP8Config
from .plan import NONFINITE
from .quantize import scale_shape
from .safetensors_io import CheckpointError, SafetensorsWriter, header_room

#: how an fp8pass file names a converted weight ``NAME``'s FP8 copy and its scale
FP8_SUFFIX, FP8_SCALE_SUFFIX = ".fp8", ".fp8_scale"

__all__ = ["FORMAT", "FileInfo", "file_config", "metadata", "read_metadata", "write"]

FORMAT = "fp8pass-1"
_FLOAT_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class FileInfo:
    """What an fp8pass file's metadata says, checked: the config to compile its model with, each
    converted weight's dtype, tied-weight aliases, and why each kept layer was kept."""

    config: FP8Config
    dtypes: dict[str, torch.dtype] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)


def metadata(
    config: FP8Config, dtypes: dict[str, torch.dtype], aliases: dict[str, str], kept: dict[str, str]
) -> dict[str, str]:
    """The metadata of an fp8pass file (see the module docstring)."""
    return {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "dtypes": json.dumps({n: str(d).removeprefix("torch.") for n, d in dtypes.items()}),
        "aliases": json.dumps(aliases),
        "kept": json.dumps(kept),
    }


def read_metadata(path: Path, meta: dict[str, str], stored: set[str]) -> FileInfo:
    """The metadata of the fp8pass file at ``path``, checked; ``stored``: the names it holds a
    tensor for (``NAME`` for ``NAME.fp8``)."""

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(path, f"fp8pass metadata: {why}")

    config = file_config(path, _json(path, meta, "config", dict))
    dtypes = {}
    for name, value in _json(path, meta, "dtypes", dict, default={}).items():
        if not isinstance(value, str) or value not in _FLOAT_DTYPES:
            raise refuse(f"the dtype of {name!r} is {value!r}, not one of {', '.join(_FLOAT_DTYPES)}")
        dtypes[name] = _FLOAT_DTYPES[value]
    aliases = _json(path, meta, "aliases", dict, default={})
    for name, target in aliases.items():
        if not isinstance(target, str) or target not in stored or name in stored:
            raise refuse(f"the alias {name!r} -> {target!r} does not name one stored tensor by another name")
    kept = _json(path, meta, "kept", dict, default={})
    if not all(isinstance(v, str) for v in kept.values()):
        raise refuse("'kept' does not map layer weights to reasons (strings)")
    return FileInfo(config, dtypes, aliases, kept)


def file_config(path: Path, data: dict[str, Any]) -> FP8Config:
    """The config to compile a file's model with: the storage dtype, granularity, compute, fusion,
    boundary rule and size threshold the file was made with, each checked; its ``skip`` /
    ``convert`` patterns are never compiled (the file's tensors say which layers are FP8, and the
    loader pins that plan: :func:`fp8pass.store.pin`)."""

    def pick(name: str, allowed: Any) -> Any:
        value = data.get(name)
        if not isinstance(value, (str, bool)) or value not in allowed:
            raise CheckpointError(
                path, f"fp8pass metadata: config {name} is {value!r}, not one of {list(allowed)}"
            )
        return value

    dtype = pick("dtype", [f"float8_{n}" for n in FP8_DTYPES])
    return FP8Config(
        dtype=FP8_DTYPES[dtype.removeprefix("float8_")],
        granularity=pick("granularity", GRANULARITIES),
        compute=pick("compute", (AUTO, *COMPUTES)) if "compute" in data else AUTO,
        fuse_projections=pick("fuse_projections", (True, False)) if "fuse_projections" in data else False,
        keep_boundary=pick("keep_boundary", (True, False)) if "keep_boundary" in data else True,
        min_weight_numel=_natural(path, data.get("min_weight_numel", 4096)),
    )


def _natural(path: Path, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise CheckpointError(
            path, f"fp8pass metadata: config min_weight_numel is {value!r}, not an int >= 0"
        )
    return value


def _json(path: Path, meta: dict[str, str], key: str, kind: type, default: Any = None) -> Any:
    if key not in meta:
        if default is None:
            raise CheckpointError(path, f"fp8pass metadata: no {key!r} entry")
        return default
    try:
        value = json.loads(meta[key])
    except ValueError as e:
        raise CheckpointError(path, f"fp8pass metadata: {key!r} is not JSON ({e})") from e
    if not isinstance(value, kind) or (kind is dict and not all(isinstance(k, str) for k in value)):
        raise CheckpointError(path, f"fp8pass metadata: {key!r} is not a JSON {kind.__name__}")
    return value


def write(
    path: str | Path,
    items: list[Any],
    config: FP8Config,
    aliases: dict[str, str],
    realize: Callable[[Any, FP8Config], tuple[torch.Tensor, torch.Tensor | None, str]],
    progress: Callable[[int, int, str], None] | None = None,
) -> None:
    """The one writer of fp8pass files: ``items`` (:class:`fp8pass.items.Item`), each read by
    ``realize`` (:func:`fp8pass.items.realize`) one at a time, streamed into ``path`` atomically
    (:class:`~fp8pass.safetensors_io.SafetensorsWriter`). An item ``realize`` keeps in its dtype
    (a non-finite weight) is written so, and its reason recorded under ``kept``."""
    planned = []
    for item in items:
        if item.converted:
            planned += [
                (item.name + FP8_SUFFIX, config.dtype, item.shape),
                (
                    item.name + FP8_SCALE_SUFFIX,
                    torch.float32,
                    scale_shape(item.shape, config.granularity, item.axis),
                ),
            ]
        else:
            planned.append((item.name, item.dtype, item.shape))
    kept = {item.name: item.kept for item in items if item.kept}
    dtypes = {item.name: item.dtype for item in items if item.converted}
    slack = sum(len(json.dumps(item.name)) + len(NONFINITE) + 8 for item in items if item.converted)
    room = header_room(planned, metadata(config, dtypes, aliases, kept), slack)
    with SafetensorsWriter(path, room) as out:
        for i, item in enumerate(items):
            value, scale, why = realize(item, config)
            if scale is None:
                out.write(item.name, value)
                if why:
                    kept[item.name] = why
                    dtypes.pop(item.name, None)
            else:
                out.write(item.name + FP8_SUFFIX, value)
                out.write(item.name + FP8_SCALE_SUFFIX, scale)
            if progress:
                progress(i + 1, len(items), item.name)
        out.metadata = metadata(config, dtypes, aliases, kept)
