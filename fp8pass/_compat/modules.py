"""``nn.Module`` internals fp8pass shadows or reads: ``Module._apply`` (no hook exists for
``.to()``), and the offloading hooks diffusers and accelerate attach (private attributes of theirs).
Checked on torch 2.13.0 and 2.11.0 (CPU), diffusers 0.42.1, accelerate 1.15.0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def shadow_apply(module: torch.nn.Module, fn: Callable[..., Any]) -> None:
    """Route ``module.to()`` / ``.cuda()`` / ``.float()`` / ``.half()`` (all of which go through the
    private ``Module._apply``, which has no hook) to ``fn``, on this instance only. Checked on torch
    2.13.0 and 2.11.0 (CPU)."""
    module._apply = fn


def unshadow_apply(module: torch.nn.Module) -> None:
    """Undo :func:`shadow_apply`. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    module.__dict__.pop("_apply", None)


def class_apply(module: torch.nn.Module, fn: Callable[..., Any], recurse: bool) -> Any:
    """What ``module._apply(fn, recurse)`` does without the instance's shadow. Checked on torch
    2.13.0 and 2.11.0 (CPU)."""
    return type(module)._apply(module, fn, recurse)


def offloading_hooks(module: torch.nn.Module) -> list[str]:
    """Names of hooks on ``module`` that move its weights between devices, found by the private
    attributes the libraries set, neither imported: diffusers' hook registry ``_diffusers_hook``
    (``.hooks``, names containing "offload": group offloading), accelerate's ``_hf_hook``
    (``CpuOffload``, an offloading ``AlignDevicesHook``, or a ``SequentialHook`` holding one).
    Checked on diffusers 0.42.1 and accelerate 1.15.0."""
    registry = getattr(module, "_diffusers_hook", None)
    found = [str(h) for h in (getattr(registry, "hooks", None) or {}) if "offload" in str(h)]
    hook = getattr(module, "_hf_hook", None)
    if _accelerate_moves_weights(hook):
        found.append(f"accelerate {type(hook).__name__}")
    return found


def _accelerate_moves_weights(hook: Any) -> bool:
    kind = type(hook).__name__
    if kind == "SequentialHook":
        return any(_accelerate_moves_weights(h) for h in hook.hooks)
    return kind == "CpuOffload" or (kind == "AlignDevicesHook" and bool(getattr(hook, "offload", False)))
