"""Weight -> (fp8, scale) and back: pure functions, per tensor or per output channel."""

from __future__ import annotations

import math

import torch

from . import native
from ._compat.storage import local_tensor
from .dequant import fp8_scaled_to, fp8_to

__all__ = [
    "MIN_AMAX",
    "SCALE_DTYPE",
    "FLUSH_NOTE_FRACTION",
    "dequantize_weight",
    "flush_note",
    "fp8_max",
    "quantize_weight",
    "scale_shape",
    "stored_bytes",
]

#: An absmax never counts as smaller than this, so an all-zero weight (or activation) quantizes to
#: zeros instead of NaN.
MIN_AMAX = 1e-12
#: Scales are kept in float32.
SCALE_DTYPE = torch.float32


def fp8_max(dtype: torch.dtype) -> float:
    """Largest finite value of an FP8 dtype (448 for e4m3fn, 57344 for e5m2)."""
    return float(torch.finfo(dtype).max)


def quantize_weight(
    weight: torch.Tensor, dtype: torch.dtype, granularity: str, axis: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a layer's weight with symmetric absmax scaling.

    Returns ``(q, scale)``: ``q`` is contiguous, of ``weight``'s shape and ``dtype``; ``scale`` is
    float32, a 0-d tensor for ``"tensor"`` and one per output channel for ``"channel"`` (shape
    :func:`scale_shape`; ``axis`` is the output-channel axis, the kind's ``scale_axis``), so that
    ``q.float() * scale`` (broadcast along ``axis``) approximates ``weight``.

    Example:
        >>> q, s = quantize_weight(torch.randn(32, 16), torch.float8_e4m3fn, "channel")
        >>> q.dtype, s.shape
        (torch.float8_e4m3fn, torch.Size([32]))
    """
    if granularity not in ("channel", "tensor"):
        raise ValueError(f"granularity must be 'channel' or 'tensor'; got {granularity!r}")
    if axis:
        q, scale = quantize_weight(weight.movedim(axis, 0), dtype, granularity)
        return q.movedim(0, axis).contiguous(), scale
    w = weight.detach()
    if (found := native.quantize(w, dtype, granularity == "channel")) is not None:
        return found  # the same bits as the torch ops below, from a C loop with no float32 copy
    blocks = _row_blocks(w)
    # Absmax and division in float32, a block of rows at a time: the float32 temporaries stay at
    # _BLOCK_NUMEL elements instead of three copies of the weight (a 75 MB Flux weight would need
    # 450 MB), and every element sees exactly the same arithmetic as in one piece.
    if len(blocks) == 1:  # every tensor subclass (a DTensor shard) too: the whole tensor, unsliced
        amax = _amax(w, granularity)
    elif granularity == "tensor":
        amax = torch.stack([_amax(w[b], granularity) for b in blocks]).amax()
    else:
        amax = torch.cat([_amax(w[b], granularity) for b in blocks])
    scale = (amax.clamp(min=MIN_AMAX) / fp8_max(dtype)).to(SCALE_DTYPE)
    if len(blocks) == 1:  # every tensor subclass (a DTensor shard) too: no copy into a plain q
        return _to_fp8(w, scale, dtype).contiguous(), scale
    q = torch.empty(w.shape, dtype=dtype, device=w.device)
    for b in blocks:
        q[b] = _to_fp8(w[b], scale[b] if scale.dim() else scale, dtype)
    return q, scale


def _amax(w: torch.Tensor, granularity: str) -> torch.Tensor:
    """Absmax, of the whole tensor or per output channel (dim 0), as float32. Taken in the weight's
    own dtype (abs and max are exact in any float format) and converted after: the same values as
    converting first, with no float32 copy of the weight (2.7x faster on a bf16 weight on CPU)."""
    a = w.abs()
    return (a.amax() if granularity == "tensor" else a.flatten(1).amax(dim=1)).float()


def _to_fp8(w: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(w / scale).clamp(-max, max)`` in float32, cast to ``dtype``; in place on one float32
    copy (``copy=True``: a float32 weight is never changed) rather than three temporaries."""
    limit = fp8_max(dtype)
    f = w.to(torch.float32, copy=True)
    return f.div_(_per_channel_view(scale, w.dim())).clamp_(-limit, limit).to(dtype)


#: Elements of a block of rows quantized at once (float32 temporaries of 16 MiB).
_BLOCK_NUMEL = 2**22


def _row_blocks(w: torch.Tensor) -> list[slice]:
    """Slices of whole output channels (dim 0), about _BLOCK_NUMEL elements each."""
    if w.dim() < 2 or w.numel() <= _BLOCK_NUMEL or type(w) is not torch.Tensor:
        return [slice(None)]
    rows, step = w.shape[0], max(1, _BLOCK_NUMEL // w[0].numel())
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def scale_shape(shape: tuple[int, ...] | torch.Size, granularity: str, axis: int = 0) -> tuple[int, ...]:
    """The shape of the scale :func:`quantize_weight` keeps for a weight of ``shape``: one per
    output channel (along ``axis``), or a 0-d one.

    Example:
        >>> scale_shape((128, 64), "channel"), scale_shape((128, 64), "tensor")
        ((128,), ())
    """
    return (shape[axis],) if granularity == "channel" else ()


def stored_bytes(
    shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, granularity: str, axis: int = 0
) -> int:
    """Bytes of the FP8 copy of a weight of ``shape``: its elements in ``dtype`` plus its scales
    (:func:`scale_shape`). The one byte count fp8pass reports, plans and checks with.

    Example:
        >>> stored_bytes((128, 64), torch.float8_e4m3fn, "channel")  # 128 * 64 + 128 * 4
        8704
    """
    scales = math.prod(scale_shape(shape, granularity, axis))
    return math.prod(shape) * torch.finfo(dtype).bits // 8 + scales * torch.finfo(SCALE_DTYPE).bits // 8


def dequantize_weight(
    q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, axis: int = 0
) -> torch.Tensor:
    """Inverse of :func:`quantize_weight`, in ``dtype``. The FP8 -> float32 step is
    :func:`fp8pass.dequant.fp8_to`, as in the compiled cast path, so that a compiled hooked model
    converts the same way and hook vs compiled still compares the mechanism alone: on a CPU
    both are one pass of :func:`fp8pass.dequant.fp8_scaled_to` (scale along dim 0)."""
    if axis == 0 or not scale.dim():
        return fp8_scaled_to(q, scale, dtype)
    return (fp8_to(q, torch.float32) * _per_channel_view(scale, q.dim(), axis)).to(dtype)


def _per_channel_view(scale: torch.Tensor, ndim: int, axis: int = 0) -> torch.Tensor:
    if not scale.dim():
        return scale
    shape = [1] * ndim
    shape[axis] = -1
    return scale.view(shape)


#: A layer whose quantization flushes more than this share of its nonzero weights to zero gets a
#: note in the report and a logged warning (:func:`flush_note`). Gaussian weights flush about
#: 1e-5 of theirs; one outlier 1e4 times the typical weight flushes most of its channel (or, per
#: tensor, of its layer).
FLUSH_NOTE_FRACTION = 0.01
_SAMPLE = 65536


def flush_note(weight: torch.Tensor, q: torch.Tensor) -> str:
    """A note when quantizing ``weight`` into ``q`` turned more than :data:`FLUSH_NOTE_FRACTION`
    of its nonzero values into zeros (an outlier dominating a scale), with the fraction; ``""``
    otherwise. Counted on an evenly strided sample first (cheap), then exactly where the sample
    says it matters."""
    w, q = local_tensor(weight).detach(), local_tensor(q)
    if w.numel() == 0:
        return ""
    step = max(1, w.numel() // _SAMPLE)
    if _flushed(w.reshape(-1)[::step], q.reshape(-1)[::step]) <= FLUSH_NOTE_FRACTION:
        return ""
    fraction = _flushed(w.reshape(-1), q.reshape(-1))
    if fraction <= FLUSH_NOTE_FRACTION:
        return ""
    return (
        f"{fraction:.1%} of its nonzero weights quantize to zero: an outlier (|w| up to "
        f"{w.abs().max().item():.3g}) dominates its scale; FP8Config(skip=...) keeps the layer in its dtype"
    )


def _flushed(w: torch.Tensor, q: torch.Tensor) -> float:
    nonzero = w != 0
    zero = (q.view(torch.uint8) & 0x7F) == 0
    return (nonzero & zero).sum().item() / max(nonzero.sum().item(), 1)
