"""FP8 -> bf16 / fp16 / fp32 conversion that is fast on the CPU and bit-exact with ``.to()``.

On a CPU, torch converts FP8 element by element through float32: ATen's copy kernel, and also
Inductor's generated ``.to()``, which calls ``at::vec::convert<BFloat16>`` on a
``Vectorized<Float8_e4m3fn>`` but finds no specialization for that pair and loops over elements
(benchmarks/cpu_fp8_convert_repro.py). That made the weight conversion a large part of the cast
path's time on a CPU. :func:`fp8_to` calls the op ``fp8pass::fp8_to_cpu`` instead, a C loop
(:mod:`fp8pass.native`) that does the conversion as integer arithmetic on the weight's bytes:
re-bias the exponent, shift the mantissa, normalize subnormals, put NaN and infinity where
``.to()`` puts them. The compiler vectorizes it; it runs about ten times faster than ``.to()``.

The op is opaque to ``torch.compile``: Inductor calls it once per weight, as a separate kernel.
That costs nothing at run time (on a CPU the conversion was never fused into oneDNN's matmul, only
written out before it) and keeps compile time flat: traced inline, the integer formulation
(:func:`fp8_to_int`, kept as the reference the tests check the C loop against) made Inductor
generate and compile one C++ kernel per distinct weight size, and SD1.5's cold compile went from
103 s to 197 s. CUDA converts FP8 in hardware (sm89+) and Inductor fuses the plain ``.to()`` into
its matmul prologue; meta tensors only need the right shape.

Every result must equal ``weight.to(dtype)`` bit for bit, NaN sign and payload included (the
tests compare all 256 patterns of both formats through an integer view). What ``.to()`` does with
NaN differs per target and was read off torch 2.11 and 2.13: bf16 gets the canonical ``0x7FC0``
whatever the sign; fp16 and fp32 keep the sign and the payload, quieted.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import native

__all__ = [
    "DIRECT_CALLS",
    "DirectCall",
    "FP8_DTYPES",
    "fp8_scaled_to",
    "fp8_scaled_to_cpu_kernel",
    "fp8_to_cpu_kernel",
    "fp8_to",
    "fp8_to_int",
    "fp8_to_table",
    "packable",
    "uses_native",
]


@dataclass(frozen=True)
class _Format:
    exp_bits: int
    mant_bits: int
    bias: int


_SOURCES = {
    torch.float8_e4m3fn: _Format(4, 3, 7),  # no infinity; NaN is S.1111.111 only
    torch.float8_e5m2: _Format(5, 2, 15),  # IEEE-like: infinity and NaN at exponent 31
}
_TARGETS = {
    torch.bfloat16: _Format(8, 7, 127),
    torch.float16: _Format(5, 10, 15),
    torch.float32: _Format(8, 23, 127),
}
FP8_DTYPES = frozenset(_SOURCES)


def uses_native(weight: Tensor, dtype: torch.dtype) -> bool:
    """Whether :func:`fp8_to` converts ``weight`` with ``fp8pass::fp8_to_cpu``: a CPU tensor (real,
    or fake while ``torch.compile`` traces) of a known pair of dtypes."""
    return weight.device.type == "cpu" and weight.dtype in _SOURCES and dtype in _TARGETS


def fp8_to(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """``weight.to(dtype)``, bit for bit: through ``fp8pass::fp8_to_cpu`` where :func:`uses_native`
    says so (see the module docstring), else the plain ``.to()``."""
    if not uses_native(weight, dtype):
        return weight.to(dtype)
    return torch.ops.fp8pass.fp8_to_cpu(weight, dtype)


def fp8_scaled_to(weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """``(weight.to(float32) * scale).to(dtype)`` with ``scale`` per output channel (dim 0) or one
    for the tensor, bit for bit: one pass of ``fp8pass::fp8_scaled_to_cpu`` where
    :func:`uses_native` says so, else those torch ops. On a CPU the cast path converts its weight
    this way, already scaled, so that the layer is the bf16 model's own matmul (bias included)
    with no kernel after it: the graph Inductor compiles is the bf16 graph plus one call per
    weight."""
    if not uses_native(weight, dtype) or scale.dtype != torch.float32:
        view = scale.view(-1, *[1] * (weight.dim() - 1)) if scale.dim() else scale
        return (fp8_to(weight, torch.float32) * view).to(dtype)
    return torch.ops.fp8pass.fp8_scaled_to_cpu(weight, scale, dtype)


# Defined with torch.library.Library rather than torch.library.custom_op: the op runs once per
# converted layer and step, and custom_op's Python dispatch costs about 30 us more per call
# (measured: 36 us against 6 us for a trivial body), the whole budget of a small layer.
_LIB = torch.library.Library("fp8pass", "FRAGMENT")
_LIB.define("fp8_to_cpu(Tensor weight, ScalarType dtype) -> Tensor")
_LIB.define("fp8_scaled_to_cpu(Tensor weight, Tensor scale, ScalarType dtype) -> Tensor")


def fp8_to_cpu_kernel(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """``fp8pass::fp8_to_cpu``'s CPU kernel, which Inductor's generated code also calls directly
    (:data:`DIRECT_CALLS`)."""
    weight = weight.contiguous()
    out = _output(weight, dtype)
    return out if native.convert(weight, out) else weight.to(dtype)


#: A converted weight of at least this many bytes is written into a block fp8pass keeps between
#: calls. glibc serves an allocation over 32 MiB (its largest mmap threshold) with a fresh mmap and
#: unmaps it on free, so every call paid a page fault per 4 KiB of the converted weight: on
#: flux-dev's full-width layers that was most of the cast path's cost on a CPU (1.18x compiled
#: bf16, 1.02x with glibc's mmap turned off; benchmarks/results/bench-flux-dev-512-3blocks-*).
POOL_MIN_BYTES = 8 << 20
_POOL_MIN_FP8_BYTES = POOL_MIN_BYTES // 4  # an FP8 weight this large converts to >= 2x its bytes
_POOL_PER_SIZE = 4  # blocks kept per size: Inductor frees a converted weight after its matmul
_POOL: dict[int, list[bytearray]] = {}
_POOL_LOCK = threading.Lock()


def _output(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """A new contiguous CPU tensor for the converted weight. A large one lives in a kept block
    that no tensor uses any more: ``torch.frombuffer`` holds a reference to the block for as long
    as any tensor or view of it lives, so a block whose reference count is back to the pool's own
    is free (no private torch API, no guess)."""
    if weight.nbytes < _POOL_MIN_FP8_BYTES:  # the common case first: one comparison
        return torch.empty_like(weight, dtype=dtype, memory_format=torch.contiguous_format)
    shape, nbytes = weight.shape, weight.numel() * dtype.itemsize
    if nbytes < POOL_MIN_BYTES:
        return torch.empty_like(weight, dtype=dtype, memory_format=torch.contiguous_format)
    with _POOL_LOCK:
        blocks = _POOL.setdefault(nbytes, [])
        block = next((b for b in blocks if sys.getrefcount(b) == _FREE_REFS), None)
        if block is None:
            if len(blocks) >= _POOL_PER_SIZE:
                return torch.empty_like(weight, dtype=dtype, memory_format=torch.contiguous_format)
            block = bytearray(nbytes)
            blocks.append(block)
        return torch.frombuffer(block, dtype=dtype).view(shape)


def _free_refs() -> int:
    """sys.getrefcount of a pooled block no tensor holds, as ``_output``'s loop sees it (the
    list, the loop variable, getrefcount's argument): measured once rather than assumed."""
    blocks = [bytearray(1)]
    return next(sys.getrefcount(b) for b in blocks)


