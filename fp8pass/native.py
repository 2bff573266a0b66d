"""The CPU conversion kernel: ``fp8pass/csrc/fp8_convert.c``, compiled once per machine, called
through ctypes.

Why C and not ``torch.compile``: the kernel used to be fp8pass's integer formulation compiled by
Inductor at run time, a Dynamo frame nested inside the user's compiled model. Every call paid
Dynamo's guards (about 40 us at any size, the whole step on small layers), and the nested frame
recompiled when its input's dispatch keys changed, which the user's ``error_on_recompile`` and
recompile limits counted against their own model. A plain C function has neither cost, and its
loop, vectorized by the compiler, converts a weight about as fast as Inductor's kernel did.

The library is built with the system C compiler (``$CC``, else ``cc``) the first time a process
converts a CPU FP8 weight, into ``$FP8PASS_CACHE_DIR`` (default ``~/.cache/fp8pass``; a temporary
folder if that is not writable), under a name that hashes the source, the compiler and the flags,
written to a temporary file and renamed, so that concurrent processes never load a half-written
library. Without a working compiler, or with ``FP8PASS_NATIVE=0``, fp8pass says so once and
converts with torch's ``.to()``: the same bits, several times slower on a CPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "SOURCE",
    "Kernel",
    "cache_dir",
    "convert",
    "convert_scaled",
    "held_scaled_arguments",
    "kernel",
    "quantize",
]

log = logging.getLogger("fp8pass")

SOURCE = Path(__file__).parent / "csrc" / "fp8_convert.c"
ABI_VERSION = 4  # FP8PASS_ABI_VERSION in the source

#: kind = 3 * source + target, as the C source numbers them
_KINDS = {
    (src, dst): 3 * i + j
    for i, src in enumerate((torch.float8_e4m3fn, torch.float8_e5m2))
    for j, dst in enumerate((torch.bfloat16, torch.float16, torch.float32))
}

#: Below this many elements a conversion runs on the calling thread, holding the GIL: waking a
#: thread team costs more than it saves (measured on this project's 2-core machine: 2 threads win
#: from ~256K), and so does releasing the GIL for a call of a few microseconds.
MIN_PARALLEL = 1 << 18
_THREADS_SHIFT, _PER_ROW = 8, 1 << 3  # the flags argument, as fp8_convert.c reads it

#: Tried in order; the first the compiler accepts is used. ``FP8PASS_CLONES`` asks for one loop
#: body per x86 ISA (GCC's target_clones); ``-fopenmp`` lets a large conversion use torch's threads.
_FLAG_SETS = (
    ("-DFP8PASS_CLONES", "-fopenmp"),
    ("-fopenmp",),
    ("-DFP8PASS_CLONES",),
    (),
)
_BASE_FLAGS = ("-O3", "-std=c99", "-shared", "-fPIC")


@dataclass(frozen=True)
class Kernel:
    """The loaded library. The conversion entry points are bound twice: through ``ctypes.CDLL``,
    which releases the GIL for the call (large conversions, which may take milliseconds and run on
    OpenMP threads), and through ``ctypes.PyDLL``, which keeps it (small ones: cheaper to call)."""

    path: Path
    flags: tuple[str, ...]
    openmp: bool
    _convert: ctypes._CFuncPtr  # type: ignore[name-defined]
    _convert_scaled: ctypes._CFuncPtr  # type: ignore[name-defined]
    _convert_held: ctypes._CFuncPtr  # type: ignore[name-defined]
    _convert_scaled_held: ctypes._CFuncPtr  # type: ignore[name-defined]
    _quantize: ctypes._CFuncPtr  # type: ignore[name-defined]


def cache_dir() -> Path:
    """Where the compiled library lives: ``$FP8PASS_CACHE_DIR``, else ``$XDG_CACHE_HOME/fp8pass``,
    else ``~/.cache/fp8pass``."""
    if env := os.environ.get("FP8PASS_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fp8pass"


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(cc)
    exe = shutil.which(words[0]) if words else None
    if exe is None and words and words[0] != "cc":
        words, exe = ["cc"], shutil.which("cc")
    return [exe, *words[1:]] if exe else None


def _key(compiler: list[str], flags: tuple[str, ...]) -> str:
    """Names the build: the source, the compiler (its path, size and date stand for its version,
    so that a cached build costs no compiler run) and the flags."""
    st = os.stat(os.path.realpath(compiler[0]))
    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (*compiler, str(st.st_size), str(st.st_mtime_ns), *flags, platform.machine()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _build(compiler: list[str], flags: tuple[str, ...], folder: Path) -> Path | None:
    target = folder / f"fp8_convert-{_key(compiler, flags)}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fp8_convert-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        done = subprocess.run(
            [*compiler, *_BASE_FLAGS, *flags, str(SOURCE), "-o", tmp],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log.debug("fp8pass: %s %s failed:\n%s", compiler[0], " ".join(flags), done.stderr)
            return None
        os.replace(tmp, target)  # whole or not at all, whoever builds it at the same time
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bind(lib: ctypes.CDLL) -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]:  # type: ignore[name-defined]
    fn = lib.fp8pass_convert
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    scaled = lib.fp8pass_convert_scaled
    scaled.argtypes = [*(ctypes.c_void_p,) * 3, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    scaled.restype = ctypes.c_int
    return fn, scaled


def _load(path: Path, flags: tuple[str, ...]) -> Kernel | None:
    lib = ctypes.CDLL(str(path))
    if lib.fp8pass_abi_version() != ABI_VERSION:
        return None
    fn, scaled = _bind(lib)
    held, scaled_held = _bind(ctypes.PyDLL(str(path)))  # the same library, loaded once
    quantize_fn = lib.fp8pass_quantize
    quantize_fn.argtypes = [*(ctypes.c_void_p,) * 3, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    quantize_fn.restype = ctypes.c_int
    return Kernel(path, flags, bool(lib.fp8pass_has_openmp()), fn, scaled, held, scaled_held, quantize_fn)


_BUILDING = threading.Lock()


@functools.cache
def _kernel() -> Kernel | None:
    if os.environ.get("FP8PASS_NATIVE", "1") == "0":
        log.info("fp8pass: FP8PASS_NATIVE=0: CPU FP8 weights convert with torch's .to()")
        return None
    compiler = _compiler()
    if compiler is None:
        log.warning(
            "fp8pass: no C compiler found ($CC or cc): CPU FP8 weights convert with torch's .to(), "
            "the same bits but several times slower. Install gcc or clang, or set CC."
        )
        return None
    problems = []
    user = getattr(os, "getuid", lambda: "user")()
    for folder in (cache_dir() / "native", Path(tempfile.gettempdir()) / f"fp8pass-{user}" / "native"):
        try:
            for flags in _FLAG_SETS:
                path = _build(compiler, flags, folder)
                if path is not None and (found := _load(path, flags)) is not None:
                    log.debug("fp8pass: CPU conversion kernel %s (%s)", path, " ".join(flags) or "plain")
                    return found
            problems.append(
                f"{compiler[0]} could not build {SOURCE.name} (FP8PASS log level DEBUG shows why)"
            )
            break
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"{folder}: {e}")
    log.warning(
        "fp8pass: CPU FP8 weights convert with torch's .to() (the same bits, several times slower): %s",
        "; ".join(problems),
    )
    return None


def kernel() -> Kernel | None:
    """The loaded kernel, built on first use, or None (fp8pass then uses ``.to()``)."""
    global _LOADED
    with _BUILDING:
        found = _kernel()
    _LOADED = (found,)
    return found


_LOADED: tuple[Kernel | None] | None = None  # (kernel(),) once known: convert's fast path


def convert(weight: torch.Tensor, out: torch.Tensor) -> bool:
    """Writes ``weight.to(out.dtype)`` into ``out`` (both contiguous CPU tensors of one shape);
    False, writing nothing, when there is no kernel for it. Runs once per converted layer and
    step, so it is kept to a few Python operations."""
    k = _LOADED[0] if _LOADED is not None else kernel()
    kind = _KINDS.get((weight.dtype, out.dtype))
    if k is None or kind is None:
        return False
    n = weight.numel()
    if n >= MIN_PARALLEL:
        k._convert(weight.data_ptr(), out.data_ptr(), n, kind | torch.get_num_threads() << _THREADS_SHIFT)
    elif n:
        k._convert_held(weight.data_ptr(), out.data_ptr(), n, kind | 1 << _THREADS_SHIFT)
    return True


def _scaled_flags(rows: int, scale_numel: int, scale_dim: int) -> int | None:
    """The per-row bit for a scale of ``scale_numel`` elements on a weight of ``rows`` rows, or
    None for a scale that is neither one per row nor one in all."""
    if scale_dim and scale_numel == rows:
        return _PER_ROW
    return 0 if scale_numel == 1 else None


def convert_scaled(weight: torch.Tensor, scale: torch.Tensor, out: torch.Tensor) -> bool:
    """Writes ``(weight.float() * scale).to(out.dtype)`` into ``out``, bit for bit what torch
    gives: ``weight`` contiguous FP8 with its output channels along dim 0, ``scale`` one float32
    per channel (contiguous) or a single one. False, writing nothing, for anything else."""
    k = _LOADED[0] if _LOADED is not None else kernel()
    kind = _KINDS.get((weight.dtype, out.dtype))
    if k is None or kind is None or scale.dtype != torch.float32:
        return False
    n = weight.numel()
    rows = weight.shape[0] if weight.dim() else 1  # per tensor too: threads split rows
    per_row = _scaled_flags(rows, scale.numel(), scale.dim())
    if per_row is None:
        return False
    if not n:
        return True
    if n >= MIN_PARALLEL:
        fn, flags = k._convert_scaled, kind | per_row | torch.get_num_threads() << _THREADS_SHIFT
    else:
        fn, flags = k._convert_scaled_held, kind | per_row | 1 << _THREADS_SHIFT
    fn(weight.data_ptr(), scale.data_ptr(), out.data_ptr(), rows, n // rows, flags)
    return True


def held_scaled_arguments(
    shape: tuple[int, ...],
    src: torch.dtype,
    scale_shape: tuple[int, ...],
    scale_dtype: torch.dtype,
    dst: torch.dtype,
) -> tuple[int, int, int] | None:
    """``(rows, inner, flags)`` for :data:`convert_scaled_held` on a contiguous ``shape`` weight
    whose conversion runs on the calling thread (fewer than :data:`MIN_PARALLEL` elements), as
    :func:`convert_scaled` would pass them; None where it would not call the C loop so."""
    kind = _KINDS.get((src, dst))
    n = math.prod(shape)
    if kind is None or scale_dtype != torch.float32 or not 0 < n < MIN_PARALLEL or kernel() is None:
        return None
    rows = shape[0] if shape else 1
    per_row = _scaled_flags(rows, math.prod(scale_shape), len(scale_shape))
    return None if per_row is None else (rows, n // rows, kind | per_row | 1 << _THREADS_SHIFT)


_QUANTIZE_SOURCES = {torch.bfloat16: 0, torch.float32: 1}
_QUANTIZE_TARGETS = {torch.float8_e4m3fn: 0, torch.float8_e5m2: 2}


def quantize(
    weight: torch.Tensor, dtype: torch.dtype, per_row: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(q, scale)`` as :func:`fp8pass.quantize.quantize_weight` computes them with torch ops
    (absmax per output channel, dim 0, or of the whole weight), bit for bit, with a C loop over a
    contiguous bf16 or float32 CPU ``weight`` (one pass per row; two with a per-tensor scale); None, having done nothing, for anything else, and
    for a weight holding a NaN or an infinity (torch's ops decide what those become)."""
    src, dst = _QUANTIZE_SOURCES.get(weight.dtype), _QUANTIZE_TARGETS.get(dtype)
    if src is None or dst is None or type(weight) is not torch.Tensor or weight.device.type != "cpu":
        return None
    if not weight.is_contiguous() or weight.dim() < (2 if per_row else 1) or weight.numel() == 0:
        return None
    k = _LOADED[0] if _LOADED is not None else kernel()
    if k is None:
        return None
    rows = weight.shape[0]
    n = weight.numel()
    threads = torch.get_num_threads() if n >= MIN_PARALLEL else 1
    q = torch.empty(weight.shape, dtype=dtype)
    scale = torch.empty((rows,) if per_row else (), dtype=torch.float32)
    flags = src | dst | (_PER_ROW if per_row else 0) | threads << _THREADS_SHIFT
    if k._quantize(weight.data_ptr(), scale.data_ptr(), q.data_ptr(), rows, n // rows, flags) != 0:
        return None
    return q, scale


def _unavailable(*args: object) -> int:
    raise RuntimeError(
        "fp8pass: this compiled code calls fp8pass's C conversion kernel, which this process could not "
        "build (see fp8pass's warning); Inductor's cache holds code compiled where it could. Install a C "
        "compiler, or clear the cache (torch._inductor.utils.clear_inductor_caches, or delete "
        "$TORCHINDUCTOR_CACHE_DIR)."
    )


def __getattr__(name: str) -> object:
    """``convert_scaled_held``: the C loop's entry point that keeps the GIL, called with
    ``(weight_ptr, scale_ptr, out_ptr, rows, inner, flags)`` (:func:`held_scaled_arguments`) from
    Inductor's generated code (``fp8pass.dequant.DIRECT_CALLS``). Resolved on first import,
    building the library if needed."""
    if name == "convert_scaled_held":
        found = kernel()
        return _unavailable if found is None else found._convert_scaled_held
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
