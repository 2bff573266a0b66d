"""From a checkpoint (or a model) to items: every tensor of a model, where its value comes from,
whether it converts, checked against the model before anything is read; and reading one.

:func:`plan_items` plans a model's tensors from a checkpoint (:mod:`fp8pass.sources`): the
mapping of its keys (:mod:`fp8pass.keymap`), which layers convert (an fp8pass file's own plan, as
data: :mod:`fp8pass.fp8file`; else :func:`fp8pass.plan.plan_modules`), and each tensor's shape,
dtype and scale against the model's, refused with a :class:`~fp8pass.CheckpointError` before the
first read. :func:`model_tensor` / :func:`model_value` read a model's own tensors (what
:func:`fp8pass.save_fp8` writes). :func:`realize` reads one item: a converted weight as FP8 bytes
and scale, anything else in its dtype; a weight that turns out NaN or infinite stays in its dtype,
as every other path keeps it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import fp8file, store
from ._compat.storage import is_released
from .config import FP8Config
from .fp8file import FP8_SCALE_SUFFIX
from .keymap import Piece, dim0_only, replay, sources, trace_mapping
from .kinds import KINDS, kind_of_module
from .plan import NONFINITE, all_finite, plan_modules
from .quantize import dequantize_weight, quantize_weight, scale_shape
from .safetensors_io import CheckpointError
from .sources import FP8_DTYPES, Checkpoint, pretrained_dtype
from .structure import split_inputs, structure_of

__all__ = ["Item", "model_tensor", "model_value", "plan_items", "realize", "refuse_meta_buffers"]


@dataclass
class Item:
    """One tensor of the model: where its value comes from, its shape and dtype in the model, and
    whether it converts (``kept``: why a layer weight does not)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    converted: bool
    read: Callable[[], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]  # a tensor, or FP8 (q, scale)
    axis: int = 0
    aliases: list[str] = field(default_factory=list)
    kept: str = ""  # why a layer's weight stays in its dtype
    layer: bool = False  # the weight of a layer of a kind fp8pass converts


def plan_items(
    model: torch.nn.Module,
    ckpt: Checkpoint,
    config: FP8Config | None,
    dtype: torch.dtype | None,
    example_inputs: Any,
) -> tuple[FP8Config, list[Item]]:
    """The config and every tensor of ``model``'s state dict as an item, in file order, each
    checked against the model."""
    where = ckpt.paths[0] if len(ckpt.paths) == 1 else ckpt.paths[0].parent
    info = None
    if ckpt.layout == "fp8pass":
        info = fp8file.read_metadata(ckpt.paths[0], ckpt.metadata, set(ckpt.tensors))
        if config is not None and config.storage_key != info.config.storage_key:
            raise CheckpointError(
                where,
                f"stores FP8 weights as {info.config.dtype}, per {info.config.granularity}; config asks for "
                f"{config.dtype}, per {config.granularity}. Leave config out (the file's is used) or "
                "convert the source again with python -m fp8pass convert.",
            )
        config = info.config
        mapping = {k: Piece("source", key=k) for k in ckpt.tensors}
        mapping.update({alias: Piece("source", key=target) for alias, target in info.aliases.items()})
        _refuse_unexpected(where, model, mapping)
        plan = {
            name: "" if ckpt.is_fp8(name) else info.kept.get(name, f"stored in its dtype by {where}")
            for name in _layer_axes(model)
            if name in ckpt.tensors
        }
    else:
        config = config or FP8Config()
        try:
            mapping, unused = trace_mapping(model, ckpt.tensors)
        except ValueError as e:
            raise CheckpointError(where, str(e)) from e
        structure = structure_of(model, *split_inputs(example_inputs)) if example_inputs is not None else None
        plan = {
            la.weight.path: la.reason
            for la in plan_modules(model, config, check_values=False, structure=structure)
        }
    layer_axes = _layer_axes(model)
    dtype = dtype or _default_dtype(ckpt)
    state = model.state_dict(keep_vars=True)
    if info is not None:  # an fp8pass file also holds the buffers the constructor computes
        state.update({n: b for n, b in model.named_buffers(remove_duplicate=False) if n in mapping})
    names_of: dict[int, list[str]] = {}
    for name, t in state.items():
        names_of.setdefault(id(t), []).append(name)
    items, missing = [], []
    for names in names_of.values():
        name = next((n for n in names if n in mapping), None)
        if name is None:
            missing.append(names[0])
            continue
        t = state[name]
        item_dtype = _item_dtype(model, name, t, dtype, info)
        converted = plan.get(name) == ""
        if info is not None and converted and ckpt.tensors[mapping[name].key][0] != config.dtype:
            raise CheckpointError(
                where, f"tensor {name!r}.fp8 is {ckpt.tensors[mapping[name].key][0]}, not {config.dtype}"
            )
        axis = layer_axes.get(name, 0)
        item = Item(
            name,
            tuple(t.shape),
            item_dtype,
            converted,
            _source_reader(mapping[name], ckpt, config, converted),
            axis,
        )
        item.aliases = [n for n in names if n != name]
        item.kept = plan.get(name) or ""
        item.layer = name in plan
        _check_item(where, item, t, mapping[name], ckpt, config)
        items.append(item)
    if missing:
        unused = (
            sorted(set(ckpt.tensors) - set().union(*(sources(p) for p in mapping.values())))
            if mapping
            else []
        )
        raise CheckpointError(
            where,
            f"holds no tensor for {len(missing)} of {type(model).__name__}'s (first '{missing[0]}'); "
            f"is it a checkpoint of this model?" + (f" Unused in the file: {unused[:3]}" if unused else ""),
        )
    return config, items


