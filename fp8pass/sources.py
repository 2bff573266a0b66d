"""The checkpoints users have, read one tensor at a time.

:func:`open_checkpoint` takes a diffusers model folder (``config.json`` and
``diffusion_pytorch_model*.safetensors``, sharded with an index or not, in bf16 / fp16 / fp32) or a
single safetensors file, checks every file's header (a truncated file fails here), and recognises
what the tensors are:

- ``fp8pass``: written by :func:`fp8pass.save_fp8` (``NAME.fp8`` + ``NAME.fp8_scale``);
- ``comfy-scaled`` (ComfyUI's "fp8 scaled" files, older naming): a ``scaled_fp8`` marker tensor
  (its dtype is the storage dtype; float32 means e4m3fn) and ``LAYER.scale_weight`` (float32, 0-d or
  [1]) beside each FP8 ``LAYER.weight``; ``LAYER.scale_input`` (a static activation scale) is
  not used;
- ``comfy-quant`` (ComfyUI's newer naming): ``LAYER.weight_scale`` beside each FP8 weight, and a
  ``LAYER.comfy_quant`` uint8 tensor holding JSON (``{"format": "float8_e4m3fn"}``) or the header's
  ``_quantization_metadata``; ``LAYER.input_scale`` is not used. A ``weight_scale`` of shape [N] is
  a per-row scale (diffusers' BFL "fp8r" files name it the same);
- ``fp8``: plain FP8 weights with no scale (scale 1), possibly FP8 biases and norms too;
- ``float``: bf16 / fp16 / fp32 tensors.

A weight is FP8 by its dtype, not by a scale beside it (some files carry scales on bf16 layers).
Every dequantization is ``fp8.float() * scale``, per tensor or per row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from .fp8file import FP8_SCALE_SUFFIX, FP8_SUFFIX
from .safetensors_io import CheckpointError, read_header, read_tensor

__all__ = [
    "Checkpoint",
    "checkpoint_files",
    "checkpoint_inputs",
    "open_checkpoint",
    "pretrained_dtype",
]

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_WEIGHTS = "diffusion_pytorch_model"
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
_IGNORED_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")


@dataclass
class Checkpoint:
    """Tensors by key across a checkpoint's files; FP8 weights with their scales set apart.

    ``tensors``: key -> (dtype, shape) for every tensor but scales and markers, keys with the
    common prefix (``model.diffusion_model.``) removed. ``scales``: FP8 weight key -> its scale's key.
    """

    paths: list[Path]
    layout: str
    tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]] = field(default_factory=dict)
    scales: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    _where: dict[str, Path] = field(default_factory=dict, repr=False)  # stored key -> its file
    _renamed: dict[str, str] = field(default_factory=dict, repr=False)  # key -> stored key (fp8pass files)
    _entries: dict[str, tuple[torch.dtype, tuple[int, ...], int]] = field(default_factory=dict, repr=False)
    _files: dict[Path, BinaryIO] = field(default_factory=dict, repr=False)

    def is_fp8(self, key: str) -> bool:
        return self.tensors[key][0] in FP8_DTYPES

    def read(self, key: str) -> torch.Tensor:
        """The tensor as stored (FP8 stays FP8)."""
        return self._raw(self.stored_key(key))

    def stored_key(self, key: str) -> str:
        """The name the file gives ``key``."""
        return self._renamed.get(key, self.prefix + key)

    def scale(self, key: str) -> torch.Tensor | None:
        """The float32 scale of FP8 weight ``key`` (0-d per tensor, [N] per row), None for scale 1."""
        scale_key = self.scales.get(key)
        if scale_key is None:
            return None
        t = self._raw(scale_key).float()
        return t.reshape(()) if t.numel() == 1 else t.reshape(-1)

    def scale_shape(self, key: str) -> tuple[int, ...] | None:
        """The stored shape of FP8 weight ``key``'s scale, None where it has none (scale 1)."""
        scale_key = self.scales.get(key)
        return None if scale_key is None else self._entries[scale_key][1]

    def read_dequantized(self, key: str) -> torch.Tensor:
        """The tensor in float32 if it is FP8 (times its scale), else as stored."""
        t = self.read(key)
        if t.dtype not in FP8_DTYPES:
            return t
        scale = self.scale(key)
        t = t.float()
        if scale is None:
            return t
        return t * (scale.view(-1, *[1] * (t.dim() - 1)) if scale.dim() else scale)

    def file_of(self, key: str) -> Path:
        return self._where[self.stored_key(key)]

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def _raw(self, stored_key: str) -> torch.Tensor:
        """Read into memory of its own (not mapped): see :func:`fp8pass.safetensors_io.read_tensor`."""
        path = self._where[stored_key]
        if path not in self._files:
            self._files[path] = open(path, "rb")  # noqa: SIM115 -- closed by close()
        return read_tensor(self._files[path], self._entries[stored_key][2], *self._entries[stored_key][:2])


