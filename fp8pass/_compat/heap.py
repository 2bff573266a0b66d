"""The C library's heap: give freed pages back to the system. Not torch's behaviour but glibc's;
checked on glibc 2.36 (Debian 12) with torch 2.13.0 and 2.11.0 (CPU).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


@functools.cache
def _glibc_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim(0)``; nothing
    elsewhere). Loading a checkpoint tensor by tensor frees each original after quantizing it, but
    glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in the heap, between
    the FP8 copies made meanwhile: without this, loading SD1.5 from bf16 held 1.62 GiB resident for
    0.80 GiB of FP8 weights. Not torch behaviour but the C library's; checked on glibc 2.36
    (Debian 12) with torch 2.13.0 and 2.11.0 (CPU)."""
    trim = _glibc_malloc_trim()
    if trim is not None:
        trim(0)