def _layer_axes(model: torch.nn.Module) -> dict[str, int]:

    return {
        f"{name}.weight" if name else "weight": KINDS[kind].scale_axis
        for name, m in model.named_modules(remove_duplicate=False)
        if (kind := kind_of_module(m)) in KINDS
    }


def _item_dtype(
    model: torch.nn.Module, name: str, t: torch.Tensor, dtype: torch.dtype, info: Any
) -> torch.dtype:
    if not t.is_floating_point():
        return t.dtype
    if info is not None and name in info.dtypes:
        return info.dtypes[name]
    return pretrained_dtype(model, name, dtype)


def _check_item(
    where: Path, item: Item, target: torch.Tensor, piece: Piece, ckpt: Checkpoint, config: FP8Config
) -> None:
    """Refuse, before anything is read, a tensor whose shape, dtype or scale cannot fill ``target``."""
    got_dtype, got = _piece_signature(piece, ckpt)
    if got != item.shape:
        raise CheckpointError(
            where, f"tensor '{item.name}' has shape {list(got)}; the model's is {list(item.shape)}"
        )
    if got_dtype.is_floating_point != target.is_floating_point() and got_dtype not in FP8_DTYPES:
        raise CheckpointError(where, f"tensor '{item.name}' is {got_dtype}; the model's is {target.dtype}")
    if ckpt.layout == "fp8pass" and item.converted:
        scale = ckpt.scale_shape(item.name)
        if tuple(scale) != scale_shape(item.shape, config.granularity, item.axis):
            raise CheckpointError(
                where,
                f"tensor '{item.name}{FP8_SCALE_SUFFIX}' has shape {list(scale)}, not that of per-"
                f"{config.granularity} scales of {list(item.shape)}",
            )


def _piece_signature(piece: Piece, ckpt: Checkpoint) -> tuple[torch.dtype, tuple[int, ...]]:
    meta = replay(piece, lambda k: torch.empty(ckpt.tensors[k][1], dtype=ckpt.tensors[k][0], device="meta"))
    return meta.dtype, tuple(meta.shape)


def _refuse_unexpected(where: Path, model: torch.nn.Module, mapping: dict[str, Piece]) -> None:
    expected = {n for n, _ in model.named_parameters(remove_duplicate=False)} | {
        n for n, _ in model.named_buffers(remove_duplicate=False)
    }
    if unexpected := sorted(set(mapping) - expected):
        raise CheckpointError(
            where, f"holds {len(unexpected)} tensors the model lacks, first '{unexpected[0]}'"
        )


def _default_dtype(ckpt: Checkpoint) -> torch.dtype:
    counts: dict[torch.dtype, int] = {}
    for d, shape in ckpt.tensors.values():
        if d in (torch.bfloat16, torch.float16):
            counts[d] = counts.get(d, 0) + math.prod(shape)
    return max(counts, key=counts.get) if counts else torch.bfloat16


