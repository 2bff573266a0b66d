"""The layer kinds fp8pass converts: one row per kind, read by every path.

A :class:`LayerKind` says how to recognise a layer (the call Dynamo records in its graph, the
``nn.Module`` class the eager paths see), where a call keeps its input, weight and bias, along which
axis of the weight per-channel scales run, what a call's extra arguments are, and whether the
model-boundary rule applies to it. Planning, rewriting, the hook baseline, checkpoints, byte
counting and the report all read this table; a new kind is a row here and its op in
:mod:`fp8pass.ops` (one per compute path in :mod:`fp8pass.computes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import distributed
from ._compat.dynamo import LINEAR_CALLS

__all__ = [
    "KINDS",
    "UNSUPPORTED",
    "Arg",
    "CallArgs",
    "LayerKind",
    "arg",
    "kind_of_call",
    "kind_of_module",
    "same_padding_reason",
]

#: the extra op arguments of one call: every op is ``op(x, fp8 weight, scale, bias, *call_args)``
CallArgs = tuple[Any, ...]


@dataclass(frozen=True)
class Arg:
    """Where a call keeps an argument: its position, or its keyword."""

    index: int
    name: str


def arg(node: fx.Node, where: Arg | int, name: str = "", default: Any = None) -> Any:
    """The argument of a call node at ``where`` (an :class:`Arg`, or a position and keyword)."""
    index, name = (where.index, where.name) if isinstance(where, Arg) else (where, name)
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


@dataclass(frozen=True)
class LayerKind:
    """A kind of layer fp8pass converts.

    ``calls`` / ``modules``: the ``call_function`` targets Dynamo records for it, and its module
    classes. ``input`` / ``weight`` / ``bias``: where a call keeps them (``bias`` None: it has
    none). ``scale_axis``: the weight's output-channel axis, along which per-channel scales run
    (:func:`fp8pass.quantize.quantize_weight`). ``call_args(node, weight)``: the extra op
    arguments of one call, or why it cannot convert; ``module_reason(module)``: why a module of
    this kind cannot convert, from the module alone. ``keep_at_boundary``: whether
    ``FP8Config(keep_boundary=True)`` keeps this kind on the model's boundary (an embedding is a
    lookup: no error accumulates through it, so a token embedding, always a boundary layer,
    converts). ``matmul``: whether the layer is a matmul over its weight (what an FP8 matmul can
    replace).
    """

    name: str
    calls: frozenset[Callable[..., Any]]
    modules: tuple[type[nn.Module], ...]
    call_args: Callable[[fx.Node, torch.Tensor], tuple[CallArgs, str]]
    module_reason: Callable[[nn.Module], str]
    input: Arg = Arg(0, "input")
    weight: Arg = Arg(1, "weight")
    bias: Arg | None = Arg(2, "bias")
    scale_axis: int = 0
    keep_at_boundary: bool = True
    matmul: bool = True


def _no_args(node: fx.Node, weight: torch.Tensor) -> tuple[CallArgs, str]:
    return (), ""


def _no_reason(module: nn.Module) -> str:
    return ""


def same_padding_reason(kernel: Sequence[int], dilation: Sequence[int]) -> str:
    if any(d * (k - 1) % 2 for d, k in zip(dilation, kernel, strict=True)):
        return "padding='same' with an even effective kernel pads asymmetrically"
    return ""


#: fp8pass registers DTensor sharding rules for its linear ops only (see fp8pass.distributed)
def _sharded(kind: str) -> str:
    return f"sharded (DTensor) {kind} weight: fp8pass's {kind} ops have no DTensor sharding rules"


def _conv_call_args(node: fx.Node, w: torch.Tensor) -> tuple[CallArgs, str]:
    """``(stride, padding, dilation, groups)`` as lists of ints, ``padding="same"`` resolved."""
    if distributed.is_dtensor(w):
        return (), _sharded("convolution")
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
        return _sharded("convolution")
    if module.padding == "same":
        return same_padding_reason(module.kernel_size, module.dilation)
    return ""


def _embedding_call_args(node: fx.Node, w: torch.Tensor) -> tuple[CallArgs, str]:
    """``(dtype,)``: a lookup's output has the table's dtype (autocast leaves embeddings alone).
    ``padding_idx``, ``scale_grad_by_freq`` and ``sparse`` only shape gradients."""
    if distributed.is_dtensor(w):
        return (), _sharded("embedding")
    if arg(node, 3, "max_norm") is not None:
        return (), "max_norm renormalizes the looked-up rows of the table in place"
    return (w.dtype,), ""


def _embedding_module_reason(module: nn.Module) -> str:
    if distributed.is_dtensor(module.weight):
        return _sharded("embedding")
    if module.max_norm is not None:
        return "max_norm renormalizes the looked-up rows of the table in place"
    return ""


LINEAR = LayerKind("linear", frozenset({*LINEAR_CALLS, F.linear}), (nn.Linear,), _no_args, _no_reason)
CONV = LayerKind(
    "conv",
    frozenset({torch.conv1d, torch.conv2d, torch.conv3d}),
    (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    _conv_call_args,
    _conv_module_reason,
)
EMBEDDING = LayerKind(
    "embedding",
    frozenset({F.embedding}),
    (nn.Embedding,),
    _embedding_call_args,
    _embedding_module_reason,
    bias=None,
    keep_at_boundary=False,
    matmul=False,
)
KINDS: dict[str, LayerKind] = {k.name: k for k in (LINEAR, CONV, EMBEDDING)}

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
