"""A released parameter: what reading or writing it does once fp8pass freed its storage.

A released parameter keeps its shape, dtype, device and identity (so Dynamo's guards still pass),
but its memory is gone: a raw read would read freed memory and end the process. Every parameter of
a model fp8pass releases weights of gets :class:`Watched` mixed into its class (``isinstance``
checks still hold), which is transparent while the parameter has its storage and, once it is
released, turns every use into one on its FP8 copy:

- **reads** (``w.sum()``, ``w + 1``, ``w.clone()``, ``w.data.clone()``) compute on the weight
  dequantized from FP8 (what the compiled model computes with), made for that one call;
- **writes** (``w.copy_(v)``: ``load_state_dict``; ``w.data += delta`` / ``w.data = v``: LoRA
  fusing) requantize the new value into the FP8 copy in place, so the compiled model uses it at
  once; the weight's SQNR after requantizing is noted on the layer's report row;
- metadata (shape, dtype, device, ``.data.shape``, ...) is answered as for any parameter;
- ``.to()`` and friends, eager calls of its modules, pickling and ``copy.deepcopy`` are refused
  with the reason and the fix (:mod:`fp8pass.guards`, :meth:`Watched.__reduce_ex__`).

Inside ``torch.compile`` the class is as transparent as ``nn.Parameter``: Dynamo folds the
``is_compiling()`` test and traces the plain op.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ._compat.storage import is_released, set_tensor_data, tensor_data
from ._compat.subclass import torch_function_disabled

__all__ = ["ReleasedData", "Watched", "WatchedWeight", "name_of", "released_message", "watched_class"]

#: ``(param, new value) -> note`` that writes a value into a released parameter's FP8 copies;
#: :mod:`fp8pass.store` (which owns the copies) sets it, and ``dequantized`` reads them back
write_back: Callable[[torch.Tensor, torch.Tensor], str] | None = None
dequantized: Callable[[torch.Tensor], torch.Tensor] | None = None

_FIX = (
    "Its FP8 values are there (reads such as w.clone() compute on them); to get the original "
    "weights back, compile with FP8Config(release_weights='cpu') and call fp8pass.restore(model)."
)

#: torch functions that only read metadata: answered as for any parameter
_METADATA = frozenset(
    {
        "__get__",
        "__set__",
        "size",
        "dim",
        "numel",
        "nelement",
        "element_size",
        "is_floating_point",
        "is_complex",
        "stride",
        "is_contiguous",
        "storage_offset",
        "untyped_storage",
        "__len__",
        "requires_grad_",
        "get_device",
        # torch 2.11's meta_utils asks these while fakifying a parameter (checked on 2.11.0)
        "_is_view",
        "is_conj",
        "is_neg",
        "is_inference",
        "__format__",
    }
)
_INPLACE_DUNDERS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__"})
#: attributes that are views of the data, not metadata: reads of a released parameter
_VIEW_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "real", "imag"})


def _metadata(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", "") not in _VIEW_ATTRIBUTES
    return name in _METADATA


def released_message(param: Any, action: str) -> str:
    return (
        f"fp8pass: cannot {action} '{name_of(param)}': fp8pass converted it to FP8 and released the "
        f"original storage. {_FIX}"
    )


def name_of(param: torch.Tensor) -> str:
    return getattr(param, "_fp8pass_name", "a weight")


def _released(value: Any) -> bool:
    with torch_function_disabled():
        return is_released(value)


class Watched:
    """Mixed in front of the class of every parameter of a model fp8pass releases weights of (see
    the module docstring). Every parameter of the model gets it at once, when the first is
    released (while Dynamo compiles, before it builds its guards), so that Dynamo's guards, which
    check a parameter's Python type, see one class in every block and every later call. Its
    ``.data``, ``repr``, copying and pickling know about release; its torch functions are
    ``nn.Parameter``'s (:class:`WatchedWeight` adds the released-aware ones)."""

    _fp8pass_name: str

    @property
    def data(self) -> torch.Tensor:
        if _released(self):  # metadata only, until used (diffusers' LoRA loader reads .data.shape)
            return ReleasedData.of(self)
        return tensor_data(self)

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        if value is self or (isinstance(value, ReleasedData) and value._param is self):
            return  # Module._apply re-assigns what .to() left; ``w.data += d`` assigns its result
        if _released(self):
            _write(self, value)
            return
        set_tensor_data(self, value)

    def __repr__(self) -> str:
        if not _released(self):
            return super().__repr__()
        return (
            f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device}): released "
            f"by fp8pass, the compiled model reads its FP8 copy ('{self._fp8pass_name}')"
        )

    def __deepcopy__(self, memo: dict) -> Any:
        if _released(self):
            raise RuntimeError(released_message(self, "copy"))
        return super().__deepcopy__(memo)

    def __reduce_ex__(self, protocol: int) -> Any:
        if _released(self):
            raise RuntimeError(
                released_message(self, "pickle or save")
                + " To save the model in FP8: fp8pass.save_fp8(model, 'model-fp8.safetensors')."
            )
        return super().__reduce_ex__(protocol)


