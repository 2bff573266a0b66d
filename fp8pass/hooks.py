"""Eager FP8 weight storage with forward hooks: the reference fp8pass is measured against.

It converts exactly the layers the compiled path converts (the same rule,
:func:`fp8pass.passes.weight_reason`) into exactly the same FP8 bytes and scales
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
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import _compat
from .config import FP8Config
from .passes import plan_modules
from .quantize import dequantize_weight, quantize_weight
from .report import LayerReport, format_report

__all__ = ["FP8Hooks", "apply_fp8_hooks"]

_APPLIED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # root module -> FP8Hooks


@dataclass
class _Stored:
    param: torch.nn.Parameter
    q: torch.Tensor
    scale: torch.Tensor
    users: int = 0  # forwards in flight that need the upcast weight (tied weights nest)


class FP8Hooks:
    """Handle returned by :func:`apply_fp8_hooks`."""

    def __init__(self, model: torch.nn.Module, config: FP8Config) -> None:
        self.model = model
        self.config = config
        self._stored: dict[int, _Stored] = {}
        self._handles: list[Any] = []
        self._rows: list[LayerReport] = []
        self._lock = threading.Lock()

    def report(self) -> list[LayerReport]:
        """The layers seen, as :meth:`fp8pass.FP8Backend.report` gives them."""
        return list(self._rows)

    def report_table(self, tablefmt: str = "github") -> str:
        return format_report(self._rows, tablefmt)

    def remove(self) -> None:
        """Take the hooks off and give each converted parameter its (dequantized) data back."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for stored in self._stored.values():
            if _compat.is_released(stored.param):
                _materialize(stored)
        self._stored.clear()
        _APPLIED.pop(self.model, None)

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
                _compat.release_storage(stored.param)


def apply_fp8_hooks(model: torch.nn.Module, config: FP8Config | None = None) -> FP8Hooks:
    """Store ``model``'s linear and conv weights in FP8 and upcast them around each forward.

    ``config.compute`` is ignored: hooks always compute in the original dtype.
    """
    if model in _APPLIED:
        return _APPLIED[model]
    config = config or FP8Config()
    hooks = FP8Hooks(model, config)
    owners: dict[int, str] = {}
    for layer in plan_modules(model, config):
        name, module, reason = layer.name, layer.module, layer.reason
        w, key = module.weight, id(module.weight)
        before = w.numel() * w.element_size()
        if reason:
            hooks._rows.append(_row(name, module, w, False, reason, before, before))
            continue
        if key not in hooks._stored:
            q, scale = quantize_weight(w, config.dtype, config.granularity)
            hooks._stored[key] = _Stored(w, q, scale)
            owners[key] = name
            after = q.numel() * q.element_size() + scale.numel() * 4
            hooks._rows.append(_row(name, module, w, True, "", before, after, config))
        else:
            row = _row(name, module, w, True, "", 0, 0, config)
            hooks._rows.append(replace(row, note=f"weight bytes counted under '{owners[key]}'"))
        hooks._handles.append(module.register_forward_pre_hook(lambda m, a, k=key: hooks._pre(k, m, a)))
        hooks._handles.append(
            module.register_forward_hook(lambda m, a, o, k=key: hooks._post(k, m, a, o), always_call=True)
        )
    for stored in hooks._stored.values():
        if not _compat.release_storage(stored.param):
            hooks.remove()
            raise ValueError(
                "apply_fp8_hooks: a weight shares its storage with other tensors, so its memory "
                "cannot be released; clone the model's parameters first."
            )
    _APPLIED[model] = hooks
    return hooks


def _materialize(stored: _Stored) -> None:
    _compat.restore_storage(stored.param, dequantize_weight(stored.q, stored.scale, stored.param.dtype))


def _row(name, module, w, converted, reason, before, after, config=None) -> LayerReport:
    kind = "linear" if isinstance(module, torch.nn.Linear) else "conv"
    return LayerReport(
        name=name,
        kind=kind,
        converted=converted,
        reason=reason,
        compute="cast" if converted else None,
        bytes_before=before,
        bytes_after=after,
        weight=f"{name}.weight",
        shape=tuple(w.shape),
        dtype=str(config.dtype if converted else w.dtype).replace("torch.", ""),
        granularity=config.granularity if converted else None,
        released=converted,
    )
