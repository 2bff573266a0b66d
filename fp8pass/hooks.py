"""Eager FP8 weight storage with forward hooks: the reference fp8pass is measured against.

It converts exactly the layers the compiled path converts (the same rules,
:func:`fp8pass.plan.plan_modules`) into exactly the same FP8 bytes and scales
(:func:`fp8pass.quantize.quantize_weight`), so hook vs compiled compares the mechanism alone.
It also fixes what the hook versions in the field got wrong:

* the module keeps its visible dtype: each parameter stays the same object, of its original
  dtype and shape; only its storage comes and goes;
* no original-precision copy stays resident between forwards: a pre-hook writes the upcast
  weight into the parameter's storage and a post-hook frees it, also when forward raises;
* applying twice is harmless (the second call returns the first handle), and
  :meth:`FP8Hooks.remove` gives every parameter its storage back, holding the dequantized weight.

    >>> hooks = apply_fp8_hooks(unet, FP8Config(granularity="channel"))   # doctest: +SKIP
    >>> out = unet(latents, t, text)                                     # doctest: +SKIP
    >>> hooks.remove()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import store
from ._compat.storage import is_released, release_storage, restore_storage
from .config import FP8Config
from .kinds import KINDS
from .plan import plan_modules
from .quantize import dequantize_weight, quantize_weight
from .report import LayerReport, format_report, layer_rows
from .structure import split_inputs, structure_of

__all__ = ["FP8Hooks", "apply_fp8_hooks"]

_APPLIED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # root module -> FP8Hooks


@dataclass
class _Stored:
    param: torch.nn.Parameter
    q: torch.Tensor
    scale: torch.Tensor
    axis: int = 0  # the output-channel axis of per-channel scales
    users: int = 0  # forwards in flight that need the upcast weight (tied weights nest)


class FP8Hooks:
    """Handle returned by :func:`apply_fp8_hooks`."""

    def __init__(self, model: torch.nn.Module, config: FP8Config) -> None:
        # weakly: the registry maps the model to this handle, which must not keep the model alive
        self._model = weakref.ref(model)
        self.config = config
        self._stored: dict[int, _Stored] = {}
        self._handles: list[Any] = []
        self._rows: list[LayerReport] = []
        self._lock = threading.Lock()

    @property
    def model(self) -> torch.nn.Module | None:
        """The model the hooks are on (``None`` once it is gone)."""
        return self._model()

    def report(self) -> list[LayerReport]:
        """The layers seen, as :meth:`fp8pass.FP8Backend.report` gives them."""
        return list(self._rows)

    def report_table(self, tablefmt: str = "github") -> str:
        return format_report(self._rows, tablefmt)

    def stored_tensors(self) -> list[torch.Tensor]:
        """The FP8 weights and scales the hooks hold (what the memory of this baseline counts)."""
        return [t for s in self._stored.values() for t in (s.q, s.scale)]

    def remove(self) -> None:
        """Take the hooks off and give each converted parameter its (dequantized) data back."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for stored in self._stored.values():
            if is_released(stored.param):
                _materialize(stored)
        self._stored.clear()
        model = self.model
        if model is not None:
            _APPLIED.pop(model, None)

    # -- hooks ------------------------------------------------------------------------------

    def _pre(self, key: int, module: torch.nn.Module, args: Any) -> None:
        with self._lock:
            stored = self._stored[key]
            if stored.users == 0:
                _materialize(stored)
            stored.users += 1

    def _post(self, key: int, module: torch.nn.Module, args: Any, output: Any) -> None:
        with self._lock:
            stored = self._stored[key]
            stored.users -= 1
            if stored.users == 0:
                release_storage(stored.param)


def apply_fp8_hooks(
    model: torch.nn.Module, config: FP8Config | None = None, example_inputs: Any = None
) -> FP8Hooks:
    """Store ``model``'s linear and conv weights in FP8 and upcast them around each forward.

    ``config.compute`` is ignored: hooks always compute in the original dtype. ``example_inputs``
    (keyword arguments as a dict, or positional ones) let fp8pass trace the model's structure, so
    that the hooks keep the same boundary layers as the compiled path (see :mod:`fp8pass.structure`).
    """
    if model in _APPLIED:
        return _APPLIED[model]
    config = config or FP8Config()
    hooks = FP8Hooks(model, config)
    structure = structure_of(model, *split_inputs(example_inputs)) if example_inputs is not None else None
    layers = plan_modules(model, config, structure=structure, pinned=store.pinned)
    for layer in layers:
        if not layer.converted:
            continue
        layer.compute = "cast"  # hooks always compute in the original dtype
        w, key = layer.weight.tensor, id(layer.weight.tensor)
        if key not in hooks._stored:
            axis = KINDS[layer.kind].scale_axis
            hooks._stored[key] = _Stored(w, *quantize_weight(w, config.dtype, config.granularity, axis), axis)
        hooks._handles.append(layer.module.register_forward_pre_hook(lambda m, a, k=key: hooks._pre(k, m, a)))
        hooks._handles.append(
            layer.module.register_forward_hook(
                lambda m, a, o, k=key: hooks._post(k, m, a, o), always_call=True
            )
        )

    def copy_of(layer):
        stored = hooks._stored[id(layer.weight.tensor)]
        return stored.q, stored.scale, True

    hooks._rows = layer_rows(layers, copy_of)
    for stored in hooks._stored.values():
        if not release_storage(stored.param):
            hooks.remove()
            raise ValueError(
                "apply_fp8_hooks: a weight shares its storage with other tensors, so its memory "
                "cannot be released; clone the model's parameters first."
            )
    _APPLIED[model] = hooks
    return hooks


def _materialize(stored: _Stored) -> None:
    restore_storage(stored.param, dequantize_weight(stored.q, stored.scale, stored.param.dtype, stored.axis))
