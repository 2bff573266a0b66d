"""Property test: a converted linear layer matches the original within the FP8 error bound."""

import pytest
import torch

pytest.importorskip("hypothesis")  # a dev extra; a GPU machine running only the cuda tests may lack it

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fp8pass import ops
from fp8pass.quantize import dequantize_weight, quantize_weight

from .helpers import ROWWISE_CPU

F8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
ACT = {"bf16": torch.bfloat16, "fp32": torch.float32}


@settings(max_examples=80, deadline=None)
@given(
    m=st.integers(1, 6),
    k=st.sampled_from([16, 32, 48]),
    n=st.sampled_from([16, 32, 64]),
    fp8=st.sampled_from(list(F8)),
    granularity=st.sampled_from(["tensor", "channel"]),
    act=st.sampled_from(list(ACT)),
    compute=st.sampled_from(["cast", "scaled_mm"]),
    log_scale=st.floats(-3, 3),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_converted_linear_is_within_the_fp8_bound(
    m, k, n, fp8, granularity, act, compute, log_scale, bias, seed
):
    # the pass never plans scaled_mm for non-bf16 activations, nor per row where torch lacks it
    assume(compute == "cast" or (act == "bf16" and (granularity == "tensor" or ROWWISE_CPU)))
    g = torch.Generator().manual_seed(seed)
    dtype = ACT[act]
    # rows of very different magnitude, so per-channel and per-tensor scaling differ
    w = (torch.randn(n, k, generator=g) * 10**log_scale * torch.logspace(-2, 0, n).view(-1, 1)).to(dtype)
    x = torch.randn(m, k, generator=g).to(dtype)
    b = (torch.randn(n, generator=g) * 10**log_scale).to(dtype) if bias else None
    q, scale = quantize_weight(w, F8[fp8], granularity)
    op = ops.linear if compute == "cast" else ops.scaled_linear
    out = op(x, q, scale, b).double()

    x64, w64 = x.double(), w.double()
    deq = dequantize_weight(q, scale, torch.float64)
    ref = x64 @ w64.T + (b.double() if bias else 0)
    x_err = torch.zeros_like(x64)
    if compute == "scaled_mm":  # e4m3 activations, per row: relative 2^-4, or half a subnormal step
        a_scale = (
            x64.abs().amax(dim=-1, keepdim=True) / 448 if granularity == "channel" else x64.abs().amax() / 448
        )
        x_err = torch.maximum(x64.abs() * 2**-4, a_scale * 2**-10)
    bound = (
        x64.abs() @ (w64 - deq).abs().T  # weight rounding
        + x_err @ deq.abs().T  # activation rounding
        + 2**-7 * ((x64.abs() + x_err) @ deq.abs().T)  # rounding of the matmul output and of the result
        + 2**-8 * (b.double().abs() if bias else 0)
        + 1e-30
    )
    assert ((out - ref).abs() <= bound * 1.01).all()
