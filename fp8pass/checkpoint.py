"""FP8 checkpoints: from the files users have to FP8 weights on the device, one tensor at a time.

    >>> transformer, config = fp8pass.load_model(FluxTransformer2DModel, "flux-dev/transformer", "cuda")  # doctest: +SKIP
    >>> transformer = torch.compile(transformer, backend=FP8Backend(config))                             # doctest: +SKIP

:func:`load_fp8` fills a model built on the ``meta`` device from an fp8pass file (:func:`save_fp8`),
a diffusers model folder or safetensors file in bf16 / fp16 / fp32 (each tensor quantized on its
way to the device), or a community FP8 file (ComfyUI's scaled FP8 in both namings, plain FP8),
usually in the original model's key layout, mapped with diffusers' own conversion functions
(:mod:`fp8pass.keymap`). The model's bf16 weights are never all in memory: the peak is the FP8
weights plus the tensors kept in their dtype plus one tensor in flight. :func:`load_model` builds
the skeleton from the folder's ``config.json`` too; :func:`convert` (``python -m fp8pass convert``)
writes an fp8pass file from any of these, reading and writing one tensor at a time.

An fp8pass file is safetensors: each converted weight as ``NAME.fp8`` (float8) and
``NAME.fp8_scale`` (float32), every other parameter and buffer as ``NAME``, and the
:class:`FP8Config`, tied-weight aliases and converted weights' dtypes in the metadata.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import _compat, store
from .config import FP8Config
from .keymap import Piece, trace_mapping
from .plan import plan_modules
from .quantize import quantize_weight
from .safetensors_io import StreamWriter
from .sources import Checkpoint, open_checkpoint, pretrained_dtype
from .structure import split_inputs, structure_of

__all__ = ["convert", "load_fp8", "load_model", "save_fp8"]

_FORMAT = "fp8pass-1"


def save_fp8(
    model: torch.nn.Module, path: str | Path, config: FP8Config | None = None, example_inputs: Any = None
) -> None:
    """Write ``model``'s weights to ``path``, the layers ``config`` converts in FP8.

    ``model`` may be unconverted, or already converted by the fp8pass backend with the same dtype
    and granularity (then its FP8 copies are saved as they are; its originals may be gone). Which
    layers convert follows the model's structure (:mod:`fp8pass.structure`): the one traced when
    the model was compiled or given ``example_inputs``, else its module tree.
    """
    from safetensors.torch import save_file

    config = config or FP8Config()
    structure = structure_of(model, *split_inputs(example_inputs)) if example_inputs is not None else None
    plan = plan_modules(model, config, check_values=False, structure=structure)
    converted = {id(la.weight.tensor) for la in plan if la.converted}
    tensors: dict[str, torch.Tensor] = {}
    dtypes: dict[str, str] = {}  # a converted weight's own dtype: the one it loads back as
    aliases: dict[str, str] = {}
    seen: dict[int, str] = {}
    named = list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    )
    for name, t in named:
        if id(t) in seen:  # tied weights are stored once
            aliases[name] = seen[id(t)]
            continue
        seen[id(t)] = name
        if id(t) in converted:
            q, scale = _fp8_copy(t, config, name)
            # a fused group's copies are views of one buffer: safetensors stores each on its own
            q, scale = (t if _owns_storage(t) else t.clone() for t in (q.cpu(), scale.cpu()))
            tensors[f"{name}.fp8"], tensors[f"{name}.fp8_scale"] = q, scale
            dtypes[name] = str(t.dtype).removeprefix("torch.")
        elif _compat.is_released(t):
            raise ValueError(
                f"save_fp8: '{name}' was released by an earlier conversion that this config does not "
                "repeat (compare its dtype, granularity and skip list with the compiling backend's)."
            )
        else:
            tensors[name] = t.detach().cpu().contiguous()
    save_file(tensors, str(path), metadata=_metadata(config, aliases, dtypes))


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

    ``source``: an fp8pass file (its own config is used and returned; ``config``, if given, must
    store FP8 the same way), a diffusers model folder or a safetensors file in bf16 / fp16 / fp32,
    or a community FP8 file (see :mod:`fp8pass.sources`). For all but fp8pass files, ``config``
    (default ``FP8Config()``) decides the FP8 dtype and granularity; an FP8 weight of the file keeps
    its bytes where that stores it the same way, and is requantized otherwise. ``dtype`` is the
    model's dtype (default: the file's bf16 / fp16, else bfloat16). Which layers convert follows the
    model's structure: traced with ``example_inputs`` (on ``meta``) if given, else its module tree.

    Converted weights become parameters of their dtype and shape that hold no memory, with their
    FP8 copies registered for the backend. A file that does not hold the model's tensors (a key
    missing, a shape that differs, a layout diffusers cannot map, a truncated file) is refused
    before the model changes.
    """
    device = torch.device(device)
    ckpt = open_checkpoint(source)
    try:
        if ckpt.layout == "fp8pass":
            return _load_fp8pass_file(model, ckpt, device, config)
        config = config or FP8Config()
        items = _plan_items(model, ckpt, config, dtype, example_inputs)
        _refuse_meta_buffers(model, items)
        loaded: dict[str, torch.Tensor] = {}
        fp8: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for item in items:
            value, scale = _materialize(item, ckpt, config)
            if scale is None:
                loaded[item.name] = value.to(device)
            else:
                loaded[item.name] = _hollow_parameter(item.shape, item.dtype, device)
                fp8[item.name] = (value.to(device), scale.to(device))
            for alias in item.aliases:
                loaded[alias] = loaded[item.name]
            if item.converted:
                _compat.trim_heap()  # the original just freed: give its pages back, not to the heap
    finally:
        ckpt.close()
    for name, value in loaded.items():
        _assign(model, name, value)
    for name, (q, scale) in fp8.items():
        store.adopt(model, loaded[name], config, q, scale)
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
    model = _skeleton(model_class, _model_config(source, model_config))
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
    ``_class_name`` in diffusers. ``progress(done, total, name)`` is called per tensor."""
    cfg = _model_config(source, model_config)
    if model_class is None:
        import diffusers

        model_class = getattr(diffusers, cfg.get("_class_name", ""), None)
        if model_class is None:
            raise ValueError(f"convert: {source}'s config names no diffusers class; pass model_class=")
    model = _skeleton(model_class, cfg)
    config = config or FP8Config()
    ckpt = open_checkpoint(source)
    try:
        if ckpt.layout == "fp8pass":
            raise ValueError(f"convert: {source} is an fp8pass file already")
        items = _plan_items(model, ckpt, config, dtype, example_inputs)
        state = set(model.state_dict(keep_vars=True))
        computed = [(n, b) for n, b in model.named_buffers(remove_duplicate=False) if n not in state]
        entries, aliases, dtypes = [], {}, {}
        for item in items:
            if item.converted:
                rows = (item.shape[0],) if config.granularity == "channel" else ()
                entries += [
                    (f"{item.name}.fp8", config.dtype, item.shape),
                    (f"{item.name}.fp8_scale", torch.float32, rows),
                ]
                dtypes[item.name] = str(item.dtype).removeprefix("torch.")
            else:
                entries.append((item.name, item.dtype, item.shape))
            aliases.update(dict.fromkeys(item.aliases, item.name))
        entries += [(n, b.dtype, tuple(b.shape)) for n, b in computed]
        metadata = _metadata(config, aliases, dtypes)
        with StreamWriter(destination, entries, metadata) as out:
            for i, item in enumerate(items):
                value, scale = _materialize(item, ckpt, config)
                if scale is None:
                    out.write(item.name, value)
                else:
                    out.write(f"{item.name}.fp8", value)
                    out.write(f"{item.name}.fp8_scale", scale)
                if progress:
                    progress(i + 1, len(items), item.name)
            for name, b in computed:
                out.write(name, b)
    finally:
        ckpt.close()
    return config


def _metadata(config: FP8Config, aliases: dict[str, str], dtypes: dict[str, str]) -> dict[str, str]:
    return {
        "format": _FORMAT,
        "config": json.dumps(config.to_dict()),
        "aliases": json.dumps(aliases),
        "dtypes": json.dumps(dtypes),
    }


def _model_config(source: str | Path, model_config: dict | str | Path | None) -> dict:
    if isinstance(model_config, dict):
        return model_config
    path = Path(model_config) if model_config is not None else Path(source)
    path = path / "config.json" if path.is_dir() else path
    if path.suffix != ".json" or not path.is_file():
        raise ValueError(
            f"load_model: no config.json for {source}: pass model_config= (a dict, a config.json, or the "
            "diffusers model folder it is in); a single checkpoint file does not carry one"
        )
    return json.loads(path.read_text())


def _skeleton(model_class: type, model_config: dict) -> torch.nn.Module:
    """``model_class`` from its config with every parameter on the ``meta`` device and buffers
    real: what ``from_pretrained`` builds before loading (``accelerate.init_empty_weights``)."""
    from accelerate import init_empty_weights

    kwargs = {k: v for k, v in model_config.items() if not k.startswith("_")}
    with init_empty_weights(include_buffers=False):
        return (
            model_class.from_config(kwargs) if hasattr(model_class, "from_config") else model_class(**kwargs)
        )


@dataclass
class _Item:
    """One model tensor to make: where it comes from and what it becomes."""

    name: str
    piece: Piece
    shape: tuple[int, ...]
    dtype: torch.dtype  # the model's dtype for it (a converted weight's visible dtype)
    converted: bool
    aliases: list[str] = field(default_factory=list)


def _plan_items(
    model: torch.nn.Module,
    ckpt: Checkpoint,
    config: FP8Config,
    dtype: torch.dtype | None,
    example_inputs: Any,
) -> list[_Item]:
    """Every tensor of ``model``'s state dict, mapped to the checkpoint and checked, in file order."""
    where = f"load_fp8: {', '.join(str(p) for p in ckpt.paths[:2])}{' ...' if len(ckpt.paths) > 2 else ''}"
    try:
        mapping, unused = trace_mapping(model, ckpt.tensors)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    dtype = dtype or _default_dtype(ckpt)
    structure = structure_of(model, *split_inputs(example_inputs)) if example_inputs is not None else None
    converted = {
        la.weight.path
        for la in plan_modules(model, config, check_values=False, structure=structure)
        if la.converted
    }
    state = model.state_dict(keep_vars=True)
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
        want = tuple(t.shape)
        got = _piece_shape(mapping[name], ckpt)
        if got != want:
            raise ValueError(
                f"{where}: '{name}' has shape {list(got)} in the checkpoint, the model's is {list(want)}"
            )
        floating = t.is_floating_point()
        item_dtype = pretrained_dtype(model, name, dtype) if floating else t.dtype
        items.append(
            _Item(name, mapping[name], want, item_dtype, name in converted, [n for n in names if n != name])
        )
    if missing:
        raise ValueError(
            f"{where} holds no tensor for {len(missing)} of {type(model).__name__}'s (first '{missing[0]}'); "
            f"is it a checkpoint of this model?" + (f" Unused in the file: {unused[:3]}" if unused else "")
        )
    return items


