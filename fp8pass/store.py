"""The FP8 copies of weights and their lifetime: made once, shared, released, restored.

One process-wide store maps each parameter to its FP8 copies, one per (dtype, granularity), so
that every backend, graph and recompile uses the same copy and a parameter's original storage is
freed once. This module is the only owner of that state; the backend, the checkpoints and the
tests use the functions below.

- :func:`get_or_quantize`, :func:`lookup`, :func:`entries`, :func:`fused`: the copies.
- :func:`first_sight` (a compiled module's model, seen for the first time), :func:`release`
  (free one original, guard its eager uses), :func:`adopt` (a copy read from a checkpoint).
- :func:`restore` (public as ``fp8pass.restore``): the originals back, guards lifted.

Releasing frees the parameter's storage but keeps the Parameter object, its dtype, shape and
device, so ``model.dtype`` and Dynamo's guards keep working; :mod:`fp8pass.guards` stops eager
code from reading the freed memory.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import guards, released
from ._compat.storage import release_storage, restore_storage
from .config import FP8Config
from .metrics import sqnr
from .quantize import dequantize_weight, flush_note, quantize_weight

log = logging.getLogger("fp8pass")

__all__ = [
    "FP8Weight",
    "adopt",
    "dequantized",
    "entries",
    "feeding_fp8_inputs",
    "first_sight",
    "forget",
    "fused",
    "fused_elsewhere",
    "get_or_quantize",
    "is_released",
    "lookup",
    "model_of",
    "pin",
    "pinned",
    "release",
    "restore",
    "restore_unconverted",
    "write_released",
]


@dataclass
class FP8Weight:
    """A parameter's FP8 copy: ``q`` (its shape, FP8 dtype) and ``scale`` (float32, per output
    channel or 0-d)."""

    q: torch.Tensor
    scale: torch.Tensor
    released: bool = False  # the parameter's original storage is freed
    original: torch.Tensor | None = None  # a CPU copy of it, with FP8Config(release_weights="cpu")
    fused_in: tuple[int, ...] | None = None  # q and scale are views of this group's fused buffer
    axis: int = 0  # the output-channel axis of per-channel scales (the layer kind's scale_axis)
    notes: list[str] = field(default_factory=list)  # what happened to it, for its report row


_entries: WeakIdKeyDictionary = WeakIdKeyDictionary()  # param -> {storage key: FP8Weight}
_fused: WeakIdKeyDictionary = WeakIdKeyDictionary()  # first param of a group -> {group: (q, scale)}
_roots: WeakIdKeyDictionary = WeakIdKeyDictionary()  # param -> weakref to its model
_pins: WeakIdKeyDictionary = WeakIdKeyDictionary()  # param -> its checkpoint's decision ("": converted)
_indexed: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
_lock = threading.Lock()
_version = 0  # bumped when entries are re-pointed, so per-call caches look them up again


def lookup(param: torch.Tensor, config: FP8Config) -> FP8Weight | None:
    return _entries.get(param, {}).get(config.storage_key)


def entries(param: torch.Tensor) -> list[FP8Weight]:
    """Every FP8 copy of ``param`` (one per dtype and granularity it was compiled with)."""
    return list(_entries.get(param, {}).values())


def is_released(param: torch.Tensor) -> bool:
    return any(w.released for w in _entries.get(param, {}).values())


def get_or_quantize(
    param: torch.Tensor, config: FP8Config, name: str, axis: int = 0
) -> tuple[FP8Weight, bool]:
    """``param``'s FP8 copy for ``config`` (per-channel scales along ``axis``, the layer kind's
    ``scale_axis``), made now if needed; and whether it was made now."""
    with _lock:
        found = lookup(param, config)
        if found is not None:
            return found, False
        if is_released(param):
            raise RuntimeError(
                f"fp8pass: '{name}' was already converted to FP8 with another dtype/granularity and "
                "its original weights were released, so it cannot be quantized again. Compile every "
                "use of this model with one FP8Config, or use FP8Config(release_weights=False)."
            )
        # Outside inference mode, so that the copies stay usable by graphs compiled later.
        with torch.inference_mode(False), torch.no_grad():
            q, scale = quantize_weight(param, config.dtype, config.granularity, axis)
            note = flush_note(param, q)
        entry = FP8Weight(q, scale, axis=axis, notes=[note] if note else [])
        if note:
            log.warning("fp8pass: '%s': %s", name, note)
        _entries.setdefault(param, {})[config.storage_key] = entry
        return entry, True


def fused(params: tuple[torch.Tensor, ...], config: FP8Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The FP8 weights and scales of ``params`` (quantized already) concatenated along the output
    dimension, made once; each parameter's own copy becomes a view into it, so the memory is the
    same as before."""
    global _version
    key = tuple(id(p) for p in params)
    with _lock:
        found = _fused.get(params[0], {}).get(key)
        if found is not None:
            return found
        parts = [lookup(p, config) for p in params]
        q = torch.cat([e.q for e in parts])
        scale = torch.cat([e.scale for e in parts])
        start = 0
        for e in parts:
            n = e.q.shape[0]
            e.q, e.scale, e.fused_in = q[start : start + n], scale[start : start + n], key
            start += n
        _fused.setdefault(params[0], {})[key] = (q, scale)
        _version += 1
        return q, scale


