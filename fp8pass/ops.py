"""The custom ops the pass puts in the graph, and the decompositions Inductor sees.

Each op has one implementation, ``*_math``, written in plain PyTorch ops. It serves three roles:
the eager kernel, the fake (meta) kernel (run on fake tensors it yields the exact output shape
and strides, channels_last included), and the decomposition handed to AOT autograd, so that the
compiler sees ``convert_element_type -> mm -> mul`` rather than an opaque call.

On a GPU the cast ops apply the scale to the *output* (per tensor or per output channel both
commute with the matmul), so the only thing in front of the matmul is a pure dtype conversion:
Inductor can fuse that into its Triton matmul template (prologue fusion), and the scale multiply
into the epilogue. On a CPU nothing fuses into oneDNN's matmul, so the weight is converted
already scaled, in one pass of a C loop (:func:`fp8pass.dequant.fp8_scaled_to`, the same bits as
``(q.float() * scale).to(dtype)``), and the layer is the bf16 model's own ``addmm`` / convolution:
the graph Inductor compiles is the bf16 one plus one call per weight, with no kernel of its own
(a cold compile generates as many kernels as plain Inductor's, and a small layer pays one call).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._compat.matmul import data_dependent_rows, known_empty, scaled_mm
from .dequant import fp8_scaled_to, fp8_to, uses_native
from .quantize import MIN_AMAX

__all__ = [
    "ACTIVATION_DTYPE",
    "DECOMPOSITIONS",
    "DEFINING_MODULES",
    "definition_hash",
    "conv",
    "embedding",
    "linear",
    "scaled_conv",
    "scaled_linear",
]

# Activations are quantized to e4m3: more mantissa than e5m2, and _scaled_mm refuses e5m2 x e5m2.
ACTIVATION_DTYPE = torch.float8_e4m3fn
_ACT_MAX = float(torch.finfo(ACTIVATION_DTYPE).max)
_CONV_FNS = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def _epilogue(y: Tensor, scale: Tensor, bias: Tensor | None, spatial_dims: int) -> Tensor:
    """``y * scale + bias`` in float32, rounded once to ``y``'s dtype; channel is dim -(spatial+1)."""
    shape = (-1,) + (1,) * spatial_dims
    out = y.float() * (scale.view(shape) if scale.dim() else scale)
    if bias is not None:
        out = out + bias.float().view(shape)
    return out.to(y.dtype)