def checkpoint_files(source: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint: a file, or a diffusers model folder (sharded with
    ``diffusion_pytorch_model.safetensors.index.json``, or one ``diffusion_pytorch_model.safetensors``).
    An index may name only files inside its own folder."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    index = path / f"{_WEIGHTS}.safetensors.index.json"
    if index.is_file():
        return _index_files(index)
    single = path / f"{_WEIGHTS}.safetensors"
    if single.is_file():
        return [single]
    found = sorted(path.glob("*.safetensors"))
    if len(found) == 1:
        return found
    raise FileNotFoundError(
        f"{path}: no {_WEIGHTS}.safetensors, no {index.name}, and {len(found)} other .safetensors files"
    )


#: the longest index.json fp8pass reads (a real one lists each tensor once: tens of KiB)
_MAX_INDEX_BYTES = 16 * 2**20


def _index_files(index: Path) -> list[Path]:
    """The shards an index names, each a plain file name in the index's folder."""
    if index.stat().st_size > _MAX_INDEX_BYTES:
        raise CheckpointError(index, f"is over {_MAX_INDEX_BYTES} bytes: not a checkpoint index")
    try:
        weight_map = json.loads(index.read_bytes().decode("utf-8")).get("weight_map")
    except (UnicodeDecodeError, ValueError, AttributeError) as e:
        raise CheckpointError(index, f"is not a checkpoint index (JSON with a weight_map): {e}") from e
    if (
        not isinstance(weight_map, dict)
        or not weight_map
        or not all(isinstance(v, str) for v in weight_map.values())
    ):
        raise CheckpointError(index, "has no weight_map of tensor names to file names")
    files = []
    for name in sorted(set(weight_map.values())):
        if Path(name).name != name or name in (".", ".."):
            raise CheckpointError(
                index, f"names the shard {name!r}, which is not a file name in the index's own folder"
            )
        shard = index.parent / name
        if not shard.is_file():
            raise CheckpointError(index, f"names the shard {name!r}, which is not in {index.parent}")
        files.append(shard)
    return files


def checkpoint_inputs(source: str | Path) -> list[Path]:
    """Every file a read of ``source`` opens: its safetensors files, its index and its config.json."""
    path = Path(source)
    extra = [path / f"{_WEIGHTS}.safetensors.index.json", path / "config.json"] if path.is_dir() else []
    return checkpoint_files(source) + [f for f in extra if f.is_file()]


def open_checkpoint(source: str | Path) -> Checkpoint:
    """Read every header of ``source`` (each checked completely) and recognise its layout."""
    from .keymap import strip_prefix

    headers = [read_header(p) for p in checkpoint_files(source)]
    metadata = {k: v for h in headers for k, v in h.metadata.items()}
    stored, where, entries = {}, {}, {}
    for h in headers:
        for k, (d, s) in h.tensors.items():
            if k in stored:
                raise CheckpointError(h.path, f"tensor {k!r} is also in {where[k]}")
            stored[k], where[k], entries[k] = (d, s), h.path, (d, s, h.offsets[k])
    paths = [h.path for h in headers]
    if metadata.get("format", "").startswith("fp8pass"):
        return _fp8pass_checkpoint(paths, stored, metadata, where, entries)
    prefix, stripped = strip_prefix(list(stored))
    ckpt = Checkpoint(paths, "float", metadata=metadata, prefix=prefix, _where=where, _entries=entries)
    markers = [k for k in stripped if k == "scaled_fp8" or k.endswith(".scaled_fp8")]
    for key, full in stripped.items():
        if key not in markers and not key.endswith((*_IGNORED_SUFFIXES, *_SCALE_SUFFIXES)):
            ckpt.tensors[key] = stored[full]
    for key, full in stripped.items():
        for suffix in _SCALE_SUFFIXES:
            weight = key.removesuffix(suffix) + ".weight"
            if key.endswith(suffix) and weight in ckpt.tensors and ckpt.is_fp8(weight):
                _check_scale(ckpt, weight, full)
                ckpt.scales[weight] = full  # a scale beside a bf16 weight is a dummy: ignored
    quant = any(k.endswith(".comfy_quant") for k in stripped) or "_quantization_metadata" in metadata
    fp8 = any(ckpt.is_fp8(k) for k in ckpt.tensors)
    ckpt.layout = "comfy-scaled" if markers else "comfy-quant" if quant else "fp8" if fp8 else "float"
    return ckpt


def _fp8pass_checkpoint(paths, stored, metadata, where, entries) -> Checkpoint:
    """An fp8pass file (:mod:`fp8pass.fp8file`): ``NAME.fp8`` read as the FP8 weight ``NAME``,
    with ``NAME.fp8_scale`` as its scale."""
    ckpt = Checkpoint(paths, "fp8pass", metadata=metadata, _where=where, _entries=entries)
    for key, value in stored.items():
        if key.endswith(FP8_SCALE_SUFFIX):
            if key.removesuffix(FP8_SCALE_SUFFIX) + FP8_SUFFIX not in stored:
                raise CheckpointError(where[key], f"tensor {key!r} is the scale of no FP8 weight")
            continue
        name = key.removesuffix(FP8_SUFFIX)
        if name in ckpt.tensors:
            raise CheckpointError(where[key], f"holds {name!r} both as an FP8 weight and as a tensor")
        ckpt.tensors[name] = value
        ckpt._renamed[name] = key
        if key.endswith(FP8_SUFFIX):
            scale = name + FP8_SCALE_SUFFIX
            if scale not in stored or value[0] not in FP8_DTYPES:
                raise CheckpointError(
                    where[key], f"tensor {key!r} is not an FP8 weight with its scale {scale!r}"
                )
            _check_scale(ckpt, name, scale)
            ckpt.scales[name] = scale
    return ckpt


def _check_scale(ckpt: Checkpoint, weight: str, scale_key: str) -> None:
    """A scale is floating point, and one per tensor or one per row of its weight."""
    dtype, shape = ckpt._entries[scale_key][:2]
    rows = ckpt.tensors[weight][1][:1]
    if not dtype.is_floating_point or dtype in FP8_DTYPES or math.prod(shape) not in (1, *rows):
        raise CheckpointError(
            ckpt._where[scale_key],
            f"tensor {scale_key!r} ({dtype}, shape {list(shape)}) is not a scale of {weight!r} "
            f"(shape {list(ckpt.tensors[weight][1])}): one float, or one per row",
        )


def pretrained_dtype(model: torch.nn.Module, name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype ``from_pretrained(torch_dtype=dtype)`` gives the floating tensor ``name`` of
    ``model``: ``dtype``, or float32 where the library keeps it so. diffusers keeps its class's
    ``_keep_in_fp32_modules`` in float32 for every dtype; transformers keeps
    ``_keep_in_fp32_modules`` (T5's ``wo``) only for float16, and ``_keep_in_fp32_modules_strict``
    for float16 and bfloat16."""
    if type(model).__module__.startswith("transformers"):
        keep = set(getattr(model, "_keep_in_fp32_modules_strict", None) or [])
        if dtype == torch.float16:
            keep |= set(getattr(model, "_keep_in_fp32_modules", None) or [])
    else:
        keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    return torch.float32 if keep.intersection(name.split(".")) else dtype