def fused_elsewhere(params: tuple[torch.Tensor, ...], config: FP8Config) -> bool:
    """Whether any of ``params`` is already part of another fused group."""
    key = tuple(id(p) for p in params)
    return any((e := lookup(p, config)) is not None and e.fused_in not in (None, key) for p in params)


def forget(param: torch.Tensor) -> None:
    global _version
    with _lock:
        _entries.pop(param, None)
        _fused.pop(param, None)
        _version += 1


def restore_unconverted(param: torch.Tensor) -> None:
    """Give a released parameter its data back (dequantized from FP8), for a graph that needs it
    unconverted."""
    for entry in _entries.get(param, {}).values():
        if entry.released:
            restore_storage(param, dequantize_weight(entry.q, entry.scale, param.dtype, entry.axis))
            entry.released = False
            return


# -- models, release ---------------------------------------------------------------------------------


def dequantized(param: torch.Tensor) -> torch.Tensor:
    """A released ``param``'s weight, dequantized from its FP8 copy into its dtype (a new tensor):
    what reads of a released parameter compute on (:mod:`fp8pass.released`)."""
    entry = next(e for e in _entries.get(param, {}).values() if e.released)
    return dequantize_weight(entry.q, entry.scale, param.dtype, entry.axis)


def write_released(param: torch.Tensor, value: torch.Tensor) -> None:
    """Write ``value`` into the released ``param``: requantized into each of its FP8 copies in
    place (views of a fused buffer included), so that compiled graphs use it on their next call;
    a kept CPU original (``release_weights="cpu"``) follows. Each copy's report notes the SQNR of
    the requantized weight against ``value``."""
    global _version
    with _lock, torch.inference_mode(False), torch.no_grad():
        for (dtype, granularity), entry in _entries.get(param, {}).items():
            q, scale = quantize_weight(value.to(entry.q.device), dtype, granularity, entry.axis)
            db = sqnr(value, dequantize_weight(q, scale, torch.float32, entry.axis))
            entry.q.copy_(q)
            entry.scale.copy_(scale)
            if entry.original is not None:
                entry.original = value.to("cpu", copy=True)
            note = f"weight written after conversion (load_state_dict, LoRA fusing): requantized, weight SQNR {db:.1f} dB"
            entry.notes = [n for n in entry.notes if not n.startswith("weight written after")] + [note]
            log.info("fp8pass: '%s': %s", released.name_of(param), note)
        _version += 1


released.write_back = write_released
released.dequantized = dequantized


def first_sight(model: torch.nn.Module) -> None:
    """Before fp8pass converts anything of ``model`` (the model that owns a compiled graph): refuse
    it if it carries offloading hooks (checked at every compile: hooks added after conversion
    would move weights through their FP8 copies on every call). Nothing of the model changes
    here: its parameters get the watched class in :func:`release`, after the inner compiler has
    returned, because Dynamo may restart its analysis from inside the backend
    (``TensorifyScalarRestartAnalysis`` under ``dynamic=True``) and must then trace the same
    parameters it traced the first time."""
    guards.refuse_offloading(model)


def model_of(param: torch.Tensor) -> torch.nn.Module | None:
    """The model ``param`` was indexed under, if fp8pass has seen it."""
    ref = _roots.get(param)
    return ref() if ref is not None else None


def release(param: torch.Tensor, entry: FP8Weight, model: torch.nn.Module, keep_copy: bool) -> str:
    """Free ``param``'s storage (keeping a CPU copy if ``keep_copy``) and guard the modules of
    ``model`` (indexed by :func:`first_sight`) that could read it. A parameter the model gained
    since it was indexed (a module replaced by a LoRA loader, fused projections) is watched now.
    Returns a note when it stays, else ``""``."""
    _index_model(model)
    if param not in _roots:
        _index_model(model, again=True)
    original = param.detach().to("cpu", copy=True) if keep_copy else None
    if not release_storage(param):
        return "original weight kept: it shares storage with other tensors"
    entry.released, entry.original = True, original
    guards.watch(model, param)
    guards.guard_eager_use(model, param)
    return ""


