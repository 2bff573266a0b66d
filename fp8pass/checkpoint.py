"""FP8 checkpoints: from the files users have to FP8 weights on the device, one tensor at a time.

    >>> transformer, config = fp8pass.load_model(FluxTransformer2DModel, "flux-dev/transformer", "cuda")  # doctest: +SKIP
    >>> transformer = torch.compile(transformer, backend=FP8Backend(config))                             # doctest: +SKIP

:func:`load_fp8` fills a model built on the ``meta`` device from an fp8pass file
(:mod:`fp8pass.fp8file`), a diffusers model folder or safetensors file in bf16 / fp16 / fp32 (each
tensor quantized on its way to the device), or a community FP8 file (ComfyUI's scaled FP8 in both
namings, plain FP8), usually in the original model's key layout, mapped with diffusers' own
conversion functions (:mod:`fp8pass.keymap`). The model's bf16 weights are never all in memory: the
peak is the FP8 weights plus the tensors kept in their dtype plus one tensor in flight.
:func:`load_model` builds the skeleton from the folder's ``config.json`` too; :func:`convert`
(``python -m fp8pass convert``) writes an fp8pass file from any of these, and :func:`save_fp8` from
a model, both through the one streaming, atomic writer (:func:`fp8pass.fp8file.write`).

Every path follows one pipeline (:mod:`fp8pass.items`): plan the items (each tensor of the model:
where it comes from, whether it converts), check every item's shape and dtype against the model,
then read them one at a time, and only then change the model. Files are untrusted: headers,
indexes, metadata and configs are checked before use; every refusal is a
:class:`~fp8pass.CheckpointError` (a ``ValueError``) naming the file, raised before anything changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import fp8file, store
from ._compat.heap import trim_heap
from .config import FP8Config
from .items import Item, model_tensor, model_value, plan_items, realize, refuse_meta_buffers
from .kinds import KINDS
from .plan import plan_modules
from .safetensors_io import CheckpointError
from .skeleton import (
    assign,
    diffusers_class,
    hollow_parameter,
    model_config_path,
    read_model_config,
    skeleton,
)
from .sources import checkpoint_inputs, open_checkpoint
from .structure import split_inputs, structure_of

__all__ = ["convert", "load_fp8", "load_model", "model_config_path", "save_fp8"]


def save_fp8(
    model: torch.nn.Module, path: str | Path, config: FP8Config | None = None, example_inputs: Any = None
) -> None:
    """Write ``model``'s weights to ``path`` as an fp8pass file, the layers ``config`` converts in FP8.

    ``model`` may be unconverted, or already converted by the fp8pass backend with the same dtype
    and granularity (then its FP8 copies are saved as they are; its originals may be gone). Which
    layers convert follows the model's structure (:mod:`fp8pass.structure`): the one traced when
    the model was compiled or given ``example_inputs``, else its module tree. The file appears
    whole or not at all.
    """
    config = config or FP8Config()
    structure = structure_of(model, *split_inputs(example_inputs)) if example_inputs is not None else None
    layers = plan_modules(model, config, structure=structure, pinned=store.pinned)
    plan = {la.weight.path: la for la in layers}
    items, aliases = [], {}
    seen: dict[int, Item] = {}
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, t in named:
        if id(t) in seen:  # tied weights are stored once
            aliases[name] = seen[id(t)].name
            continue
        layer = plan.get(name)
        converted = layer is not None and layer.converted
        axis = KINDS[layer.kind].scale_axis if layer is not None else 0
        read = model_tensor(t, name, config, axis) if converted else model_value(t, name)
        kept = layer.reason if layer is not None and not converted else ""
        seen[id(t)] = Item(name, tuple(t.shape), t.dtype, converted, read, axis, kept=kept)
        items.append(seen[id(t)])
    fp8file.write(path, items, config, aliases, realize)


def load_fp8(
    model: torch.nn.Module,
    source: str | Path,
    device: str | torch.device = "cpu",
    config: FP8Config | None = None,
    *,
    dtype: torch.dtype | None = None,
    example_inputs: Any = None,
) -> FP8Config:
    """Fill ``model`` (built on the ``meta`` device) from ``source`` on ``device``; returns the
    :class:`FP8Config` to compile it with.

    ``source``: an fp8pass file (its own storage config is used and returned; ``config``, if
    given, must store FP8 the same way), a diffusers model folder or a safetensors file in bf16 /
    fp16 / fp32, or a community FP8 file (see :mod:`fp8pass.sources`). For all but fp8pass files,
    ``config`` (default ``FP8Config()``) decides which layers convert and how; an FP8 weight of the
    file keeps its bytes where that stores it the same way, and is requantized otherwise. ``dtype``
    is the model's dtype (default: the file's bf16 / fp16, else bfloat16). Which layers convert
    follows the model's structure: traced with ``example_inputs`` (on ``meta``) if given, else its
    module tree. A weight that is NaN or infinite stays in its dtype, as on every other path.

    Converted weights become parameters of their dtype and shape that hold no memory, with their
    FP8 copies registered for the backend. A file that does not hold the model's tensors (a key
    missing, a shape or dtype that differs, a layout diffusers cannot map, a malformed or
    truncated file) raises :class:`~fp8pass.CheckpointError` before the model changes.
    """
    device = torch.device(device)
    ckpt = open_checkpoint(source)
    try:
        config, items = plan_items(model, ckpt, config, dtype, example_inputs)
        refuse_meta_buffers(model, items)
        loaded: dict[str, torch.Tensor] = {}
        fp8: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        kept: dict[str, str] = {}
        for item in items:
            value, scale, why = realize(item, config)
            if scale is None:
                loaded[item.name] = value.to(device)
                if why:
                    kept[item.name] = why
            else:
                loaded[item.name] = hollow_parameter(item.shape, item.dtype, device)
                fp8[item.name] = (value.to(device), scale.to(device))
            for alias in item.aliases:
                loaded[alias] = loaded[item.name]
            if item.converted:
                trim_heap()  # the original just freed: give its pages back, not to the heap
    finally:
        ckpt.close()
    for name, value in loaded.items():
        assign(model, name, value)
    for name, (q, scale) in fp8.items():
        store.adopt(model, loaded[name], config, q, scale)
    for item in items:  # what was decided here is what every later plan of the model does
        if item.layer:
            store.pin(loaded[item.name], kept.get(item.name, "" if item.converted else item.kept))
    return config


def load_model(
    model_class: type,
    source: str | Path,
    device: str | torch.device = "cpu",
    config: FP8Config | None = None,
    *,
    dtype: torch.dtype | None = None,
    model_config: dict | str | Path | None = None,
    example_inputs: Any = None,
) -> tuple[torch.nn.Module, FP8Config]:
    """``(model, fp8_config)``: ``model_class`` built from ``model_config`` (default: ``source``'s
    ``config.json``) without memory for its weights, filled by :func:`load_fp8`, in eval mode;
    compile it with ``torch.compile(model, backend=FP8Backend(fp8_config))``.

    Example:
        >>> transformer, cfg = fp8pass.load_model(FluxTransformer2DModel, "FLUX.1-dev/transformer", "cuda")  # doctest: +SKIP
    """
    model = skeleton(model_class, read_model_config(source, model_config), source)
    fp8_config = load_fp8(model, source, device, config, dtype=dtype, example_inputs=example_inputs)
    return model.eval().requires_grad_(False), fp8_config


def convert(
    source: str | Path,
    destination: str | Path,
    config: FP8Config | None = None,
    *,
    model_class: type | None = None,
    model_config: dict | str | Path | None = None,
    dtype: torch.dtype | None = None,
    example_inputs: Any = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> FP8Config:
    """Write an fp8pass file at ``destination`` from ``source`` (anything :func:`load_fp8` reads
    but an fp8pass file), reading and writing one tensor at a time. The model is built from
    ``model_config`` (default: ``source``'s ``config.json``) without memory for its weights, only to
    map keys and decide which layers convert; ``model_class`` defaults to the config's
    ``_class_name`` in diffusers. ``progress(done, total, name)`` is called per tensor.

    ``destination`` appears whole or not at all (an interrupted convert leaves it as it was), and
    may not be any file of ``source``: that is refused before anything is read."""
    _refuse_overwriting_inputs(source, destination, model_config)
    cfg = read_model_config(source, model_config)
    model_class = model_class or diffusers_class(source, cfg)
    model = skeleton(model_class, cfg, source)
    ckpt = open_checkpoint(source)
    try:
        if ckpt.layout == "fp8pass":
            raise CheckpointError(ckpt.paths[0], "is an fp8pass file already: load it with fp8pass.load_fp8")
        config, items = plan_items(model, ckpt, config or FP8Config(), dtype, example_inputs)
        state = set(model.state_dict(keep_vars=True))
        for name, b in model.named_buffers(remove_duplicate=False):  # computed, not in any checkpoint
            if name not in state:
                items.append(Item(name, tuple(b.shape), b.dtype, False, model_value(b, name)))
        aliases = {alias: item.name for item in items for alias in item.aliases}
        fp8file.write(destination, items, config, aliases, realize, progress)
    finally:
        ckpt.close()
    return config


def _refuse_overwriting_inputs(source: str | Path, destination: str | Path, model_config: Any) -> list[Path]:
    """Every file ``source`` reads; refuse a ``destination`` that is one of them."""
    inputs = checkpoint_inputs(source)
    if (
        isinstance(model_config, (str, Path))
        and (path := model_config_path(source, model_config)) is not None
    ):
        inputs.append(path)
    destination = Path(destination)
    for path in inputs:
        if _same_file(path, destination):
            raise CheckpointError(
                destination,
                f"is a file this convert reads ({path}): write the FP8 file to a new path; nothing "
                "was read or changed",
            )
    return inputs


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except FileNotFoundError:
        return os.path.realpath(a) == os.path.realpath(b)
