"""fp8pass.dequant: the CPU FP8 conversion must give ``.to()``'s bits for every FP8 pattern."""

import copy

import pytest
import torch
import torch.nn as nn
from torch._inductor.utils import run_and_get_code

import fp8pass
from fp8pass import dequant, ops
from fp8pass.quantize import dequantize_weight

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


@pytest.mark.inductor
def test_compiled_int_formulation_is_exact_and_vectorized():
    """One Inductor compile converting all 256 patterns of both formats to bf16, fp16 and fp32
    (each pattern repeated past one vector width, so the vector loop and its tail both run)."""
    weights = [_all_patterns(fmt).repeat(3).view(24, 32) for fmt in FORMATS]

    def convert(a, b):
        return [dequant.fp8_to(w, d) for w in (a, b) for d in TARGETS]

    outs, codes = run_and_get_code(torch.compile(convert, dynamic=False, fullgraph=True), *weights)
    refs = [w.to(d) for w in weights for d in TARGETS]
    for out, ref in zip(outs, refs, strict=True):
        _assert_same_bits(out, ref)
    code = "\n".join(codes)
    if "at::vec::" in code:  # a CPU without a vector ISA Inductor knows gets scalar code
        assert "at::vec::Vectorized<int32_t>" in code


def test_eager_and_other_devices_keep_to(monkeypatch):
    """Outside torch.compile the plain ``.to()`` (one ATen pass) is used; meta tensors too."""
    called = []
    monkeypatch.setattr(dequant, "fp8_to_int", lambda w, d: called.append(w) or w.to(d))
    w = _all_patterns(torch.float8_e4m3fn)
    _assert_same_bits(dequant.fp8_to(w, torch.bfloat16), w.to(torch.bfloat16))
    meta = torch.empty(64, 32, dtype=torch.float8_e4m3fn, device="meta")
    out = dequant.fp8_to(meta, torch.bfloat16)
    assert out.device.type == "meta" and out.shape == (64, 32) and out.dtype == torch.bfloat16
    assert called == []
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    dequant.fp8_to(w, torch.bfloat16)
    dequant.fp8_to(meta, torch.bfloat16)
    assert len(called) == 1 and torch.equal(called[0].view(torch.uint8), w.view(torch.uint8))


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
@pytest.mark.skipif(
    torch.__version__ < "2.13",
    reason="torch 2.11: torch.compiler.is_compiling() is False while AOT autograd traces the "
    "decomposition, so the cast path keeps .to() there (the same bits, without the speed-up)",
)
def test_compiled_cast_path_is_unchanged(monkeypatch):
    """fp8pass's compiled cast path (default config, Inductor) on a Linear + Conv2d model gives the
    same bits with the integer conversion as with the native ``.to()`` it replaced, and its
    decomposition did go through the integer conversion (caches off, so that AOT autograd traces)."""
    torch.manual_seed(0)
    model = _LinearConv().to(torch.bfloat16).requires_grad_(False)
    for w in (model.conv.weight, model.fc.weight):  # small entries: FP8 subnormals after scaling
        w[:, :16] *= torch.logspace(-1, -4, 16, dtype=w.dtype).view(1, 16, *[1] * (w.dim() - 2))
    x = torch.randn(2, 4, 16, 16, dtype=torch.bfloat16)
    traced = []
    real = dequant.fp8_to_int
    monkeypatch.setattr(dequant, "fp8_to_int", lambda w, d: traced.append(d) or real(w, d))

    def compiled_output():
        torch._dynamo.reset()
        be = fp8pass.FP8Backend(inner="inductor")
        with torch._inductor.config.patch(force_disable_caches=True), torch.no_grad():
            return torch.compile(copy.deepcopy(model), backend=be)(x)

    new = compiled_output()
    assert traced.count(torch.bfloat16) >= 2  # the conv and the linear (fake kernel and decomposition)
    traced.clear()
    monkeypatch.setattr(dequant, "uses_int_path", lambda w, d: False)
    old = compiled_output()
    assert traced == []
    assert torch.equal(new.view(torch.int16), old.view(torch.int16))