def refuse_meta_buffers(model: torch.nn.Module, items: list[Item]) -> None:
    """Buffers no checkpoint holds (computed by the constructor, not saved) must be real already."""
    loaded = {n for item in items for n in (item.name, *item.aliases)}
    meta = [n for n, b in model.named_buffers() if b.is_meta and n not in loaded]
    if meta:
        raise ValueError(
            f"load_fp8: the model's buffer '{meta[0]}' is on the meta device and no checkpoint holds it (the "
            "constructor computes it). Build the skeleton with accelerate.init_empty_weights() instead of "
            "torch.device('meta') (it keeps buffers real), or use fp8pass.load_model."
        )


def _source_reader(piece: Piece, ckpt: Checkpoint, config: FP8Config, converted: bool) -> Callable[[], Any]:
    """What an item reads: FP8 bytes with their scale where a converted weight's file bytes can be
    kept (an FP8 weight of the file stored as ``config`` stores it, read whole or split by rows
    when its scale is per row), else the tensor dequantized to float."""
    keys = sources(piece)
    key = next(iter(keys)) if len(keys) == 1 else None
    if converted and key is not None and ckpt.is_fp8(key) and ckpt.tensors[key][0] == config.dtype:

        def fp8_bytes() -> Any:
            scale = ckpt.scale(key)
            per_row = scale is not None and scale.dim() == 1
            if per_row and not (config.granularity == "channel" and dim0_only(piece)):
                return replay(piece, ckpt.read_dequantized)
            q = replay(piece, ckpt.read).contiguous()
            if per_row:
                scale = replay(piece, lambda k: ckpt.scale(k)).contiguous()
            elif scale is None:
                scale = torch.ones(())
            if config.granularity == "channel" and scale.dim() == 0:
                scale = scale.expand(q.shape[0]).contiguous()
            return q, scale.float()

        return fp8_bytes
    return lambda: replay(piece, ckpt.read_dequantized)


def realize(item: Item, config: FP8Config) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """``(tensor, None, why kept)`` for a tensor kept in its dtype, ``(fp8, scale, "")`` for a
    converted weight. A weight that is NaN or infinite stays in its dtype, whatever the plan."""
    raw = item.read()
    if isinstance(raw, tuple):
        q, scale = raw
        if not item.converted or not (_fp8_finite(q) and bool(torch.isfinite(scale).all())):
            value = dequantize_weight(q, scale, item.dtype, item.axis)
            return value, None, "" if not item.converted else NONFINITE
        return q, scale, ""
    if item.converted and not all_finite(raw):
        return raw.to(item.dtype), None, NONFINITE
    if not item.converted:
        return raw.to(item.dtype), None, ""
    return *quantize_weight(raw, config.dtype, config.granularity, item.axis), ""


def _fp8_finite(q: torch.Tensor) -> bool:
    """No NaN (and, in e5m2, no infinity) among FP8 bytes, read as bytes."""
    b = q.view(torch.uint8) & 0x7F
    return not bool(((b == 0x7F) if q.dtype == torch.float8_e4m3fn else (b >= 0x7C)).any())


def model_tensor(t: torch.Tensor, name: str, config: FP8Config, axis: int) -> Callable[[], Any]:
    """A model's converted weight: its FP8 copy if the backend made one, else the weight itself."""

    def read() -> Any:
        entry = store.lookup(t, config)
        if entry is not None:
            return _owned(entry.q), _owned(entry.scale)
        if is_released(t):
            raise ValueError(
                f"save_fp8: '{name}' was released by an earlier conversion that this config does not repeat "
                "(compare its dtype, granularity and skip list with the compiling backend's)."
            )
        return t.detach()

    return read


def model_value(t: torch.Tensor, name: str) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        if is_released(t):
            raise ValueError(
                f"save_fp8: '{name}' was released by an earlier conversion that this config does not repeat "
                "(compare its dtype, granularity and skip list with the compiling backend's)."
            )
        return t.detach()

    return read


def _owned(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor of its own (a fused group's copies are views of one buffer)."""
    t = t.cpu()
    own = t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()
    return t if own else t.clone()
