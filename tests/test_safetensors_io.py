"""safetensors files from the internet: every malformed header is refused, before anything is read
or allocated, with a CheckpointError (a ValueError) naming the file and the tensor; writing is
atomic. The reference for what to refuse is safetensors' own Rust loader (safetensors/src/tensor.rs:
header length bounds, a JSON object starting with '{', string metadata, known dtypes, shapes of
non-negative ints, offsets in order, contiguous from 0, of exactly the tensor's size, covering
the data to its end)."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from fp8pass.safetensors_io import (
    MAX_HEADER_BYTES,
    CheckpointError,
    SafetensorsWriter,
    header_room,
    read_header,
)


def _file(path, header, data=b"", length=None, raw=None):
    body = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_a_file_safetensors_wrote_reads_back(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.zeros(0, 2), "d": torch.ones(())}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"k": "v"})
    header = read_header(tmp_path / "x.safetensors")
    assert header.metadata == {"k": "v"}
    assert {k: s for k, (_, s) in header.tensors.items()} == {k: tuple(v.shape) for k, v in tensors.items()}


# Each malformed header, as a user might download it: (name, header, data, what the error says).
_DATA8 = b"\0" * 8
MALFORMED = [
    ("negative offset", {"w": _entry(offsets=(-8, 0))}, _DATA8, r"'w' has data_offsets \[-8, 0\]"),
    ("offsets reversed", {"w": _entry(offsets=(8, 0))}, _DATA8, r"'w' has data_offsets \[8, 0\]"),
    ("float offsets", {"w": _entry(offsets=(0.0, 8.0))}, _DATA8, r"'w' has data_offsets"),
    (
        "one offset",
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}},
        _DATA8,
        r"'w' has data_offsets \[0\]",
    ),
    ("offsets missing", {"w": {"dtype": "F32", "shape": [2]}}, _DATA8, r"'w' has data_offsets None"),
    ("bool offsets", {"w": _entry(offsets=(False, True))}, _DATA8, r"'w' has data_offsets"),
    ("size mismatch", {"w": _entry(shape=(3,))}, _DATA8, r"'w' has 8 bytes for shape \[3\]"),
    ("negative dim", {"w": _entry(shape=(-2,))}, _DATA8, r"'w' has shape \[-2\]"),
    (
        "shape a string",
        {"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}},
        _DATA8,
        r"'w' has shape '2'",
    ),
    (
        "shape of floats",
        {"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}},
        _DATA8,
        r"'w' has shape",
    ),
    ("unknown dtype", {"w": _entry(dtype="F33")}, _DATA8, r"'w' has dtype 'F33'"),
    ("dtype not a string", {"w": _entry(dtype=4)}, _DATA8, r"'w' has dtype 4"),
    ("entry not an object", {"w": [1, 2]}, _DATA8, r"'w' is not described by a JSON object"),
    ("gap", {"w": _entry(offsets=(4, 12))}, b"\0" * 12, r"'w' starts at byte 4 .* leaves a gap"),
    (
        "overlap",
        {"w": _entry(offsets=(0, 8)), "v": _entry(offsets=(4, 12))},
        b"\0" * 12,
        r"'v' starts at byte 4 .* overlaps",
    ),
    ("beyond the file", {"w": _entry(offsets=(0, 8))}, b"\0" * 4, r"truncated: tensor 'w' ends at byte 8"),
    ("trailing bytes", {"w": _entry()}, b"\0" * 12, r"4 bytes follow the last tensor"),
    (
        "metadata not strings",
        {"__metadata__": {"a": 1}, "w": _entry()},
        _DATA8,
        r"__metadata__ is not a mapping",
    ),
    ("metadata a list", {"__metadata__": ["a"], "w": _entry()}, _DATA8, r"__metadata__ is not a mapping"),
    ("header a list", [1, 2], _DATA8, r"does not start with '\{'"),
]


@pytest.mark.parametrize("name,header,data,match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_headers_are_refused_naming_the_file_and_the_tensor(tmp_path, name, header, data, match):
    path = _file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: .*" + match):
        read_header(path)


@pytest.mark.parametrize(
    "raw,length,match",
    [
        (b"", 0, r"does not start with '\{'"),
        (b"{not json", None, r"not JSON"),
        (b'{"w": 1, "w": 2}', None, r"'w' appears twice"),
        (b"\xff\xfe{}", None, r"does not start with"),
        (b'{"w":' + b"\x80" + b"}", None, r"not JSON"),
        (b"{}\x00\x00", None, r"not JSON"),
        (b"{}", 10**9, r"a header of 1000000000 bytes, over fp8pass's bound"),
        (b"{}", 100, r"a header of 100 bytes in a file of"),
    ],
    ids=[
        "empty",
        "not json",
        "duplicate",
        "bom",
        "bad utf8",
        "nul padding",
        "huge length",
        "length beyond file",
    ],
)
def test_malformed_header_bytes_are_refused(tmp_path, raw, length, match):
    path = _file(tmp_path / "bad.safetensors", None, raw=raw, length=length)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: .*" + match):
        read_header(path)


def test_a_file_shorter_than_its_length_field(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\1\0")
    with pytest.raises(CheckpointError, match="shorter than its 8-byte header length"):
        read_header(tmp_path / "bad.safetensors")


def test_a_header_of_many_entries_is_checked_or_refused_quickly(tmp_path):
    """A header of 1.8M entries used to take 27 s and 1.9 GB before anything was refused: past the
    bound it is refused at once, and the largest header within the bound is checked in seconds."""
    entries = {f"t{i}": _entry(shape=(0,), offsets=(0, 0)) for i in range(1_800_000)}
    raw = json.dumps(entries).encode()
    assert len(raw) > MAX_HEADER_BYTES
    path = _file(tmp_path / "huge.safetensors", None, raw=raw)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="over fp8pass's bound"):
        read_header(path)
    assert time.perf_counter() - start < 1
    within = json.dumps(dict(list(entries.items())[: MAX_HEADER_BYTES // 60])).encode()[:MAX_HEADER_BYTES]
    within = within[: within.rfind(b"},") + 1] + b"}"
    path = _file(tmp_path / "big.safetensors", None, raw=within)
    start = time.perf_counter()
    header = read_header(path)
    assert len(header.tensors) > 200_000 and time.perf_counter() - start < 10


def test_the_writer_is_atomic_a_killed_write_leaves_the_previous_file(tmp_path):
    """A convert killed part-way (Ctrl-C, OOM killer, a full disk) used to leave a truncated file
    where the previous good one was."""
    path = tmp_path / "out.safetensors"
    save_file({"old": torch.ones(4)}, str(path))
    before = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITE, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert path.read_bytes() == before  # a killed writer leaves only its hidden temporary file
    for leftover in tmp_path.glob(".out.safetensors.*.tmp"):
        leftover.unlink()
    # an exception (rather than a kill) removes the temporary file too
    with pytest.raises(ZeroDivisionError):
        with SafetensorsWriter(path, header_room([("w", torch.float32, (4,))])) as out:
            out.write("w", torch.zeros(4))
            raise ZeroDivisionError("a failure while writing")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]


_SLOW_WRITE = """
import sys, time, torch
from fp8pass.safetensors_io import SafetensorsWriter, header_room
entries = [(f"t{i}", torch.float32, (1024,)) for i in range(1000)]
with SafetensorsWriter(sys.argv[1], header_room(entries)) as out:
    for i in range(1000):
        out.write(f"t{i}", torch.zeros(1024))
        if i == 10:
            print("writing", flush=True)
            time.sleep(60)
"""


def test_writes_read_back_with_safetensors_own_loader(tmp_path):
    from safetensors.torch import load_file

    tensors = {"q": torch.randn(8, 16).to(torch.float8_e4m3fn), "s": torch.rand(8), "b": torch.arange(3)}
    room = header_room([(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()], {"format": "x"})
    with SafetensorsWriter(tmp_path / "w.safetensors", room) as out:
        for k, v in tensors.items():
            out.write(k, v)
        out.metadata = {"format": "x"}
    back = load_file(str(tmp_path / "w.safetensors"))
    for k, v in tensors.items():
        assert torch.equal(back[k].view(torch.uint8), v.view(torch.uint8))
    assert read_header(tmp_path / "w.safetensors").metadata == {"format": "x"}
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_a_folder_is_not_a_destination(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        with SafetensorsWriter(tmp_path, 16):
            pass
    assert os.listdir(tmp_path) == []