def _in(bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if bias is None else bias.to(dtype)


def linear_math(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    if uses_native(weight, x.dtype):
        return F.linear(x, fp8_scaled_to(weight, scale, x.dtype), _in(bias, x.dtype))
    return _epilogue(F.linear(x, fp8_to(weight, x.dtype)), scale, bias, 0)


def conv_math(
    x: Tensor,
    weight: Tensor,
    scale: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    conv_fn = _CONV_FNS[weight.dim()]
    if uses_native(weight, x.dtype):
        w = fp8_scaled_to(weight, scale, x.dtype)
        return conv_fn(x, w, _in(bias, x.dtype), stride, padding, dilation, groups)
    y = conv_fn(x, fp8_to(weight, x.dtype), None, stride, padding, dilation, groups)
    return _epilogue(y, scale, bias, weight.dim() - 2)


def embedding_math(
    x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None, dtype: torch.dtype
) -> Tensor:
    """A lookup in an FP8 table: the rows of ``x``'s indices gathered as bytes, converted to
    ``dtype``, each times its row's scale (or the one scale). Only the looked-up rows are ever
    converted. ``bias`` is always None (every op takes the same leading arguments)."""
    rows = F.embedding(x, weight.view(torch.uint8)).view(weight.dtype)
    row_scale = scale[x].unsqueeze(-1) if scale.dim() else scale
    return (fp8_to(rows, torch.float32) * row_scale).to(dtype)


def _quantize_activation(x2d: Tensor, rowwise: bool) -> tuple[Tensor, Tensor]:
    # Plain ops on purpose: Inductor fuses them with whatever produced x.
    xf = x2d.float()
    amax = xf.abs().amax(dim=-1, keepdim=True) if rowwise else xf.abs().amax()
    a_scale = amax.clamp(min=MIN_AMAX) / _ACT_MAX
    xq = (xf / a_scale).clamp(-_ACT_MAX, _ACT_MAX).to(ACTIVATION_DTYPE)
    return xq, a_scale


def scaled_linear_math(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    rowwise = scale.dim() == 1
    n, k = weight.shape
    if known_empty(x):  # an empty batch: nothing to scale (Dynamo specializes size 0)
        return x.new_empty(*x.shape[:-1], n)
    x2d = x.reshape(-1, k)
    rows = x2d.shape[0]
    # A data-dependent row count (rowwise only): two zero rows make "one row?" decidable for
    # torch's _scaled_mm checks (rows + 2 > 1); their outputs are dropped. Zero rows leave the
    # other rows' scales alone.
    pad = 2 if rowwise and data_dependent_rows(x2d) else 0
    if pad:
        x2d = torch.cat([x2d, x2d.new_zeros(pad, k)])
    xq, a_scale = _quantize_activation(x2d, rowwise)
    # weight is stored (N, K) row-major, so weight.t() is the column-major (K, N) operand the FP8
    # matmul wants: a view, no per-call copy.
    y = scaled_mm(
        xq,
        weight.t(),
        a_scale,
        scale.view(1, n) if rowwise else scale,
        x.dtype,
        None if bias is None else bias.to(x.dtype),
    )
    if pad:
        y = y.narrow(0, 0, rows)
    return y.reshape(*x.shape[:-1], n)


def scaled_conv_math(
    x: Tensor,
    weight: Tensor,
    scale: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    """A 1x1 convolution (stride 1, no padding, one group: the planner sends no other here) as an
    FP8 matmul over channels. Takes the convolution's arguments so that every conv op has one
    signature."""
    spatial = weight.dim() - 2
    channel_dim = -(spatial + 1)
    y = scaled_linear_math(x.movedim(channel_dim, -1), weight.flatten(1), scale, bias)
    return y.movedim(-1, channel_dim)


def _define(name: str, math: Callable[..., Tensor]) -> torch.library.CustomOpDef:
    op = torch.library.custom_op(f"fp8pass::{name}", math, mutates_args=())
    op.register_fake(math)
    return op


linear = _define("linear", linear_math)
conv = _define("conv", conv_math)
embedding = _define("embedding", embedding_math)
scaled_linear = _define("scaled_linear", scaled_linear_math)
scaled_conv = _define("scaled_conv", scaled_conv_math)

#: op overload -> plain-PyTorch decomposition, for AOT autograd / Inductor.
DECOMPOSITIONS: dict[Any, Callable[..., Tensor]] = {
    torch.ops.fp8pass.linear.default: linear_math,
    torch.ops.fp8pass.conv.default: conv_math,
    torch.ops.fp8pass.embedding.default: embedding_math,
    torch.ops.fp8pass.scaled_linear.default: scaled_linear_math,
    torch.ops.fp8pass.scaled_conv.default: scaled_conv_math,
}


#: The modules whose code defines what the ops compute and how compiled code calls them: these
#: ``*_math`` functions, the CPU conversion they call (its C source, its ctypes bindings and the
#: arguments the generated code passes them), the scale constants, the FP8 matmul wrapper, the
#: code Inductor writes for the conversion calls. Inductor's caches key compiled graphs on
#: :func:`definition_hash` of them, and on nothing else of fp8pass: editing the harness, the
#: report or the planner keeps users' compiled kernels.
DEFINING_MODULES = (
    "ops.py",
    "dequant.py",
    "native.py",
    "csrc/fp8_convert.c",
    "quantize.py",
    "_compat/matmul.py",
    "_compat/inductor.py",
)


@functools.cache
def definition_hash(package: Path | None = None) -> str:
    """A hash of :data:`DEFINING_MODULES`' source, in ``package`` (default: this fp8pass)."""
    root = package or Path(__file__).parent
    digest = hashlib.sha256()
    for name in DEFINING_MODULES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()[:16]
