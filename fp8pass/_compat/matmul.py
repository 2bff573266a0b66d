"""The FP8 matmul (``torch._scaled_mm``: private, and what Inductor lowers) and the symbolic-shape
questions the ops' math asks while tracing. Checked on torch 2.13.0 and 2.11.0 (CPU).
"""

from __future__ import annotations

import functools

import torch
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols, guard_or_false


def rowwise_scaled_mm_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` takes per-row / per-column scales on ``device``: tried once
    per device on a 16x16 problem. torch 2.11's CPU kernel takes per-tensor scales only; on CUDA it
    needs compute capability 8.9+. Checked on torch 2.13.0 (CPU: accepts) and 2.11.0 (CPU: refuses)."""
    device = torch.device(device)
    return _rowwise_probe(device.type, device.index)


@functools.cache
def _rowwise_probe(device_type: str, index: int | None) -> bool:
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    try:
        a = torch.ones(16, 16, device=device).to(torch.float8_e4m3fn)
        b = torch.ones(16, 16, device=device).to(torch.float8_e4m3fn).t()
        torch._scaled_mm(
            a,
            b,
            scale_a=torch.ones(16, 1, device=device),
            scale_b=torch.ones(1, 16, device=device),
            out_dtype=torch.bfloat16,
        )
    except (RuntimeError, NotImplementedError):
        return False
    return True


def known_empty(t: torch.Tensor) -> bool:
    """Whether ``t`` is certainly empty; ``False`` where its size is data-dependent and unknown
    while tracing (an unbacked symbol: HunyuanVideo FramePack's masked text tokens), instead of
    the error a plain ``t.numel() == 0`` raises there. ``guard_or_false`` lives in
    ``torch.fx.experimental``; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return guard_or_false(t.numel() == 0)


def data_dependent_rows(t: torch.Tensor) -> bool:
    """Whether ``t``'s first dimension is an unbacked symbol while tracing (a row count that
    depends on data, like HunyuanVideo FramePack's masked text tokens). torch's meta function for
    ``_scaled_mm`` asks whether the per-row activation scale has one element, which cannot be
    decided for such a count. ``free_unbacked_symbols`` lives in ``torch.fx.experimental``;
    checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return t.dim() > 0 and bool(free_unbacked_symbols(t.shape[0]))


def scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``(a * scale_a) @ (b * scale_b) + bias`` in ``out_dtype``, ``a`` row-major and ``b``
    column-major FP8, scales per tensor (0-d) or per row of ``a`` / column of ``b``.

    ``torch._scaled_mm`` is private. The public ``torch.nn.functional.scaled_mm`` exists in 2.11
    and 2.13, but calls ``aten._scaled_mm_v2``, which 2.11's Inductor has no lowering for (2.13's
    has): Inductor's FP8 matmul templates would be out of reach on 2.11. Inductor lowers
    ``aten._scaled_mm`` in both. Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out_dtype)