class WatchedWeight(Watched):
    """:class:`Watched` for the weights of layers of a kind fp8pass converts, the only parameters
    it releases: torch functions on a released one go to its FP8 copy (reads dequantize, in-place
    writes requantize) instead of freed memory. Only these weights carry a ``__torch_function__``:
    Dynamo traces it (and folds it away) where a layer passes its weight positionally, but
    mishandles some keyword uses (``F.rms_norm(x, shape, weight=w)``), which a norm's weight
    would meet."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not torch.compiler.is_compiling() and not _metadata(func):
            param = next((a for a in args if isinstance(a, Watched) and _released(a)), None)
            if param is not None:
                return _use_released(func, param, args, kwargs, param)
        with torch_function_disabled():
            return func(*args, **kwargs)


class ReleasedData(torch.Tensor):
    """What ``.data`` of a released parameter gives: it answers shape, dtype, device and the like
    without memory (a ``meta`` tensor), and any other use goes to the parameter's FP8 copy as the
    parameter's own uses do (reads dequantize, in-place writes requantize)."""

    _param: Any

    @staticmethod
    def of(param: torch.Tensor) -> ReleasedData:
        view = torch.empty(param.shape, dtype=param.dtype, device="meta").as_subclass(ReleasedData)
        view._param = param
        return view

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        stand_in = next(a for a in (*args, *kwargs.values()) if isinstance(a, ReleasedData))
        param = stand_in._param
        if getattr(func, "__name__", "") == "__get__" and _metadata(func):
            attr = getattr(getattr(func, "__self__", None), "__name__", "")
            return param.device if attr == "device" else getattr(param, attr)
        if _metadata(func):
            with torch_function_disabled():
                return func(
                    *[a.as_subclass(torch.Tensor) if isinstance(a, ReleasedData) else a for a in args],
                    **kwargs,
                )
        return _use_released(func, param, args, kwargs, stand_in)


def _use_released(func: Any, param: torch.Tensor, args: tuple, kwargs: dict, handle: Any) -> Any:
    """``func(*args, **kwargs)`` where ``handle`` (the released ``param``, or its ``.data``)
    stands for the weight: computed on its dequantized FP8 copy, and written back (requantized)
    where ``func`` changes ``handle`` in place."""
    name = getattr(func, "__name__", "")
    if name == "data_ptr" or dequantized is None:  # a pointer into a temporary would dangle
        raise RuntimeError(released_message(param, f"use ({name})"))
    value = dequantized(param)

    def swap(a: Any) -> Any:
        if a is handle or a is param or (isinstance(a, ReleasedData) and a._param is param):
            return value
        if isinstance(a, (list, tuple)):
            return type(a)(swap(x) for x in a)
        return a

    with torch_function_disabled():
        out = func(*swap(args), **{k: swap(v) for k, v in kwargs.items()})
    inplace = (
        args
        and args[0] is handle
        and (name in _INPLACE_DUNDERS or (name.endswith("_") and not name.endswith("__")))
    )
    if not inplace:
        return out
    _write(param, value)
    return handle


def _write(param: torch.Tensor, value: torch.Tensor) -> None:
    """Requantize ``value`` into the released ``param``'s FP8 copies (shape checked first)."""
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(param.shape):
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise RuntimeError(
            released_message(param, f"write a value of shape {shape} into")
            + f" It has shape {list(param.shape)}."
        )
    if not value.is_floating_point():
        raise RuntimeError(released_message(param, f"write a {value.dtype} value into"))
    if write_back is None:
        raise RuntimeError(released_message(param, "write"))
    write_back(param, value.detach())


@functools.cache
def watched_class(cls: type, weight: bool) -> type:
    """``cls`` with :class:`WatchedWeight` (a layer's weight) or :class:`Watched` mixed in front."""
    mixin = WatchedWeight if weight else Watched
    return type(cls.__name__, (mixin, cls), {"__module__": __name__, "_fp8pass_base": cls})
