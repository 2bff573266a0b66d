"""Files from the internet, mutated: a correct load or a CheckpointError naming the file, never a
crash, a hang, or a changed source. Hypothesis mutates valid safetensors files, fp8pass files and
sharded folders (bytes, header fields, offsets, metadata, shard names); each case is loaded
through the public loaders (``load_fp8`` into a meta skeleton, and ``convert``)."""

import hashlib
import json
import os
import shutil
import signal
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import fp8pass
from fp8pass import CheckpointError, FP8Config, load_fp8, save_fp8

BF16 = torch.bfloat16


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(64, 64)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(64, 64) for _ in range(2)])
        self.b = torch.nn.Linear(64, 16)


def _model():
    torch.manual_seed(0)
    return Small().to(BF16).requires_grad_(False)


def _skeleton():
    with torch.device("meta"):
        return Small().to(BF16)


@contextmanager
def _deadline(seconds=10):
    def fail(*_):
        raise TimeoutError(f"a load took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _digest(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _load_or_refuse(source, files):
    """load_fp8 of ``source`` gives a model whose tensors have the model's shapes, or a
    CheckpointError / FileNotFoundError; the source files do not change; it takes under 10 s."""
    before = _digest(files)
    skeleton = _skeleton()
    try:
        with _deadline():
            load_fp8(skeleton, source, config=FP8Config(min_weight_numel=0, keep_boundary=False))
    except (CheckpointError, FileNotFoundError) as e:
        assert str(Path(source).name) in str(e) or any(Path(f).name in str(e) for f in files), e
        assert all(p.is_meta for p in skeleton.parameters())  # the model did not change
    else:
        want = dict(_model().named_parameters())
        for name, p in skeleton.named_parameters():
            assert p.shape == want[name].shape and not p.is_meta
    assert _digest(files) == before


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _header_edit(draw, header):
    """One edit of a header: a field of a tensor entry, the metadata, or a tensor renamed / dropped."""
    names = sorted(header)
    name = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["offsets", "shape", "dtype", "field", "drop", "rename", "metadata"]))
    h = json.loads(json.dumps(header))
    if name == "__metadata__" or kind == "metadata":
        meta = h.setdefault("__metadata__", {})
        key = draw(st.sampled_from([*sorted(meta), "config", "dtypes", "aliases", "kept", "format"]))
        meta[key] = draw(st.one_of(st.text(max_size=20), _JSON.map(json.dumps)))
        return h
    entry = h[name]
    if kind == "offsets":
        i = draw(st.integers(0, 1))
        entry["data_offsets"][i] += draw(st.integers(-64, 64))
    elif kind == "shape" and entry["shape"]:
        i = draw(st.integers(0, len(entry["shape"]) - 1))
        entry["shape"][i] = draw(st.integers(-2, 200))
    elif kind == "dtype":
        entry["dtype"] = draw(
            st.sampled_from(["F32", "BF16", "F16", "F8_E4M3", "F8_E5M2", "I64", "U8", "F64", "X"])
        )
    elif kind == "field":
        entry[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(_JSON)
    elif kind == "drop":
        del h[name]
    else:
        h[name + draw(st.sampled_from([".x", "_", ".fp8", ".fp8_scale"]))] = h.pop(name)
    return h


def _valid_files(tmp_path):
    model = _model()
    save_fp8(model, tmp_path / "model-fp8.safetensors", FP8Config(min_weight_numel=0, keep_boundary=False))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model-bf16.safetensors")
    )
    return [tmp_path / "model-fp8.safetensors", tmp_path / "model-bf16.safetensors"]


