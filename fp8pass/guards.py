"""The module-level guards around a model whose weights fp8pass released.

A released parameter's own uses (reads, writes, ``.data``, pickling) are handled by its class
(:mod:`fp8pass.released`). What goes through modules is closed here, each with an error that
names the layer and the fix, raised before anything changes:

- calling a module that owns a released weight eagerly (a forward pre-hook): the compiled module
  is what runs it;
- ``.to()`` / ``.cuda()`` / ``.float()`` / ``.half()`` on it or any module above it (``_apply``
  shadowed on the instance); a move to where the model already is (``pipe.to("cuda")`` twice)
  is allowed;
- ``load_state_dict`` is checked whole on the module it is called on before anything is copied
  (all or nothing), then each value for a released weight is requantized into its FP8 copy;
  ``state_dict()`` lists every key, a released weight's value being the parameter itself;
- ``save_pretrained`` (diffusers) is refused before it writes anything, naming
  :func:`fp8pass.save_fp8`;
- model CPU offload and group offloading, detected when the model is compiled.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch

from . import distributed
from ._compat.modules import class_apply, offloading_hooks, shadow_apply, unshadow_apply
from ._compat.storage import is_released
from .kinds import KINDS, kind_of_module
from .released import Watched, name_of, watched_class

__all__ = ["guard_eager_use", "refuse_offloading", "unguard", "unwatch", "watch"]

_GUARDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> its hook handles
_GUARDED_APPLY: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
_GUARDED_SAVE: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
_OWNERS: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()  # modules holding a released weight
_OWNER_INDEX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LAYER_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _layer_weights

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


# -- the watched-parameter class (fp8pass.released) ---------------------------------------------


def watch(model: torch.nn.Module, param: torch.Tensor) -> None:
    """Give ``param``, a parameter of ``model`` fp8pass is releasing, a watched class
    (:mod:`fp8pass.released`): :class:`~fp8pass.released.WatchedWeight` for the weight of a layer
    of a kind fp8pass converts, else :class:`~fp8pass.released.Watched`. Only released parameters
    change class: Dynamo guards on every parameter's type, so a swap of a parameter another graph
    of the model read (a bias, a norm's weight) would recompile that graph. A class that refuses
    the swap (a C-level layout) is left as it is, and so are DTensor parameters (tensor
    parallelism): torch 2.13's compiled code checks a DTensor input's exact class and refuses a
    subclass on every call. Those are still guarded by their modules' hooks."""
    if (
        distributed.is_dtensor(param)
        or not isinstance(param, torch.nn.Parameter)
        or isinstance(param, Watched)
    ):
        return
    weight, name = _layer_weights(model).get(id(param), (False, None))
    if name is None:  # gained since the model was last listed (a LoRA loader's new module)
        weight, name = _layer_weights(model, again=True).get(id(param), (False, "?"))
    try:
        param.__class__ = watched_class(type(param), weight)
    except TypeError:
        return
    param._fp8pass_name = name


def _layer_weights(model: torch.nn.Module, again: bool = False) -> dict[int, tuple[bool, str]]:
    """id(parameter) -> (whether it is the weight of a layer of a kind fp8pass converts, its name);
    listed once per model (a compile releases many weights), ``again`` after the model changed."""
    if again or model not in _LAYER_WEIGHTS:
        weights = {
            id(m.weight)
            for m in model.modules()
            if kind_of_module(m) in KINDS and isinstance(m.weight, torch.Tensor)
        }
        _LAYER_WEIGHTS[model] = {
            id(p): (id(p) in weights, n) for n, p in model.named_parameters(remove_duplicate=True)
        }
    return _LAYER_WEIGHTS[model]


def unwatch(model: torch.nn.Module) -> None:
    for param in model.parameters():
        if isinstance(param, Watched):
            param.__class__ = type(param)._fp8pass_base
            del param._fp8pass_name


# -- module guards -------------------------------------------------------------------------------


def guard_eager_use(root: torch.nn.Module, param: torch.Tensor) -> None:
    """Close every eager way into ``param`` (released) through the modules of ``root``."""
    for name in _owners(root, param).get(id(param), []):
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
                # load_state_dict: checked whole by the module it is called on, before any copy (a
                # pre-hook cannot: torch calls them with strict=True whatever the caller asked)
                ancestor.__dict__["load_state_dict"] = functools.partial(_checked_load_state_dict, ancestor)
        if module not in _OWNERS:
            _OWNERS.add(module)
            _GUARDED.setdefault(module, []).extend(
                [
                    module.register_forward_pre_hook(functools.partial(_refuse_eager_call, label)),
                    module.register_state_dict_post_hook(_released_entries),
                ]
            )
    if hasattr(root, "save_pretrained") and root not in _GUARDED_SAVE:
        _GUARDED_SAVE.add(root)
        root.__dict__["save_pretrained"] = functools.partial(
            _refuse_save_pretrained, root
        )  # this instance only


def unguard(model: torch.nn.Module) -> None:
    """Lift every guard fp8pass put on ``model``'s modules (after :func:`fp8pass.restore`)."""
    for module in model.modules():
        for handle in _GUARDED.pop(module, []):
            handle.remove()
        _OWNERS.discard(module)
        if module in _GUARDED_APPLY:
            _GUARDED_APPLY.discard(module)
            unshadow_apply(module)
            module.__dict__.pop("load_state_dict", None)
        if module in _GUARDED_SAVE:
            _GUARDED_SAVE.discard(module)
            module.__dict__.pop("save_pretrained", None)
    _OWNER_INDEX.pop(model, None)


def _owners(root: torch.nn.Module, param: torch.Tensor | None = None) -> dict[int, list[str]]:
    """id(parameter) -> the paths of the modules of ``root`` that hold it, per root. Paths, not
    modules: the index is the value of a weak dictionary keyed by ``root``, and a value that
    referred to ``root`` would keep it, its weights and their FP8 copies alive for ever."""
    index = _OWNER_INDEX.get(root)
    if index is None or (param is not None and id(param) not in index):  # a module replaced since
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
                    f"the original weight of '{name_of(param)}' was released when fp8pass "
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


def _checked_load_state_dict(
    module: torch.nn.Module, state_dict: Any, strict: bool = True, assign: bool = False
) -> Any:
    """``module.load_state_dict`` for a module that holds released weights, all or nothing: every
    key the state dict has for the module is checked (its shape; a released weight takes floating
    point values only) and, when ``strict``, that no key is missing or unexpected, before anything
    is copied (torch's own copies what fits, then raises). A value for a released weight is then
    requantized into its FP8 copy (:mod:`fp8pass.released`)."""
    expected = module.state_dict(keep_vars=True)
    problems = []
    for key, value in state_dict.items():
        target = expected.get(key)
        if target is None:
            if strict:
                problems.append(f"unexpected key {key!r}")
            continue
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(target.shape):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            problems.append(f"{key!r} has shape {shape}, the model's is {list(target.shape)}")
        elif is_released(target) and not value.is_floating_point():
            problems.append(f"{key!r} is {value.dtype}; its FP8 weight takes floating point values")
    if strict:
        problems += [f"missing key {k!r}" for k in expected if k not in state_dict]
    if problems:
        raise RuntimeError(
            f"fp8pass: load_state_dict into {type(module).__name__} refused before anything was "
            f"changed ({len(problems)} problems): " + "; ".join(problems[:5])
        )
    return type(module).load_state_dict(module, state_dict, strict=strict, assign=assign)


def _refuse_save_pretrained(model: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError(
        f"fp8pass: cannot save_pretrained this {type(model).__name__}: fp8pass converted its weights to "
        "FP8 and released the originals, so the folder would not hold them; nothing was written. Save "
        "it in FP8 with fp8pass.save_fp8(model, 'model-fp8.safetensors') and load it back with "
        "fp8pass.load_model(type(model), 'model-fp8.safetensors', model_config=<its config.json or "
        "folder>); or compile with FP8Config(release_weights='cpu') and call fp8pass.restore(model) "
        "first to save the original weights."
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