_FREE_REFS = _free_refs()


def fp8_scaled_to_cpu_kernel(weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """``fp8pass::fp8_scaled_to_cpu``'s CPU kernel, which Inductor's generated code also calls
    directly for a weight too large for ``native.convert_scaled_held`` (:data:`DIRECT_CALLS`)."""
    weight, scale = weight.contiguous(), scale.contiguous()
    out = _output(weight, dtype)
    if native.convert_scaled(weight, scale, out):
        return out
    view = scale.view(-1, *[1] * (weight.dim() - 1)) if scale.dim() else scale
    return (weight.to(torch.float32) * view).to(dtype)


def _fp8_to_cpu_fake(weight: Tensor, dtype: torch.dtype) -> Tensor:
    return weight.new_empty(weight.shape, dtype=dtype)


def _fp8_scaled_to_cpu_fake(weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    return weight.new_empty(weight.shape, dtype=dtype)


_LIB.impl("fp8_to_cpu", fp8_to_cpu_kernel, "CPU")
_LIB.impl("fp8_scaled_to_cpu", fp8_scaled_to_cpu_kernel, "CPU")
torch.library.register_fake("fp8pass::fp8_to_cpu", _fp8_to_cpu_fake, lib=_LIB)
torch.library.register_fake("fp8pass::fp8_scaled_to_cpu", _fp8_scaled_to_cpu_fake, lib=_LIB)


@dataclass(frozen=True)
class DirectCall:
    """How Inductor's generated code calls an op without the dispatcher
    (``fp8pass._compat.inductor._call_directly``): ``function`` ("module.name") is the op's CPU
    kernel, called with the op's arguments; ``into``, given the tensor inputs' (shape, dtype) and
    the output dtype, may name a function ("module.name") and literal arguments to call instead
    with the inputs' data pointers, then a new contiguous output's, then the literals."""

    function: str
    into: (
        Callable[[list[tuple[tuple[int, ...], torch.dtype]], torch.dtype], tuple[str, tuple[int, ...]] | None]
        | None
    ) = None


def _scaled_into(
    inputs: list[tuple[tuple[int, ...], torch.dtype]], dtype: torch.dtype
) -> tuple[str, tuple[int, ...]] | None:
    """A conversion small enough to run on the calling thread calls the C loop straight from the
    generated code (``native.convert_scaled_held``, its arguments computed at compile time):
    what a small layer pays per step is then the output's allocation and one ctypes call."""
    (shape, src), (scale_shape, scale_dtype) = inputs
    found = native.held_scaled_arguments(shape, src, scale_shape, scale_dtype, dtype)
    return None if found is None else (f"{__package__}.native.convert_scaled_held", found)


#: The CPU kernels Inductor's generated code calls without the dispatcher: the round trip into a
#: Python kernel cost more than the conversion of a small weight itself.
DIRECT_CALLS = {
    torch.ops.fp8pass.fp8_to_cpu.default: DirectCall(f"{__name__}.fp8_to_cpu_kernel"),
    torch.ops.fp8pass.fp8_scaled_to_cpu.default: DirectCall(
        f"{__name__}.fp8_scaled_to_cpu_kernel", _scaled_into
    ),
}


def _nan_bits(sign: Tensor, src: torch.dtype, dst: torch.dtype, payload: Tensor) -> Tensor | int:
    """The bits ``.to()`` gives a NaN: bf16's canonical quiet NaN, or for fp16 / fp32 the sign and
    the source's mantissa left-aligned, with the quiet bit set (what c10's float path does)."""
    t = _TARGETS[dst]
    if dst == torch.bfloat16:
        return 0x7FC0
    s = _SOURCES[src]
    exp_all_ones = ((1 << t.exp_bits) - 1) << t.mant_bits
    quiet = 1 << (t.mant_bits - 1)
    return sign | exp_all_ones | quiet | (payload << (t.mant_bits - s.mant_bits))


def _bits(b: Tensor, src: torch.dtype, dst: torch.dtype) -> Tensor:
    """``dst``'s bits for the FP8 bytes ``b`` (int32, 0..255), as non-negative int32 (a 16-bit
    target's sign is bit 15, not the int32 sign)."""
    s, t = _SOURCES[src], _TARGETS[dst]
    width = 32 if dst == torch.float32 else 16
    sign = (b >> 7) << (width - 1)
    mag = b & 0x7F
    mant = b & ((1 << s.mant_bits) - 1)
    if src == torch.float8_e5m2 and dst == torch.float16:
        # e5m2 is fp16 with the low byte cut off: subnormals and infinity line up as they are.
        bits = mag << 8
    else:
        # Exponent and mantissa are adjacent in both formats: one shift puts them in place, one
        # add re-biases the exponent.
        normal = (mag << (t.mant_bits - s.mant_bits)) + ((t.bias - s.bias) << t.mant_bits)
        # A subnormal m * 2**(1 - bias - mant_bits) is normal in every other target. m (< 8) as a
        # float32 is exact and already normalized: take its exponent and mantissa, re-bias.
        m_bits = mant.to(torch.float32).view(torch.int32)
        offset = t.bias - 127 + 1 - s.bias - s.mant_bits
        subnormal = (m_bits >> (23 - t.mant_bits)) + (offset << t.mant_bits)
        bits = torch.where(mag < (1 << s.mant_bits), torch.where(mag == 0, 0, subnormal), normal)
        if src == torch.float8_e5m2:
            inf = ((1 << t.exp_bits) - 1) << t.mant_bits
            bits = torch.where(mag >= 0x7C, inf, bits)  # NaN is set below
    bits = bits | sign
    is_nan = mag == 0x7F if src == torch.float8_e4m3fn else mag > 0x7C
    return torch.where(is_nan, _nan_bits(sign, src, dst, mant), bits)


def packable(weight: Tensor) -> bool:
    """Whether ``weight``'s bytes can be read four at a time as int32: contiguous (a conv kernel's
    last dimension is often 3, so rows alone would not do), a multiple of four elements, aligned.
    Dynamo cannot trace ``storage_offset()``; what it traces here are whole parameters (offset 0),
    and AOT autograd, which runs the ops' decompositions, can."""
    return (
        weight.is_contiguous()
        and weight.numel() % 4 == 0
        and (torch.compiler.is_dynamo_compiling() or weight.storage_offset() % 4 == 0)
    )


def fp8_to_int(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """The integer formulation of ``weight.to(dtype)``, on any device (tests run it on CPU and meta).

    Inductor's CPU code generator vectorizes int32 and int64 arithmetic but not int16, and its
    vectorized float32 -> bfloat16 conversion turns every NaN into 0xFFFF where ``.to()`` gives
    0x7FC0, so a 16-bit result cannot be produced lane by lane: instead the weight is read as
    int32 (four FP8 bytes), each byte converted in int32, and the four 16-bit results packed into
    one int64, which is then viewed as four bf16 / fp16 values. A float32 result is int32 bits
    viewed as float32. A weight that cannot be read four bytes at a time (:func:`packable`) goes
    through float32 bits (exact for fp16, whose vectorized conversion keeps NaN payloads) or, for
    bf16, through ``.to()``.
    """
    src = weight.dtype
    if dtype == torch.float32:
        return _bits(weight.view(torch.uint8).to(torch.int32), src, dtype).view(dtype)
    if not packable(weight):
        if dtype == torch.float16:
            return fp8_to_int(weight, torch.float32).to(dtype)
        return weight.to(dtype)
    x = weight.reshape(-1).view(torch.int32)
    out = None
    for k in range(4):
        r = _bits((x >> (8 * k)) & 0xFF, src, dtype).to(torch.int64) << (16 * k)
        out = r if out is None else out | r
    return out.view(dtype).view(weight.shape)


def _table(src: torch.dtype, dst: torch.dtype, device: torch.device) -> Tensor:
    """All 256 results of ``.to()`` as non-negative int32 bits: a table indexed by the byte."""
    idx = torch.arange(256, dtype=torch.int32, device=device).to(torch.uint8).view(src)
    if dst == torch.float32:
        return idx.to(dst).view(torch.int32)
    return idx.to(dst).view(torch.int16).to(torch.int32) & 0xFFFF


def fp8_to_table(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """The lookup-table formulation: a gather from the 256 results ``.to()`` gives, packed four
    to an int64 for 16-bit targets as :func:`fp8_to_int` does. Not used by fp8pass, kept for
    benchmarks/cpu_dequant.py: compiled, Inductor gathers element by element and is slower than
    :func:`fp8_to_int`, and inlines the table's own ``.to()``, so its float32 table is not
    bit-exact for e4m3fn NaN."""
    table = _table(weight.dtype, dtype, weight.device)
    if dtype == torch.float32:
        return table[weight.view(torch.uint8).to(torch.int32)].view(dtype)
    if not packable(weight):
        return weight.to(dtype)
    x = weight.reshape(-1).view(torch.int32)
    out = None
    for k in range(4):
        r = table[(x >> (8 * k)) & 0xFF].to(torch.int64) << (16 * k)
        out = r if out is None else out | r
    return out.view(dtype).view(weight.shape)