_SETTINGS = settings(
    max_examples=int(os.environ.get("FP8PASS_FUZZ_EXAMPLES", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_SETTINGS
@given(data=st.data())
def test_mutated_headers_load_correctly_or_are_refused(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("h")
    source = data.draw(st.sampled_from(_valid_files(tmp)))
    header, body = _split(source.read_bytes())
    edited = data.draw(_header_edit(header))
    target = tmp / "mutated.safetensors"
    target.write_bytes(_join(edited, body))
    _load_or_refuse(target, [target])


@_SETTINGS
@given(data=st.data())
def test_mutated_bytes_and_truncations_load_correctly_or_are_refused(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("b")
    source = data.draw(st.sampled_from(_valid_files(tmp)))
    raw = bytearray(source.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    how = data.draw(st.sampled_from(["flip header byte", "flip length", "truncate", "append"]))
    if how == "flip header byte":
        i = data.draw(st.integers(8, 8 + n - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif how == "flip length":
        raw[data.draw(st.integers(0, 7))] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += bytes(data.draw(st.integers(1, 64)))
    target = tmp / "mutated.safetensors"
    target.write_bytes(bytes(raw))
    _load_or_refuse(target, [target])


@_SETTINGS
@given(data=st.data())
def test_mutated_sharded_folders_load_correctly_or_are_refused(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("f")
    outside = tmp / "outside.safetensors"
    save_file({"secret": torch.ones(2)}, str(outside))
    folder = tmp / "model"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in _model().state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for i, part in enumerate((keys[::2], keys[1::2])):
        name = f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {}, "weight_map": weight_map}
    how = data.draw(st.sampled_from(["escape", "absolute", "missing", "json", "shape"]))
    key = data.draw(st.sampled_from(keys))
    if how == "escape":
        index["weight_map"][key] = "../outside.safetensors"
    elif how == "absolute":
        index["weight_map"][key] = str(outside)
    elif how == "missing":
        index["weight_map"][key] = "nowhere.safetensors"
    elif how == "json":
        index = data.draw(_JSON)
    else:
        index["weight_map"] = data.draw(st.dictionaries(st.text(max_size=5), _JSON, max_size=3))
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    files = [*folder.iterdir(), outside]
    _load_or_refuse(folder, files)


def test_an_index_naming_a_shard_outside_its_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(tmp_path / "x.safetensors"))
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../x.safetensors"}})
    )
    with pytest.raises(
        CheckpointError, match=r"names the shard '\.\./x\.safetensors', which is not a file name"
    ):
        load_fp8(_skeleton(), folder)


def test_convert_of_a_mutated_file_writes_a_whole_file_or_nothing(tmp_path):
    """convert never leaves a half-written destination: a refusal leaves the previous file."""
    import diffusers

    model = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        sample_size=8,
        norm_num_groups=16,
    ).to(BF16)
    model.save_pretrained(tmp_path / "unet")
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    header, body = _split(weights.read_bytes())
    name = sorted(k for k in header if k != "__metadata__")[3]
    header[name]["data_offsets"][1] += 2
    weights.write_bytes(_join(header, body))
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous output")
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors: tensor"):
        fp8pass.convert(tmp_path / "unet", out)
    assert out.read_bytes() == b"previous output"
    assert not list(tmp_path.glob(".out.safetensors.*"))
    shutil.rmtree(tmp_path / "unet")


# -- each problem the issue found, probed in a fresh process: the clear error within 10 s, and the
# files involved byte-identical ---------------------------------------------------------------------

_PROBE = """
import sys, time, torch, fp8pass
sys.path.insert(0, {tests!r})
from test_untrusted_files import _skeleton
start = time.perf_counter()
try:
    {call}
except fp8pass.CheckpointError as e:
    print("REFUSED", time.perf_counter() - start, e)
else:
    print("LOADED", time.perf_counter() - start)
"""


def _probe(call: str, files: list[Path]) -> str:
    import subprocess
    import sys

    before = _digest(files)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(tests=str(Path(__file__).parent), call=call)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"the process ended with {done.returncode}: {done.stderr[-1500:]}"
    line = done.stdout.strip().splitlines()[-1]
    assert float(line.split()[1]) < 10, line
    assert _digest(files) == before
    return line


def _fp8_file(tmp_path, edit):
    save_fp8(_model(), tmp_path / "m.safetensors", FP8Config(min_weight_numel=0, keep_boundary=False))
    header, body = _split((tmp_path / "m.safetensors").read_bytes())
    edit(header)
    (tmp_path / "m.safetensors").write_bytes(_join(header, body))
    return tmp_path / "m.safetensors"


class Backtrack(torch.nn.Module):
    """A layer whose path, ``aaa...ab``, makes ``(a+)+$`` backtrack for minutes."""

    NAME = "a" * 32 + "b"

    def __init__(self):
        super().__init__()
        setattr(self, self.NAME, torch.nn.Linear(64, 64))
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(64, 64) for _ in range(2)])

    def forward(self, x):
        return self.blocks[1](self.blocks[0](getattr(self, self.NAME)(x)))


def test_probe_a_backtracking_skip_pattern_in_a_files_metadata_is_never_run(tmp_path):
    """A fp8pass file's metadata carried ``skip`` regexes that the loader compiled and the backend
    ran: one that backtracks catastrophically hung the first compiled call for minutes. The file's
    tensors are the plan; its patterns are never compiled."""
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_fp8(Backtrack().to(BF16), path, FP8Config(min_weight_numel=0, keep_boundary=False))
    header, body = _split(path.read_bytes())
    config = json.loads(header["__metadata__"]["config"])
    config["skip"] = ["(a+)+$"]
    header["__metadata__"]["config"] = json.dumps(config)
    path.write_bytes(_join(header, body))
    call = (
        "from test_untrusted_files import Backtrack\n"
        "    with torch.device('meta'): m = Backtrack().to(torch.bfloat16)\n"
        f"    cfg = fp8pass.load_fp8(m, {str(path)!r})\n"
        "    be = fp8pass.FP8Backend(cfg, inner='aot_eager')\n"
        "    with torch.no_grad(): torch.compile(m, backend=be)(torch.randn(2, 64, dtype=torch.bfloat16))\n"
        "    assert sum(r.converted for r in be.report()) == 3, be.report_table()"
    )
    assert _probe(call, [path]).startswith("LOADED")


def test_probe_a_bias_of_the_wrong_shape_in_an_fp8pass_file_is_refused(tmp_path):
    def wrong_bias(header):
        header["b.bias"]["shape"] = [8, 2]

    path = _fp8_file(tmp_path, wrong_bias)
    line = _probe(f"fp8pass.load_fp8(_skeleton(), {str(path)!r})", [path])
    assert line.startswith("REFUSED") and "m.safetensors: tensor 'b.bias' has shape [8, 2]" in line


def test_probe_negative_offsets_and_escaping_shards_are_refused(tmp_path):
    def negative(header):
        header["a.bias"]["data_offsets"] = [-128, 0]

    path = _fp8_file(tmp_path, negative)
    line = _probe(f"fp8pass.load_fp8(_skeleton(), {str(path)!r})", [path])
    assert line.startswith("REFUSED") and "tensor 'a.bias' has data_offsets [-128, 0]" in line
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a.weight": "../m.safetensors"}})
    )
    line = _probe(f"fp8pass.load_fp8(_skeleton(), {str(folder)!r})", [path])
    assert line.startswith("REFUSED") and "names the shard '../m.safetensors'" in line


def test_probe_arithmetic_on_a_released_weight_does_not_end_the_process(tmp_path):
    """``model.x.weight.sum()`` on a converted model read freed memory: SIGSEGV."""
    call = f"m = _skeleton(); fp8pass.load_fp8(m, {str(_fp8_file(tmp_path, lambda h: None))!r}); s = m.a.weight.sum(); assert torch.isfinite(s)"
    assert _probe(call, []).startswith("LOADED")
