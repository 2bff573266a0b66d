"""safetensors files one tensor at a time: a reader that checks a header completely before it
reads or allocates anything, and an atomic streaming writer.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a
JSON header mapping each name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an
optional ``"__metadata__"`` of strings), then the tensors' bytes. :func:`read_header` refuses
everything safetensors' own (Rust) loader refuses: a header longer than the file or than
:data:`MAX_HEADER_BYTES`, one that is not a JSON object starting with ``{``, duplicate names,
metadata that is not strings, an unknown dtype, a shape that is not a list of non-negative ints,
offsets that are not in order, contiguous from 0 and of exactly the tensor's byte size, and data
that does not end where the last tensor ends. Every refusal is a :class:`CheckpointError` naming
the file and the tensor.

:class:`SafetensorsWriter` writes to a temporary file next to the destination, then fsyncs and
renames it into place: the destination is the previous file or the complete new one, never a
truncated one (a killed convert, a full disk).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "CheckpointError",
    "Header",
    "SafetensorsWriter",
    "atomic_file",
    "read_header",
    "read_tensor",
]

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
_ITEMSIZE = {name: torch.empty((), dtype=d).element_size() for name, d in DTYPES.items()}

#: The longest header fp8pass reads: 16 MiB. safetensors' own loader allows 100 MB; a header
#: holds about 100 bytes per tensor, so 16 MiB is some 160,000 tensors, where the largest
#: diffusion checkpoints have a few thousand. Parsing and checking one takes about a second.
MAX_HEADER_BYTES = 16 * 2**20


class CheckpointError(ValueError):
    """A checkpoint fp8pass refuses to read (malformed, truncated, not the model's tensors) or a
    destination it refuses to write (it would destroy an input). The message names the file, and
    the tensor where one is at fault; nothing has been changed when it is raised."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


@dataclass(frozen=True)
class Header:
    """One file's tensors: name -> (dtype, shape), its metadata, and where each tensor's bytes
    start in the file."""

    path: Path
    tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]]
    metadata: dict[str, str]
    offsets: dict[str, int]


