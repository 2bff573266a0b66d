"""Minimal reproduction (torch only) for an upstream report: FP8 -> bfloat16 on the CPU.

1. Inductor's CPU kernel for ``w.to(torch.bfloat16)`` with ``w`` float8_e4m3fn. On torch 2.13 it
   *looks* vectorized (``at::vec::convert<at::BFloat16>(Vectorized<Float8_e4m3fn>)``), but
   ATen/cpu/vec/vec512/vec512_convert.h specializes ``VecConvert`` for Float8 <-> float only, not
   Float8 -> BFloat16 / Half, so that call takes the generic ``VecConvert`` of vec_convert.h: an
   element-by-element loop through c10's scalar conversion. Printed: the kernel.
2. Its speed against ATen's ``.to()`` and against the same conversion written as integer ops
   (bit-exact with ``.to()``, NaN included), which Inductor vectorizes as int32 / int64.
3. Why the integer version has to pack four results into an int64: int16 is not in Inductor's
   vectorizable dtypes, and the vectorized float32 -> bfloat16 conversion maps NaN to 0xFFFF where
   the scalar one (and ``.to()`` from FP8) gives 0x7FC0. Both are shown.

    OMP_NUM_THREADS=2 python benchmarks/cpu_fp8_convert_repro.py
"""

import statistics
import time

import torch
from torch._inductor.utils import run_and_get_code


def int_convert(w: torch.Tensor) -> torch.Tensor:
    """e4m3fn -> bfloat16 with integer ops, four bytes at a time (w contiguous, numel % 4 == 0)."""
    x = w.reshape(-1).view(torch.int32)
    out = None
    for k in range(4):
        b = (x >> (8 * k)) & 0xFF
        sign = (b >> 7) << 15
        exp = (b >> 3) & 0xF
        mant = b & 7
        normal = ((exp + 120) << 7) | (mant << 4)
        p = (mant >= 2).to(torch.int32) + (mant >= 4).to(torch.int32)  # subnormal: m's leading bit
        sub = ((p + 118) << 7) | (((mant << 4) << (3 - p)) & 0x7F)
        bits = torch.where(exp == 0, torch.where(mant == 0, 0, sub), normal) | sign
        bits = torch.where((b & 0x7F) == 0x7F, 0x7FC0, bits)  # NaN: what .to() gives
        r = bits.to(torch.int64) << (16 * k)
        out = r if out is None else out | r
    return out.view(torch.bfloat16).view(w.shape)


def kernel_source(code: str) -> str:
    start = code.index('extern "C"')
    return code[start : code.index("'''", start)]


def timed(fn, w, repeats=7):
    fn(w)
    fn(w)
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(w)
        t.append(time.perf_counter() - t0)
    return statistics.median(t), min(t), max(t)


def main():
    print("torch", torch.__version__, "threads", torch.get_num_threads())
    patterns = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).repeat(4)
    inductor_to = torch.compile(lambda w: w.to(torch.bfloat16), dynamic=False)
    out, (code,) = run_and_get_code(inductor_to, patterns)
    print("\n--- Inductor's kernel for float8_e4m3fn.to(bfloat16) ---\n" + kernel_source(code))

    inductor_int = torch.compile(int_convert, dynamic=False)
    out, (code,) = run_and_get_code(inductor_int, patterns)
    ref = patterns.to(torch.bfloat16).view(torch.int16)
    print("integer version bit-exact on all 256 patterns:", torch.equal(out.view(torch.int16), ref))
    print("integer version kernel vectorized:", "at::vec::Vectorized<int32_t>" in code)

    nan = torch.tensor([float("nan")] * 64)
    vec = torch.compile(lambda f: f.to(torch.bfloat16), dynamic=False)(nan).view(torch.int16)[0].item()
    scalar = torch.tensor(float("nan")).to(torch.bfloat16).view(torch.int16).item()
    fp8_nan = patterns[127:128].to(torch.bfloat16).view(torch.int16).item()
    print(
        f"float32 NaN -> bf16: vectorized 0x{vec & 0xFFFF:04X}, scalar 0x{scalar & 0xFFFF:04X}; "
        f"float8_e4m3fn NaN .to(bf16): 0x{fp8_nan & 0xFFFF:04X}"
    )

    for n in (16 * 2**20, 64 * 2**20):
        w = (torch.randn(n) * 0.1).to(torch.float8_e4m3fn)
        assert torch.equal(inductor_int(w).view(torch.int16), w.to(torch.bfloat16).view(torch.int16))
        aten = timed(lambda w: w.to(torch.bfloat16), w)
        for name, fn in (
            ("aten .to", lambda w: w.to(torch.bfloat16)),
            ("inductor .to", inductor_to),
            ("inductor int", inductor_int),
        ):
            med, lo, hi = timed(fn, w)
            print(
                f"{n:>9} elements  {name:13s} {n / med / 1e9:.3f} G el/s (min..max {n / hi / 1e9:.3f}..{n / lo / 1e9:.3f})"
                f"  x{aten[0] / med:.2f} vs aten"
            )


if __name__ == "__main__":
    main()
