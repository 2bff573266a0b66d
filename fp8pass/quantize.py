"""Weight -> (fp8, scale) and back: pure functions, per tensor or per output channel."""

from __future__ import annotations

import torch

__all__ = ["dequantize_weight", "fp8_max", "quantize_weight"]

# A scale never drops below this, so an all-zero weight quantizes to zeros instead of NaN.
_MIN_AMAX = 1e-12


def fp8_max(dtype: torch.dtype) -> float:
    """Largest finite value of an FP8 dtype (448 for e4m3fn, 57344 for e5m2)."""
    return float(torch.finfo(dtype).max)


def quantize_weight(
    weight: torch.Tensor, dtype: torch.dtype, granularity: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a linear or conv weight with symmetric absmax scaling.

    Returns ``(q, scale)``: ``q`` is contiguous, of ``weight``'s shape and ``dtype``; ``scale`` is
    float32, a 0-d tensor for ``"tensor"`` and of shape ``(out_channels,)`` for ``"channel"``, so
    that ``q.float() * scale`` (broadcast over dim 0) approximates ``weight``.

    Example:
        >>> q, s = quantize_weight(torch.randn(32, 16), torch.float8_e4m3fn, "channel")
        >>> q.dtype, s.shape
        (torch.float8_e4m3fn, torch.Size([32]))
    """
    w = weight.detach().float()
    if granularity == "tensor":
        amax = w.abs().amax()
    elif granularity == "channel":
        amax = w.abs().flatten(1).amax(dim=1)
    else:
        raise ValueError(f"granularity must be 'channel' or 'tensor'; got {granularity!r}")
    scale = amax.clamp(min=_MIN_AMAX) / fp8_max(dtype)
    limit = fp8_max(dtype)
    q = (w / _per_channel_view(scale, w.dim())).clamp(-limit, limit).to(dtype)
    return q.contiguous(), scale


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`quantize_weight`, in ``dtype``."""
    return (q.float() * _per_channel_view(scale, q.dim())).to(dtype)


def _per_channel_view(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    return scale.view(-1, *([1] * (ndim - 1))) if scale.dim() else scale
