"""What stops eager code from reading a parameter whose storage fp8pass released.

A released parameter keeps its shape, dtype, device and identity (so Dynamo's guards still pass),
but its memory is gone: a raw read (``w.clone()``, ``w + 1``, ``w.data += delta``) would read
freed memory and crash the process. Every way into it that fp8pass can see is closed with an
error that names the layer and the fix:

- calling a module that owns the weight (forward pre-hook) or loading a state dict into it; its
  ``state_dict()`` lists the key, with the released parameter itself as the value (below);
- ``.to()`` / ``.cuda()`` / ``.float()`` / ``.half()`` on it or any module above it (``_apply``
  shadowed on the instance), refused before anything moves; a move to where the model already
  is (``pipe.to("cuda")`` twice) is allowed;
- ``param.data`` (what LoRA fusing, group offloading and most model surgery use), ``repr``,
  ``copy.deepcopy`` and pickling: the parameter's class becomes a subclass of its own class
  (``isinstance`` checks still hold) whose ``data`` property raises once it is released;
- model CPU offload and group offloading, detected when the model is compiled.

Direct arithmetic on a released parameter (``model.fc.weight.sum()``) is not intercepted: that
would need ``__torch_function__`` on every parameter, which Dynamo would have to trace.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch

from . import distributed
from ._compat.modules import class_apply, offloading_hooks, shadow_apply, unshadow_apply
from ._compat.storage import is_released, set_tensor_data, tensor_data

__all__ = ["guard_eager_use", "refuse_offloading", "unguard", "unwatch", "watch"]

_GUARDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> its hook handles
_GUARDED_APPLY: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
_OWNER_INDEX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_FIX_CHANGE = (
    "To change weights after conversion (fuse a LoRA, load other weights), compile with "
    "FP8Config(release_weights='cpu'), call fp8pass.restore(model), change them, and call the "
    "compiled model again (it converts them anew); or make the change before compiling."
)
_OFFLOAD = (
    "fp8pass keeps a model's FP8 weights on the device it was compiled on and cannot move them, so "
    "model CPU offload and group offloading do not compose with it: keep the FP8 denoiser on the "
    "GPU (FP8 halves its weights) and offload the other components, e.g. "
    "accelerate.cpu_offload_with_hook(pipe.text_encoder_2, 'cuda')."
)


# -- the watched-parameter class -----------------------------------------------------------------


class _Watched:
    """Mixed in front of the class of every parameter of a model fp8pass releases weights of:
    transparent while the parameter has its storage, refusing once it is released. Every
    parameter of the model gets it at once, when the first is released (while Dynamo compiles,
    before it builds its guards), so that Dynamo's guards, which check a parameter's Python
    type, see one class in every block and every later call: no recompiles."""

    _fp8pass_name: str

    @property
    def data(self) -> torch.Tensor:
        if is_released(self):  # metadata only (diffusers' LoRA loader reads .data.shape)
            return _ReleasedData.of(self)
        return tensor_data(self)

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        if value is self:  # Module._apply re-assigns a parameter that .to() left where it was
            return
        if is_released(self):
            raise RuntimeError(_released_message(self, "assign .data of"))
        set_tensor_data(self, value)

    def __repr__(self) -> str:
        if not is_released(self):
            return super().__repr__()
        return (
            f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device}): released "
            f"by fp8pass, the compiled model reads its FP8 copy ('{self._fp8pass_name}')"
        )

    def __deepcopy__(self, memo: dict) -> Any:
        if is_released(self):
            raise RuntimeError(_released_message(self, "copy"))
        return super().__deepcopy__(memo)

    def __reduce_ex__(self, protocol: int) -> Any:
        if is_released(self):
            raise RuntimeError(_released_message(self, "pickle or save"))
        return super().__reduce_ex__(protocol)


class _ReleasedData(torch.Tensor):
    """What ``.data`` of a released parameter gives: it answers shape, dtype, device and the like
    (code such as diffusers' LoRA loader walks every ``module.weight.data.shape``), and refuses
    everything that would touch values, with the parameter's name, instead of reading freed memory.
    Backed by a ``meta`` tensor: it holds no memory."""

    _param: Any

    @staticmethod
    def of(param: torch.Tensor) -> _ReleasedData:
        view = torch.empty(param.shape, dtype=param.dtype, device="meta").as_subclass(_ReleasedData)
        view._param = param
        return view

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = (
            getattr(getattr(func, "__self__", None), "__name__", "")
            if func.__name__ == "__get__"
            else func.__name__
        )
        param = args[0]._param if args and isinstance(args[0], _ReleasedData) else None
        if param is None or name not in _METADATA:
            owner = (
                param if param is not None else next(a._param for a in args if isinstance(a, _ReleasedData))
            )
            raise RuntimeError(_released_message(owner, f"use the data ({name}) of"))
        if name == "device":
            return param.device
        return (
            getattr(param, name)
            if name in ("shape", "dtype", "ndim", "requires_grad", "layout")
            else func(
                *[a.as_subclass(torch.Tensor) if isinstance(a, _ReleasedData) else a for a in args],
                **(kwargs or {}),
            )
        )


_METADATA = {
    "shape",
    "dtype",
    "device",
    "ndim",
    "layout",
    "requires_grad",
    "size",
    "dim",
    "numel",
    "nelement",
    "element_size",
    "is_floating_point",
    "is_complex",
    "stride",
    "is_contiguous",
    "__len__",
}


def _released_message(param: Any, action: str) -> str:
    return (
        f"fp8pass: cannot {action} '{param._fp8pass_name}': fp8pass converted it to FP8 and released "
        f"the original storage (reading it would read freed memory). {_FIX_CHANGE} Offloading: {_OFFLOAD}"
    )


@functools.cache
def _watched_class(cls: type) -> type:
    return type(cls.__name__, (_Watched, cls), {"__module__": __name__, "_fp8pass_base": cls})


def watch(model: torch.nn.Module) -> None:
    """Give every parameter of ``model`` the watched class (see :class:`_Watched`). A class that
    refuses the swap (a C-level layout) is left as it is, and so are DTensor parameters (tensor
    parallelism): torch 2.13's compiled code checks a DTensor input's exact class and refuses a
    subclass on every call. Those are still guarded by their modules' hooks."""
    for name, param in model.named_parameters(remove_duplicate=True):
        if distributed.is_dtensor(param):
            continue
        if isinstance(param, torch.nn.Parameter) and not isinstance(param, _Watched):
            try:
                param.__class__ = _watched_class(type(param))
            except TypeError:
                continue
            param._fp8pass_name = name


def unwatch(model: torch.nn.Module) -> None:
    for param in model.parameters():
        if isinstance(param, _Watched):
            param.__class__ = type(param)._fp8pass_base
            del param._fp8pass_name


def _name(param: torch.Tensor) -> str:
    return getattr(param, "_fp8pass_name", "a weight")


# -- module guards -------------------------------------------------------------------------------


def guard_eager_use(root: torch.nn.Module, param: torch.Tensor) -> None:
    """Close every eager way into ``param`` (released) through the modules of ``root``."""
    for name in _owners(root).get(id(param), []):
        module = root.get_submodule(name)
        label = name or type(module).__name__
        parts = name.split(".") if name else []
        for ancestor_name in (".".join(parts[:i]) for i in range(len(parts) + 1)):
            ancestor = root.get_submodule(ancestor_name)
            if ancestor not in _GUARDED_APPLY:
                _GUARDED_APPLY.add(ancestor)
                # .to() / .cuda() / .float() / .half() go through Module._apply, which has no hook
                # (set while Dynamo compiles, before it builds its guards: no recompile)
                shadow_apply(
                    ancestor, functools.partial(_guarded_apply, ancestor, ancestor_name or "the model")
                )
        if module not in _GUARDED:
            _GUARDED[module] = [
                module.register_forward_pre_hook(functools.partial(_refuse_eager_call, label)),
                module.register_state_dict_post_hook(_released_entries),
                module.register_load_state_dict_pre_hook(functools.partial(_refuse_load_state_dict, label)),
            ]


def unguard(model: torch.nn.Module) -> None:
    """Lift every guard fp8pass put on ``model``'s modules (after :func:`fp8pass.restore`)."""
    for module in model.modules():
        for handle in _GUARDED.pop(module, []):
            handle.remove()
        if module in _GUARDED_APPLY:
            _GUARDED_APPLY.discard(module)
            unshadow_apply(module)
    _OWNER_INDEX.pop(model, None)


def _owners(root: torch.nn.Module) -> dict[int, list[str]]:
    """id(parameter) -> the paths of the modules of ``root`` that hold it, per root. Paths, not
    modules: the index is the value of a weak dictionary keyed by ``root``, and a value that
    referred to ``root`` would keep it, its weights and their FP8 copies alive for ever."""
    index = _OWNER_INDEX.get(root)
    if index is None:
        index = {}
        for name, module in root.named_modules(remove_duplicate=False):
            for _, p in module.named_parameters(recurse=False, remove_duplicate=False):
                index.setdefault(id(p), []).append(name)
        _OWNER_INDEX[root] = index
    return index


def _guarded_apply(module: torch.nn.Module, target: str, fn: Any, recurse: bool = True) -> Any:
    """``Module._apply`` that first checks ``fn`` on a stand-in for each released parameter:
    if ``fn`` would return any of them unchanged (a move to where it is), the real ``_apply``
    runs; otherwise nothing is touched and the move is refused."""
    for param in module.parameters() if recurse else module.parameters(recurse=False):
        if is_released(param):
            stand_in = torch.empty((), dtype=param.dtype, device=param.device).expand(param.shape)
            if fn(stand_in) is not stand_in:
                raise RuntimeError(
                    f"fp8pass: cannot move or cast {target} (.to(), .cuda(), .float(), offloading, ...): "
                    f"the original weight of '{_name(param)}' was released when fp8pass "
                    "converted it to FP8; nothing was changed. Move and cast the model before compiling "
                    f"it, or compile with FP8Config(release_weights=False). {_OFFLOAD}"
                )
    return class_apply(module, fn, recurse)


def _refuse_eager_call(name: str, module: torch.nn.Module, args: Any) -> None:
    if torch.compiler.is_compiling():
        return
    raise RuntimeError(
        f"fp8pass: '{name}' ({type(module).__name__}) cannot run eagerly: torch.compile with the "
        "fp8pass backend moved its weight to FP8 and released the original storage. Call the module "
        "that torch.compile returned instead (if that is what you did, torch.compile fell back to "
        "eager, e.g. at torch._dynamo.config.recompile_limit), or compile with "
        "FP8Config(release_weights=False) to keep the original weights."
    )


def _released_entries(module: torch.nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
    """``state_dict()`` lists every key (LoRA hot-swapping and key checks need them all), but a
    released weight's entry is the parameter itself, of the watched class, whose data reads,
    copies and pickling refuse clearly, instead of a detached alias of freed memory."""
    for name, param in module.named_parameters(recurse=False):
        if is_released(param):
            state[prefix + name] = param


def _refuse_load_state_dict(name: str, module: torch.nn.Module, *args: Any) -> None:
    raise RuntimeError(
        f"fp8pass: cannot load a state_dict into '{name}': its weight was converted to FP8 and the "
        f"original storage released, so new values would be ignored by the compiled model. {_FIX_CHANGE}"
    )


# -- offloading ----------------------------------------------------------------------------------


def refuse_offloading(root: torch.nn.Module) -> None:
    """Raise, before fp8pass releases anything, when ``root`` carries hooks that move its weights
    between devices: diffusers' group offloading, accelerate's CPU offload (``pipe.enable_model_
    cpu_offload()``, ``enable_sequential_cpu_offload()``); found by :func:`offloading_hooks`."""
    for name, module in root.named_modules():
        offloading = offloading_hooks(module)
        if offloading:
            done = any(is_released(p) for p in root.parameters())
            raise RuntimeError(
                f"fp8pass: '{name or type(root).__name__}' has offloading hooks ({', '.join(offloading)}), "
                f"and fp8pass releases the weights it converts. {_OFFLOAD} "
                + (
                    "An earlier compile already converted this model: remove the offloading hooks to "
                    "keep using it."
                    if done
                    else "Remove the offloading from this model before compiling it (nothing was "
                    "converted or released)."
                )
            )
