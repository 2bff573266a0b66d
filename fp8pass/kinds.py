"""The two tables the rest of fp8pass reads: layer kinds and compute paths.

A **layer kind** says how to recognise a layer (the call Dynamo records in its graph, the
``nn.Module`` class for the eager paths) and what a call's extra arguments are. A **compute path**
says which op runs a converted layer of each kind, and what stops it from running a given layer.
Planning, rewriting, the hook baseline, the layer micro-benchmark and byte counting all read these
tables, so a new kind (an embedding, a transposed convolution) or a new compute (int8 weight-only,
MXFP8) is a row here plus an op in :mod:`fp8pass.ops`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import _compat, distributed, ops

__all__ = [
    "COMPUTES",
    "KINDS",
    "UNSUPPORTED",
    "Compute",
    "LayerKind",
    "arg",
    "has_fp8_matmul",
    "kind_of_call",
    "kind_of_module",
    "same_padding_reason",
]

_fp8 = torch.ops.fp8pass

#: one op signature for every kind: (x, fp8 weight, scale, bias, *the kind's call arguments)
CallArgs = tuple[Any, ...]


def arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` (or keyword ``name``) of a call node."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


@dataclass(frozen=True)
class LayerKind:
    """A kind of layer fp8pass converts.

    ``calls``: the ``call_function`` targets Dynamo records for it. ``modules``: its module classes.
    ``call_args(node, weight)``: the extra op arguments of one call, or a reason it cannot convert.
    ``module_reason(module)``: why a module of this kind cannot convert, from the module alone.
    """

    name: str
    calls: frozenset[Callable[..., Any]]
    modules: tuple[type[nn.Module], ...]
    call_args: Callable[[fx.Node, torch.Tensor], tuple[CallArgs, str]]
    module_reason: Callable[[nn.Module], str]


def _no_args(node: fx.Node, weight: torch.Tensor) -> tuple[CallArgs, str]:
    return (), ""


def _no_reason(module: nn.Module) -> str:
    return ""


def same_padding_reason(kernel: Sequence[int], dilation: Sequence[int]) -> str:
    if any(d * (k - 1) % 2 for d, k in zip(dilation, kernel, strict=True)):
        return "padding='same' with an even effective kernel pads asymmetrically"
    return ""


#: fp8pass registers DTensor sharding rules for its linear ops only (see fp8pass.distributed)
_SHARDED_CONV = "sharded (DTensor) convolution weight: fp8pass's conv ops have no DTensor sharding rules"


def _conv_call_args(node: fx.Node, w: torch.Tensor) -> tuple[CallArgs, str]:
    """``(stride, padding, dilation, groups)`` as lists of ints, ``padding="same"`` resolved."""
    if distributed.is_dtensor(w):
        return (), _SHARDED_CONV
    dims = w.dim() - 2

    def expand(v: Any) -> list[int]:
        return list(v) if isinstance(v, (tuple, list)) else [v] * dims

    stride = expand(arg(node, 3, "stride", 1))
    dilation = expand(arg(node, 5, "dilation", 1))
    groups = arg(node, 6, "groups", 1)
    padding = arg(node, 4, "padding", 0)
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if why := same_padding_reason(w.shape[2:], dilation):
            return (), why
        padding = [d * (k - 1) // 2 for d, k in zip(dilation, w.shape[2:], strict=True)]
    return (stride, expand(padding), dilation, groups), ""


def _conv_module_reason(module: nn.Module) -> str:
    if distributed.is_dtensor(module.weight):
        return _SHARDED_CONV
    if module.padding == "same":
        return same_padding_reason(module.kernel_size, module.dilation)
    return ""


LINEAR = LayerKind("linear", frozenset({*_compat.LINEAR_CALLS, F.linear}), (nn.Linear,), _no_args, _no_reason)
CONV = LayerKind(
    "conv",
    frozenset({torch.conv1d, torch.conv2d, torch.conv3d}),
    (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    _conv_call_args,
    _conv_module_reason,
)
KINDS: dict[str, LayerKind] = {k.name: k for k in (LINEAR, CONV)}

#: Layers fp8pass recognises but does not convert: kind name -> (calls, modules, the reason).
UNSUPPORTED: dict[str, tuple[frozenset[Callable[..., Any]], tuple[type[nn.Module], ...], str]] = {
    "conv_transpose": (
        frozenset({torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d}),
        (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
        "transposed convolution is not supported",
    ),
}


def kind_of_call(node: fx.Node) -> str | None:
    """The kind (or unsupported kind) name of a graph node, or None for any other node."""
    if node.op != "call_function":
        return None
    for name, kind in KINDS.items():
        if node.target in kind.calls:
            return name
    for name, (calls, _, _) in UNSUPPORTED.items():
        if node.target in calls:
            return name
    return None


def kind_of_module(module: nn.Module) -> str | None:
    for name, kind in KINDS.items():
        if isinstance(module, kind.modules):
            return name
    for name, (_, modules, _) in UNSUPPORTED.items():
        if isinstance(module, modules):
            return name
    return None


# -- compute paths ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compute:
    """A way to run a converted layer.

    ``ops``: kind name -> the op (see :mod:`fp8pass.ops`). ``obstacle(kind, weight, call_args,
    activation_dtype, config)``: why this compute cannot run that layer (``""`` when it can); the
    planner then falls back to ``"cast"`` and notes why.
    """

    name: str
    ops: dict[str, Any]  # kind name -> OpOverload
    obstacle: Callable[..., str]

    def math(self, kind: str) -> Callable[..., torch.Tensor]:
        """The plain-PyTorch implementation of this compute for ``kind`` (what Inductor compiles)."""
        return ops.DECOMPOSITIONS[self.ops[kind]]


def _cast_obstacle(*args: Any) -> str:
    return ""


def _scaled_mm_obstacle(
    kind: str, w: torch.Tensor, call_args: CallArgs, activation_dtype: torch.dtype | None, config: Any
) -> str:
    # the shapes the matmul sees: a sharded (DTensor) weight's local shard
    out_features, in_features = _compat.local_tensor(w).shape[:2]
    if kind == "conv":
        stride, padding, _, groups = call_args
        if any(k != 1 for k in w.shape[2:]) or any(s != 1 for s in stride) or any(padding) or groups != 1:
            return "only 1x1 convolutions (stride 1, no padding, one group) run as FP8 matmuls"
    if in_features % 16 or out_features % 16:
        return f"FP8 matmul needs in/out features divisible by 16, got {in_features}/{out_features}"
    if activation_dtype != torch.bfloat16:
        return f"FP8 matmul output is bfloat16 only; activation is {activation_dtype or 'unknown'}"
    if config.granularity == "channel" and not _compat.rowwise_scaled_mm_supported(w.device):
        return (
            f"torch {torch.__version__}'s _scaled_mm takes no per-row scales on {w.device.type}; "
            "FP8Config(granularity='tensor') runs FP8 matmuls there"
        )
    return ""


CAST = Compute("cast", {"linear": _fp8.linear.default, "conv": _fp8.conv.default}, _cast_obstacle)
SCALED_MM = Compute(
    "scaled_mm", {"linear": _fp8.scaled_linear.default, "conv": _fp8.scaled_conv.default}, _scaled_mm_obstacle
)
COMPUTES: dict[str, Compute] = {c.name: c for c in (CAST, SCALED_MM)}


def has_fp8_matmul(device: torch.device) -> bool:
    """What ``compute="auto"`` asks: CUDA with compute capability 8.9 (Ada) or newer."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
