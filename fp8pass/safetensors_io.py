"""safetensors files one tensor at a time: a checked header reader and a streaming writer.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a
JSON header mapping each name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an
optional ``"__metadata__"`` of strings), then the tensors' bytes. :func:`read_header` checks that
every tensor lies inside the file (a truncated download fails here, naming the tensor and the
file, before anything is loaded); :class:`StreamWriter` writes the header first from the names,
dtypes and shapes, then each tensor as it comes, so that converting a checkpoint never holds more
than one tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["DTYPES", "Header", "StreamWriter", "read_header", "read_tensor"]

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class Header:
    """One file's tensors: name -> (dtype, shape), its metadata, and where each tensor's bytes
    start in the file."""

    path: Path
    tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]]
    metadata: dict[str, str]
    offsets: dict[str, int]


def read_header(path: str | Path) -> Header:
    """The header of a safetensors file, checked against the file's size."""
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", raw)
        if length > min(size - 8, _MAX_HEADER):
            raise ValueError(f"{path}: not a safetensors file, or truncated (header of {length} bytes)")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a safetensors file (its header is not JSON: {e})") from e
    metadata = header.pop("__metadata__", None) or {}
    tensors, offsets = {}, {}
    for name, entry in header.items():
        dtype = DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise ValueError(
                f"{path}: tensor '{name}' has dtype {entry.get('dtype')!r}, which fp8pass does not read"
            )
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(shape) * _itemsize(dtype):
            raise ValueError(f"{path}: tensor '{name}' has {end - begin} bytes for shape {list(shape)}")
        if 8 + length + end > size:
            raise ValueError(
                f"{path} is truncated: tensor '{name}' ends at byte {8 + length + end}, the file has {size}. "
                "Download it again."
            )
        tensors[name] = (dtype, shape)
        offsets[name] = 8 + length + begin
    return Header(path, tensors, metadata, offsets)


def read_tensor(file: BinaryIO, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """One tensor read from an open file into memory of its own: no memory map, so that a loader
    converting a checkpoint tensor by tensor holds one tensor's original bytes at a time (a mapped
    file stays resident in the process, all 22 GiB of a bf16 Flux, until it is closed)."""
    t = torch.empty(shape, dtype=dtype)
    if t.numel():
        file.seek(offset)
        view = t.view(-1).view(torch.uint8).numpy()
        if file.readinto(view) != view.nbytes:
            raise ValueError(
                f"{getattr(file, 'name', file)}: truncated while reading a tensor at byte {offset}"
            )
    return t


class StreamWriter:
    """Write a safetensors file tensor by tensor, in the order of ``entries`` (name, dtype, shape)
    given up front. Use as a context manager; every entry must be written exactly once.

    Example:
        >>> with StreamWriter(path, [("w", torch.float8_e4m3fn, (4, 4))], {"format": "x"}) as out:  # doctest: +SKIP
        ...     out.write("w", q)
    """

    def __init__(
        self,
        path: str | Path,
        entries: Iterable[tuple[str, torch.dtype, tuple[int, ...]]],
        metadata: dict[str, str],
    ) -> None:
        self.path = Path(path)
        self.entries = [(n, d, tuple(s)) for n, d, s in entries]
        header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for name, dtype, shape in self.entries:
            nbytes = math.prod(shape) * _itemsize(dtype)
            header[name] = {
                "dtype": _NAMES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
        self._header = struct.pack("<Q", len(raw)) + raw
        self._next = 0
        self._file = None

    def __enter__(self) -> StreamWriter:
        self._file = open(self.path, "wb")
        self._file.write(self._header)
        return self

    def write(self, name: str, tensor: torch.Tensor) -> None:
        expected = self.entries[self._next] if self._next < len(self.entries) else None
        if expected is None or expected[0] != name:
            raise ValueError(
                f"StreamWriter: '{name}' written out of order; expected {expected and expected[0]!r}"
            )
        _, dtype, shape = expected
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ValueError(
                f"StreamWriter: '{name}' is {tensor.dtype} {list(tensor.shape)}, expected {dtype} {list(shape)}"
            )
        t = tensor.detach().to("cpu").contiguous()
        self._file.write(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        self._next += 1

    def __exit__(self, *exc: Any) -> None:
        self._file.close()
        if exc[0] is None and self._next != len(self.entries):
            raise ValueError(
                f"StreamWriter: {len(self.entries) - self._next} tensors were not written to {self.path}"
            )


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