def adopt(
    model: torch.nn.Module, param: torch.Tensor, config: FP8Config, q: torch.Tensor, scale: torch.Tensor
) -> None:
    """Register ``q`` / ``scale`` (read from a checkpoint) as the FP8 copy of ``param``, a parameter
    of ``model`` whose storage is released (a hollow parameter), and guard its eager uses."""
    with _lock:
        _entries.setdefault(param, {})[config.storage_key] = FP8Weight(q, scale, released=True)
    _index_model(model)
    guards.watch(model, param)
    guards.guard_eager_use(model, param)


def pin(param: torch.Tensor, reason: str) -> None:
    """Record what the checkpoint ``param`` was loaded from decided for its layer: ``""`` converted,
    else why it was kept in its dtype. Every later plan of the model follows it (:func:`pinned`):
    the checkpoint's plan is the plan (an fp8pass file's is its data, and no rule is run again)."""
    _pins[param] = reason


def pinned(param: torch.Tensor) -> str | None:
    """The decision :func:`pin` recorded for ``param``'s layer (``""``: converts), or None."""
    return _pins.get(param)


def _index_model(model: torch.nn.Module, again: bool = False) -> None:
    """Remember every parameter's model (for instances met later); once, or ``again`` for
    parameters it gained since."""
    if model in _indexed and not again:
        return
    _indexed.add(model)
    ref = weakref.ref(model)
    for p in model.parameters():
        if p not in _roots:
            _roots[p] = ref


def restore(model: torch.nn.Module) -> int:
    """Give ``model`` back its original weights and eager usability after fp8pass converted it.

    Works when the originals were kept (``FP8Config(release_weights="cpu")`` or ``False``);
    otherwise raises ``RuntimeError`` before changing anything. Compiled graphs of the model stay
    valid: a later compiled call converts the weights again. Returns how many weights came back.

    Example:
        >>> be = FP8Backend(FP8Config(release_weights="cpu"))    # doctest: +SKIP
        >>> out = torch.compile(unet, backend=be)(x)             # doctest: +SKIP
        >>> fp8pass.restore(unet)                                # unet(x) runs eagerly again
    """
    params = {id(p): p for p in model.parameters()}.values()
    lost = [
        n for n, p in model.named_parameters() if any(e.released and e.original is None for e in entries(p))
    ]
    if lost:
        raise RuntimeError(
            f"fp8pass.restore: the original weights of {len(lost)} parameters (first: '{lost[0]}') were "
            "freed when fp8pass converted them. Reload them (from_pretrained / load_state_dict), or "
            "compile with FP8Config(release_weights='cpu') to keep a CPU copy that restore() can use."
        )
    restored = 0
    for p in params:
        for entry in entries(p):
            if entry.released:
                restore_storage(p, entry.original.to(p.device))
                restored += 1
        forget(p)
    guards.unguard(model)
    guards.unwatch(model)
    return restored


def feeding_fp8_inputs(compiled: Any, feeds: list[tuple[int, ...]], fp8_inputs: Any) -> Any:
    """Call ``compiled`` with the FP8 copies of the parameters at the ``feeds`` positions appended,
    looked up afresh only when those parameters are not the previous call's (identity check) or
    the store re-pointed its entries since."""
    positions = [i for feed in feeds for i in feed]
    # Weak references to the previous call's parameters: Dynamo keeps this function for as long as
    # the model's class is compiled, and strong ones would keep a deleted model's parameters and
    # their FP8 copies (the whole model's weights) alive. When one dies, the FP8 copies go too.
    last: dict[str, Any] = {"params": [], "extra": [], "version": -1}

    def forget(_: Any) -> None:
        last["params"], last["extra"], last["version"] = [], [], -1

    def extra_for(args: Any) -> list[torch.Tensor]:
        params = [args[i] for i in positions]
        if (
            last["version"] != _version
            or len(params) != len(last["params"])
            or any(a is not b() for a, b in zip(params, last["params"], strict=True))
        ):
            last["extra"] = fp8_inputs([tuple(args[i] for i in feed) for feed in feeds])
            last["params"], last["version"] = [weakref.ref(p, forget) for p in params], _version
        return last["extra"]

    def run(*args: Any) -> Any:
        return compiled(*args, *extra_for(args))

    return run