def _piece_shape(piece: Piece, ckpt: Checkpoint) -> tuple[int, ...]:
    from .keymap import replay

    return tuple(replay(piece, lambda k: torch.empty(ckpt.tensors[k][1], device="meta")).shape)


def _default_dtype(ckpt: Checkpoint) -> torch.dtype:
    counts: dict[torch.dtype, int] = {}
    for d, shape in ckpt.tensors.values():
        if d in (torch.bfloat16, torch.float16):
            counts[d] = counts.get(d, 0) + math.prod(shape)
    return max(counts, key=counts.get) if counts else torch.bfloat16


def _materialize(
    item: _Item, ckpt: Checkpoint, config: FP8Config
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(tensor, None)`` for a tensor kept in its dtype, ``(fp8, scale)`` for a converted weight.
    An FP8 weight of the file whose piece reads one tensor keeps its bytes when ``config`` stores
    that dtype (and a per-row scale only when the piece moves whole rows); else it is requantized."""
    from .keymap import dim0_only, replay, sources

    keys = sources(item.piece)
    if not item.converted:
        return replay(item.piece, ckpt.read_dequantized).to(item.dtype), None
    (key,) = keys if len(keys) == 1 else (None,)
    if key is not None and ckpt.is_fp8(key) and ckpt.tensors[key][0] == config.dtype:
        scale = ckpt.scale(key)
        per_row = scale is not None and scale.dim() == 1
        if not per_row or (config.granularity == "channel" and dim0_only(item.piece)):
            q = replay(item.piece, ckpt.read).contiguous()
            if per_row:
                scale = replay(item.piece, lambda k: ckpt.scale(k)).contiguous()
            elif scale is None:
                scale = torch.ones(())
            if config.granularity == "channel" and scale.dim() == 0:
                scale = scale.expand(q.shape[0]).contiguous()
            return q, scale.float()
    w = replay(item.piece, ckpt.read_dequantized)
    return quantize_weight(w, config.dtype, config.granularity)


def _refuse_meta_buffers(model: torch.nn.Module, items: list[_Item]) -> None:
    """Buffers no checkpoint holds (computed by the constructor, not saved) must be real already."""
    loaded = {n for item in items for n in (item.name, *item.aliases)}
    meta = [n for n, b in model.named_buffers() if b.is_meta and n not in loaded]
    if meta:
        raise ValueError(
            f"load_fp8: the model's buffer '{meta[0]}' is on the meta device and no checkpoint holds it (the "
            "constructor computes it). Build the skeleton with accelerate.init_empty_weights() instead of "
            "torch.device('meta') (it keeps buffers real), or use fp8pass.load_model."
        )


def _load_fp8pass_file(
    model: torch.nn.Module, ckpt: Checkpoint, device: torch.device, config: FP8Config | None
) -> FP8Config:
    path = ckpt.paths[0]
    metadata = ckpt.metadata
    stored_config = FP8Config.from_dict(json.loads(metadata["config"]))
    if config is not None and config.storage_key != stored_config.storage_key:
        raise ValueError(
            f"load_fp8: {path} stores FP8 weights as {stored_config.dtype}, per {stored_config.granularity}; "
            f"config asks for {config.dtype}, per {config.granularity}. Leave config out (the file's is used) or "
            "convert the file again with python -m fp8pass convert."
        )
    aliases = json.loads(metadata["aliases"])
    keys = set(ckpt.tensors)
    dtypes = _saved_dtypes(metadata, ckpt, keys)
    expected = {n for n, _ in model.named_parameters(remove_duplicate=False)} | {
        n for n, _ in model.named_buffers(remove_duplicate=False)
    }
    stored = {k.removesuffix(".fp8") for k in keys if not k.endswith(".fp8_scale")} | set(aliases)
    if missing := sorted(expected - stored):
        raise ValueError(
            f"load_fp8: {path} has no tensor for {len(missing)} of the model's, first '{missing[0]}'"
        )
    if unexpected := sorted(stored - expected):
        raise ValueError(
            f"load_fp8: {path} holds {len(unexpected)} tensors the model lacks, first '{unexpected[0]}'"
        )
    loaded: dict[str, torch.Tensor] = {}
    fp8: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in sorted(stored - set(aliases)):
        if f"{name}.fp8" in keys:
            loaded[name] = _hollow_parameter(_tensor(model, name).shape, dtypes[name], device)
            fp8[name] = (ckpt.read(f"{name}.fp8").to(device), ckpt.read(f"{name}.fp8_scale").to(device))
        else:
            loaded[name] = ckpt.read(name).to(device)
    for name, alias_of in aliases.items():
        loaded[name] = loaded[alias_of]
    for name, value in loaded.items():
        _assign(model, name, value)
    for name, (q, scale) in fp8.items():
        store.adopt(model, loaded[name], stored_config, q, scale)
    return stored_config


def _fp8_copy(t: torch.Tensor, config: FP8Config, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    entry = store.lookup(t, config)
    if entry is not None:
        return entry.q, entry.scale
    if _compat.is_released(t):
        raise ValueError(f"save_fp8: '{name}' was converted with another dtype/granularity than {config}")
    return quantize_weight(t, config.dtype, config.granularity)


def _saved_dtypes(metadata: dict, ckpt: Checkpoint, keys: set[str]) -> dict[str, torch.dtype]:
    """Converted weight -> its dtype when saved. Files written before the ``dtypes`` entry existed
    take the dtype their unconverted floating tensors share."""
    if "dtypes" in metadata:
        return {name: getattr(torch, d) for name, d in json.loads(metadata["dtypes"]).items()}
    kept = {ckpt.tensors[k][0] for k in keys if not k.endswith((".fp8", ".fp8_scale"))}
    floats = {d for d in kept if d in (torch.bfloat16, torch.float16, torch.float32)}
    if len(floats) != 1:
        raise ValueError(
            "load_fp8: this checkpoint does not record its weights' dtype and its other tensors do "
            f"not agree on one ({sorted(map(str, floats))}); save it again with this version of fp8pass.save_fp8"
        )
    dtype = floats.pop()
    return defaultdict(lambda: dtype)


def _hollow_parameter(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.nn.Parameter:
    """A parameter of this shape, dtype and device that holds no memory (its FP8 copy is adopted
    by the store); one such tensor is allocated in full, transiently, as it is made."""
    param = torch.nn.Parameter(torch.empty(shape, dtype=dtype, device=device), requires_grad=False)
    _compat.release_storage(param)
    return param


def _owns_storage(t: torch.Tensor) -> bool:
    return t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()


def _tensor(model: torch.nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(module_name), attr)


def _assign(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Put ``value`` where ``name`` is: a parameter stays a parameter, a buffer keeps its persistence."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, attr)
    if isinstance(old, torch.nn.Parameter) and not isinstance(value, torch.nn.Parameter):
        value = torch.nn.Parameter(value, requires_grad=old.requires_grad)
    setattr(module, attr, value)