def read_header(path: str | Path) -> Header:
    """The header of a safetensors file, checked completely (see the module docstring) before
    anything else is read."""
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(path, "not a safetensors file: shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES:
            raise CheckpointError(
                path,
                f"not a safetensors file fp8pass reads: a header of {length} bytes, over fp8pass's "
                f"bound of {MAX_HEADER_BYTES} bytes",
            )
        if 8 + length > size:
            raise CheckpointError(
                path, f"truncated, or not a safetensors file: a header of {length} bytes in a file of {size}"
            )
        raw = f.read(length)
    header = _parse(path, raw)
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(path, "its __metadata__ is not a mapping of strings to strings")
    tensors, spans = {}, []
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(path, name, entry)
        tensors[name] = (DTYPES[dtype], shape)
        spans.append((begin, end, name))
    _check_layout(path, spans, size - 8 - length)
    offsets = {name: 8 + length + begin for begin, _, name in spans}
    return Header(path, tensors, metadata, offsets)


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    if not raw.startswith(b"{"):
        raise CheckpointError(path, "not a safetensors file: its header does not start with '{'")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(path, f"not a safetensors file: its header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file: its header is not a JSON object")
    return header


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the name {duplicate!r} appears twice")
    return found


def _entry(path: Path, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    """A tensor's ``(dtype name, shape, begin, end)``, each checked."""

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(path, f"tensor {name!r} {why}")

    if not isinstance(entry, dict):
        raise refuse("is not described by a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise refuse(f"has dtype {dtype!r}; fp8pass reads {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise refuse(f"has shape {shape!r}, not a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_natural(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise refuse(f"has data_offsets {offsets!r}, not [begin, end] with 0 <= begin <= end")
    begin, end = offsets
    nbytes = math.prod(shape) * _ITEMSIZE[dtype]
    if end - begin != nbytes:
        raise refuse(f"has {end - begin} bytes for shape {shape} of {dtype} ({nbytes} needed)")
    return dtype, tuple(shape), begin, end


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_layout(path: Path, spans: list[tuple[int, int, str]], data_bytes: int) -> None:
    """The tensors' bytes, in offset order, follow each other from 0 to the end of the file."""
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise CheckpointError(path, f"tensor {name!r} starts at byte {begin} of the data and {what}")
        if end > data_bytes:
            raise CheckpointError(
                path,
                f"the file is truncated: tensor {name!r} ends at byte {end} of the data, the file holds "
                f"{data_bytes}. Download it again.",
            )
        position = end
    if position < data_bytes:
        raise CheckpointError(
            path, f"{data_bytes - position} bytes follow the last tensor, which no tensor describes"
        )


def read_tensor(file: BinaryIO, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """One tensor read from an open file into memory of its own: no memory map, so that a loader
    converting a checkpoint tensor by tensor holds one tensor's original bytes at a time (a mapped
    file stays resident in the process, all 22 GiB of a bf16 Flux, until it is closed). The size
    comes from a checked header (:func:`read_header`): it lies inside the file."""
    t = torch.empty(shape, dtype=dtype)
    if t.numel():
        file.seek(offset)
        view = t.view(-1).view(torch.uint8).numpy()
        if file.readinto(view) != view.nbytes:
            raise CheckpointError(
                getattr(file, "name", "?"), f"truncated while reading a tensor at byte {offset}"
            )
    return t


# -- writing -------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """An open binary file that becomes ``path`` when the block ends without an exception: written
    as a temporary file in ``path``'s folder, fsynced, renamed over ``path`` (atomic on one file
    system), the folder fsynced. On an exception (or a kill) the temporary file goes and ``path``
    is as it was."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "is a folder; give a file name for the output")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every platform opens folders
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class SafetensorsWriter:
    """Write a safetensors file tensor by tensor, atomically (:func:`atomic_file`).

    The header goes first in the file but is written last, from the tensors actually written, into
    room reserved for it: ``reserve`` is an upper bound of its length (see :func:`header_room`),
    padded with spaces as the format allows. So a caller may still change its mind about a tensor
    (keep a layer whose weight turns out non-finite in its dtype) after writing began.

    Example:
        >>> with SafetensorsWriter(path, header_room([("w", torch.float8_e4m3fn, (4, 4))])) as out:  # doctest: +SKIP
        ...     out.write("w", q)
        ...     out.metadata = {"format": "x"}
    """

    def __init__(self, path: str | Path, reserve: int) -> None:
        self.path = Path(path)
        self.metadata: dict[str, str] = {}
        self._reserve = reserve + (-reserve % 8)  # the data starts 8-byte aligned
        self._entries: dict[str, dict[str, Any]] = {}
        self._offset = 0
        self._context: Any = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> SafetensorsWriter:
        self._context = atomic_file(self.path)
        self._file = self._context.__enter__()
        self._file.write(b"\0" * (8 + self._reserve))
        return self

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._entries:
            raise ValueError(f"SafetensorsWriter: {name!r} written twice to {self.path}")
        t = tensor.detach().to("cpu").contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        self._file.write(data)
        self._entries[name] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [self._offset, self._offset + len(data)],
        }
        self._offset += len(data)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            try:
                self._write_header()
            except BaseException as e:
                self._context.__exit__(type(e), e, e.__traceback__)
                raise
        return self._context.__exit__(exc_type, exc, tb)

    def _write_header(self) -> None:
        header = {"__metadata__": dict(self.metadata)} if self.metadata else {}
        raw = json.dumps({**header, **self._entries}, separators=(",", ":")).encode()
        if len(raw) > self._reserve:  # the caller's bound was wrong: no file is left behind
            raise ValueError(f"SafetensorsWriter: a header of {len(raw)} bytes, room for {self._reserve}")
        self._file.seek(0)
        self._file.write(struct.pack("<Q", self._reserve) + raw + b" " * (self._reserve - len(raw)))


def header_room(
    entries: list[tuple[str, torch.dtype, tuple[int, ...]]],
    metadata: dict[str, str] | None = None,
    slack: int = 0,
) -> int:
    """An upper bound of the header's length for these entries (every offset at its widest) and
    metadata, plus ``slack`` bytes."""
    widest = 10**20
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    for name, dtype, shape in entries:
        header[name] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [widest, widest]}
    return len(json.dumps(header, separators=(",", ":")).encode()) + slack
