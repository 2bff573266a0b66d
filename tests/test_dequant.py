"""fp8pass.dequant: the CPU FP8 conversion must give ``.to()``'s bits for every FP8 pattern."""

import copy

import pytest
import torch
import torch.nn as nn
from torch._inductor.utils import run_and_get_code

import fp8pass
from fp8pass import dequant, native, ops
from fp8pass.quantize import dequantize_weight, quantize_weight

from .helpers import conversion_calls, sqnr

FORMATS = [torch.float8_e4m3fn, torch.float8_e5m2]
TARGETS = [torch.bfloat16, torch.float16, torch.float32]


def _all_patterns(fmt: torch.dtype) -> torch.Tensor:
    return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(fmt)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def _assert_same_bits(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.dtype == ref.dtype and out.shape == ref.shape
    bad = (_bits(out) != _bits(ref)).nonzero().flatten().tolist()
    assert bad == [], [
        (i, hex(int(_bits(ref).flatten()[i])), hex(int(_bits(out).flatten()[i]))) for i in bad[:8]
    ]


@pytest.mark.parametrize("dtype", TARGETS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_int_formulation_matches_to_on_every_pattern(fmt, dtype):
    w = _all_patterns(fmt)
    # packed four bytes at a time (1-D, 2-D), and the fallbacks for rows that cannot be
    for case in (
        w,
        w.view(16, 16),
        w.view(4, 8, 8),
        w.view(32, 8)[:, :3].contiguous(),
        w[:255],
        w[1:],
        w.view(16, 16).t(),
    ):
        _assert_same_bits(dequant.fp8_to_int(case, dtype), case.to(dtype))


@pytest.mark.parametrize("dtype", TARGETS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_table_formulation_matches_to_on_every_pattern(fmt, dtype):
    w = _all_patterns(fmt).view(16, 16)
    _assert_same_bits(dequant.fp8_to_table(w, dtype), w.to(dtype))


def _lengths_and_layouts(w: torch.Tensor):
    """All 256 patterns in lengths around the vector widths (tails), unaligned starts,
    non-contiguous views, and one conversion large enough to be split over threads."""
    for n in (1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 255, 256):
        yield w[:n]
    yield w[1:]
    yield w.view(16, 16).t()
    yield w.view(16, 16)[:, ::3]
    yield w.repeat(3).view(24, 32)
    yield w.repeat(native.MIN_PARALLEL // 256 + 5)[3:]  # split over threads, ragged end


@pytest.mark.parametrize("dtype", TARGETS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_native_kernel_matches_to_on_every_pattern(fmt, dtype):
    assert native.kernel() is not None, "the C kernel did not build: see fp8pass.native"
    w = _all_patterns(fmt)
    for case in _lengths_and_layouts(w):
        _assert_same_bits(torch.ops.fp8pass.fp8_to_cpu(case, dtype), case.to(dtype))
        _assert_same_bits(dequant.fp8_to(case, dtype), case.to(dtype))
    empty = torch.empty(0, 8, dtype=fmt)
    assert torch.ops.fp8pass.fp8_to_cpu(empty, dtype).shape == (0, 8)


_EXTREMES = [
    0.0,
    -0.0,
    -1.5,
    2.0**-149,
    2.0**-126,
    2.0**-120,
    2.0**100,
    2.0**120,
    3e38,
    float("inf"),
    float("nan"),
]
SCALES = {
    "per channel": lambda rows: torch.logspace(-8, 3, rows),  # fp16 subnormals and overflow
    "per tensor": lambda rows: torch.tensor(0.37),
    # zero, negative, subnormal, huge (the vector loop's x256 must not overflow first), inf, NaN
    "extremes": lambda rows: torch.tensor(_EXTREMES).repeat(rows // len(_EXTREMES) + 1)[:rows],
}


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("dtype", TARGETS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_scaled_kernel_matches_torch_on_every_pattern(fmt, dtype, scale):
    """``fp8_scaled_to`` is ``(q.float() * scale).to(dtype)`` bit for bit, for every FP8 pattern in
    rows of several lengths (vector tails), split over threads or not. NaN patterns give NaN (the
    bits of a NaN's rounding differ between torch's own scalar and vector paths, and fp8pass never
    converts a weight holding NaN: it keeps such layers, see the report's reasons)."""
    w = _all_patterns(fmt)
    for case in (
        w.view(16, 16),
        w.view(64, 4),
        w.repeat(5).view(40, 32),
        w.view(16, 16)[:, 1:].contiguous(),
        w.view(16, 16).t(),
        w.repeat(4 * (native.MIN_PARALLEL // 1024 + 3)).view(-1, 1024)[:, 3:].contiguous(),
    ):
        s = SCALES[scale](case.shape[0]).float()
        ref = (case.float() * (s.view(-1, 1) if s.dim() else s)).to(dtype)
        out = dequant.fp8_scaled_to(case, s, dtype)
        assert out.shape == ref.shape and out.dtype == dtype
        nan = ref.isnan()
        assert torch.equal(out.isnan(), nan)
        _assert_same_bits(torch.where(nan, 0, out), torch.where(nan, 0, ref))


def test_cpu_goes_native_other_devices_keep_to(monkeypatch):
    """A CPU weight (eager or compiled) converts through the C kernel; a meta one keeps ``.to()``."""
    called = []
    real = native.convert
    monkeypatch.setattr(native, "convert", lambda w, out: called.append(w.shape) or real(w, out))
    w = _all_patterns(torch.float8_e4m3fn)
    _assert_same_bits(dequant.fp8_to(w, torch.bfloat16), w.to(torch.bfloat16))
    meta = torch.empty(64, 32, dtype=torch.float8_e4m3fn, device="meta")
    out = dequant.fp8_to(meta, torch.bfloat16)
    assert out.device.type == "meta" and out.shape == (64, 32) and out.dtype == torch.bfloat16
    assert called == [(256,)]


_PROBE = """
import logging, torch, fp8pass.dequant as d, fp8pass.native as n
logging.basicConfig(level=logging.WARNING, format="%(message)s")
w = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn)
for _ in range(3):
    out = torch.ops.fp8pass.fp8_to_cpu(w, torch.bfloat16)
assert torch.equal(out.view(torch.int16), w.to(torch.bfloat16).view(torch.int16))
print("KERNEL", n.kernel() is not None)
"""


def _probe(tmp_path, **env):
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, "FP8PASS_CACHE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_kernel_is_built_once_into_the_cache_folder(tmp_path):
    out, _ = _probe(tmp_path)
    assert "KERNEL True" in out
    built = sorted(p.name for p in (tmp_path / "native").iterdir())
    assert len(built) == 1 and built[0].startswith("fp8_convert-") and built[0].endswith(".so"), built
    stamp = (tmp_path / "native" / built[0]).stat().st_mtime_ns
    _probe(tmp_path)  # a second process loads it, builds nothing
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == built
    assert (tmp_path / "native" / built[0]).stat().st_mtime_ns == stamp


def test_without_a_working_compiler_conversion_falls_back_to_to_and_says_so(tmp_path):
    out, err = _probe(tmp_path, CC="false")
    assert "KERNEL False" in out
    assert err.count("convert with torch's .to()") == 1, err
    assert not list((tmp_path / "native").glob("*.so"))  # no half-built library left behind
    out, err = _probe(tmp_path, FP8PASS_NATIVE="0")
    assert "KERNEL False" in out and "convert with torch's .to()" not in err


def test_ops_on_meta_tensors():
    """The fake kernels (the same math functions) still give shapes on meta tensors."""
    x = torch.empty(2, 8, 64, dtype=torch.bfloat16, device="meta")
    q = torch.empty(32, 64, dtype=torch.float8_e4m3fn, device="meta")
    s = torch.empty(32, device="meta")
    assert ops.linear(x, q, s, None).shape == (2, 8, 32)
    xc = torch.empty(1, 64, 8, 8, dtype=torch.bfloat16, device="meta")
    qc = torch.empty(32, 64, 3, 3, dtype=torch.float8_e4m3fn, device="meta")
    assert ops.conv(xc, qc, s, None, [1, 1], [1, 1], [1, 1], 1).shape == (1, 32, 8, 8)
    assert dequantize_weight(q, s, torch.bfloat16).shape == (32, 64)


class _LinearConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(4, 64, 3, padding=1)
        self.conv = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, 128)
        self.proj_out = nn.Linear(128, 4)

    def forward(self, x):
        h = torch.nn.functional.silu(self.conv(self.conv_in(x)))
        return self.proj_out(self.fc(h.permute(0, 2, 3, 1)))


@pytest.mark.inductor
def test_compiled_cast_path_is_the_bf16_model_on_dequantized_weights(monkeypatch):
    """fp8pass's compiled cast path (default config, Inductor) on a Linear + Conv2d model: each
    weight goes through one scaled-conversion call, and the output is bit for bit what plain
    Inductor gives for the same model holding the dequantized weights (caches off, so that AOT
    autograd traces). The GPU-style graph (conversion, matmul, then scale) stays within FP8's
    fidelity of it."""
    torch.manual_seed(0)
    model = _LinearConv().to(torch.bfloat16).requires_grad_(False)
    for w in (model.conv.weight, model.fc.weight):  # small entries: FP8 subnormals after scaling
        w[:, :16] *= torch.logspace(-1, -4, 16, dtype=w.dtype).view(1, 16, *[1] * (w.dim() - 2))
    x = torch.randn(2, 4, 16, 16, dtype=torch.bfloat16)

    def compiled(m, backend):
        torch._dynamo.reset()
        with torch._inductor.config.patch(force_disable_caches=True), torch.no_grad():
            return run_and_get_code(torch.compile(m, backend=backend), x)

    be = fp8pass.FP8Backend(inner="inductor")
    new, codes = compiled(copy.deepcopy(model), be)
    converted = [r for r in be.report() if r.converted]
    assert len(converted) >= 2  # the 64-channel conv and fc (the boundary layers stay)
    assert len(conversion_calls("\n".join(codes))) == len(converted)
    reference = copy.deepcopy(model)
    for row in converted:
        layer = reference.get_submodule(row.name)
        q, scale = quantize_weight(layer.weight, torch.float8_e4m3fn, "channel")
        layer.weight.copy_(dequantize_weight(q, scale, torch.bfloat16))
    ref, _ = compiled(reference, "inductor")
    assert torch.equal(new.view(torch.int16), ref.view(torch.int16))
    monkeypatch.setattr(ops, "uses_native", lambda w, d: False)
    monkeypatch.setattr(dequant, "uses_native", lambda w, d: False)
    old, codes = compiled(copy.deepcopy(model), fp8pass.FP8Backend(inner="inductor"))
    assert "fp8pass.fp8_" not in "\n".join(codes)
    assert sqnr(ref, old) > 40
