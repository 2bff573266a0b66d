"""Shared test helpers: the toy denoiser, SQNR, live-memory accounting."""

import copy
import gc
import os
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor

import fp8pass
from fp8pass._compat.matmul import rowwise_scaled_mm_supported
from fp8pass.bench import zoo

BF16 = torch.bfloat16


from fp8pass.metrics import sqnr as _sqnr  # noqa: E402


def sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    """fp8pass.metrics.sqnr; with FP8PASS_LOG_SQNR=path set, each value is also appended to that
    file with the test's id, which is how the tests' thresholds were measured."""
    value = _sqnr(ref, out)
    if log := os.environ.get("FP8PASS_LOG_SQNR"):
        with open(log, "a") as f:
            f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t{value:.2f}\n")
    return value


class ToyDenoiser(nn.Module):
    """Linear, conv2d, conv3d, a default-skipped input conv and output projection, a weight
    shared by two linears, and forward code that reads a weight's dtype (as Z-Image's does)."""

    def __init__(self, ch: int = 64, hidden: int = 128):
        super().__init__()
        self.conv_in = nn.Conv2d(4, ch, 3, padding=1)
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv3d = nn.Conv3d(ch, ch, (1, 3, 3), padding=(0, 1, 1))
        self.fc1 = nn.Linear(ch, hidden)
        self.fc2 = nn.Linear(hidden, ch)
        self.fc2_tied = nn.Linear(hidden, ch)
        self.fc2_tied.weight = self.fc2.weight
        self.proj_out = nn.Linear(ch, 4)
        # the zoo's checkpoint-like statistics (per-channel magnitudes, biases that matter), seeded
        # from torch's global generator so that torch.manual_seed picks the model
        zoo.init_weights(self, seed=int(torch.randint(2**31, (), device="cpu")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv.weight.dtype)
        h = torch.nn.functional.silu(self.conv(self.conv_in(x)))
        h = self.conv3d(h.unsqueeze(2)).squeeze(2) + h
        h = h.permute(0, 2, 3, 1)
        h = torch.nn.functional.gelu(self.fc1(h))
        h = self.fc2(h) + 0.5 * self.fc2_tied(h)
        return self.proj_out(h).permute(0, 3, 1, 2)


#: the ToyDenoiser's compiled FP8 output (default config) measures 44-47 dB against bf16; seeded bugs
#: (benchmarks/seeded_bugs.py) fall below, or are caught by assert_converted / fake_fp8_output
TOY_MIN_DB = 40

#: layers of ToyDenoiser the default config converts, and the distinct weights among them
TOY_CONVERTED = {"conv", "conv3d", "fc1", "fc2", "fc2_tied"}
TOY_CONVERTED_WEIGHTS = 4


def run(model: nn.Module, *args, **kwargs) -> torch.Tensor:
    """The model's output under ``torch.no_grad()``: a tensor, a tuple's first element, or a
    diffusers output's first field (``.sample``)."""
    with torch.no_grad():
        out = model(*args, **kwargs)
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "to_tuple"):
        return out.to_tuple()[0]
    return out


def bf16_reference(model: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return copy.deepcopy(model)(*inputs)


def live_cpu_tensor_bytes() -> int:
    """Bytes of the distinct CPU storages of every tensor the garbage collector can see."""
    gc.collect()
    storages = {}
    with warnings.catch_warnings():  # the scan touches deprecated objects (torch.distributed.reduce_op)
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
        tensors = [
            obj for obj in objects if isinstance(obj, torch.Tensor) and not isinstance(obj, FakeTensor)
        ]
    for obj in tensors:
        try:
            if obj.device.type != "cpu" or obj.is_meta:
                continue
            s = obj.untyped_storage()
            if s.nbytes():
                storages[s.data_ptr()] = s.nbytes()
        except Exception:  # fake and functional tensors have no data pointer
            continue
    return sum(storages.values())


def compile_fp8(model, config=None, inner="aot_eager", **compile_kwargs):
    be = fp8pass.FP8Backend(config or fp8pass.FP8Config(), inner=inner)
    return torch.compile(model, backend=be, **compile_kwargs), be


def cuda_only(test):
    """Marked ``cuda`` (``pytest -m cuda`` selects it, as benchmarks/gpu_suite.sh does) and skipped
    without a CUDA GPU."""
    return pytest.mark.cuda(
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test)
    )


#: torch 2.11's CPU _scaled_mm takes per-tensor scales only; 2.13's takes per-row scales too
ROWWISE_CPU = rowwise_scaled_mm_supported(torch.device("cpu"))
needs_rowwise_cpu = pytest.mark.skipif(
    not ROWWISE_CPU, reason=f"torch {torch.__version__} has no per-row _scaled_mm on CPU"
)


# -- what every conversion test asserts first -------------------------------------------------------


def assert_converted(be, model, expected=None, config=None):
    """The backend converted ``expected`` layers (by name; or at least one when None), stored
    their weights in the config's FP8 dtype and released the originals. Returns the converted rows."""
    from fp8pass import store

    config = config or be.config
    rows = [r for r in be.report() if r.converted]
    names = {r.name for r in rows}
    if expected is None:
        assert rows, "nothing was converted"
    else:
        assert names == set(expected), f"converted {sorted(names)}, expected {sorted(expected)}"
    params = dict(model.named_parameters(remove_duplicate=False))
    for r in rows:
        param = params[r.weight]
        stored = [e for e in store.entries(param)]
        assert stored and {e.q.dtype for e in stored} == {config.dtype}, f"{r.name}: stored as {stored}"
        if config.release_weights:
            assert param.untyped_storage().nbytes() == 0, f"{r.name}: original weight not released"
    return rows


# -- an independent FP8 reference --------------------------------------------------------------------


def _fp8_round_trip(t, dims, dtype=torch.float8_e4m3fn):
    """``(q, scale)`` with one absmax scale per slice over ``dims`` (all dims: per tensor)."""
    tf = t.float()
    amax = tf.abs().amax(dim=dims, keepdim=True) if dims else tf.abs().amax()
    limit = torch.finfo(dtype).max
    scale = amax.clamp(min=1e-12) / limit
    return (tf / scale).clamp(-limit, limit).to(dtype), scale


def fake_fp8_output(model, rows, inputs, config):
    """``model``'s output with each converted layer of ``rows`` computed eagerly from an FP8 copy
    of its weight made here, independently of fp8pass: on a CPU the weight times its scale in
    float32, rounded to the activation dtype, then the layer's own matmul or convolution with its
    bias; elsewhere the weight cast to the activation dtype, the matmul or convolution without
    bias, then ``* scale + bias`` in float32, rounded once; for
    ``scaled_mm`` rows the activation is quantized to e4m3 first (per row, or per tensor). This is
    the arithmetic fp8pass promises, so a correct build matches it closely; a wrong or merged
    scale, a dropped bias, another storage dtype or a silently different compute path does not.
    ``model`` must hold its original weights (run this on a copy taken before compiling)."""
    by_name = {r.name: r for r in rows}
    handles = []

    def hook(name):
        r = by_name[name]

        def forward(module, args, output):
            x = args[0]
            w = module.weight
            dims = tuple(range(1, w.dim())) if config.granularity == "channel" else ()
            q, s = _fp8_round_trip(w, dims, config.dtype)
            channel = (-1,) + (1,) * (w.dim() - 2)
            if r.compute == "scaled_mm":
                xl = x.movedim(1, -1) if w.dim() > 2 else x
                rowwise = config.granularity == "channel"
                xq, xs = _fp8_round_trip(xl, (-1,) if rowwise else ())
                y = (xq.float() @ q.float().flatten(1).t()) * xs * s.view(1, -1)
                if module.bias is not None:
                    y = y + module.bias.float()
                y = y.to(x.dtype)
                return y.movedim(-1, 1) if w.dim() > 2 else y
            if x.device.type == "cpu":  # the weight scaled before the matmul, the bias inside it
                wd = (q.float() * (s.reshape(-1, *[1] * (w.dim() - 1)) if s.numel() > 1 else s)).to(x.dtype)
                bias = None if module.bias is None else module.bias.to(x.dtype)
                return F.linear(x, wd, bias) if w.dim() == 2 else module._conv_forward(x, wd, bias)
            wq = q.to(x.dtype)
            y = F.linear(x, wq) if w.dim() == 2 else module._conv_forward(x, wq, None)
            y = y.float() * s.view(channel)
            if module.bias is not None:
                y = y + module.bias.float().view(channel)
            return y.to(x.dtype)

        return forward

    for name in by_name:
        handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return out[0] if isinstance(out, tuple) else out


_CONVERSION_CALLS = (
    # a small weight: the C loop called from the generated code, into an output it allocated
    r"\bfp8pass_convert_scaled_held\((\w+)\.data_ptr\(\), (\w+)\.data_ptr\(\), \w+\.data_ptr\(\), \d+, \d+, \d+\)",
    # a large one: the op's CPU kernel (threads, pooled output)
    r"\bfp8pass_fp8_scaled_to_cpu_kernel\((\w+), (\w+), torch\.\w+\)",
)


def conversion_calls(code: str) -> list[tuple[str, str]]:
    """The (weight, scale) argument names of every scaled FP8 conversion in Inductor's generated
    ``code``; fails if any conversion goes through torch's dispatcher or has another form."""
    import re

    wrapper = code[code.index("def call(") :] if "def call(" in code else code
    assert not re.search(r"torch\.ops\.fp8pass\.\w+\.default\(", wrapper), (
        "a conversion went through the dispatcher"
    )
    calls = [c for pattern in _CONVERSION_CALLS for c in re.findall(pattern, wrapper)]
    total = wrapper.count("fp8pass_convert_scaled_held(") + wrapper.count("fp8_scaled_to_cpu_kernel(")
    assert total == len(calls), f"{total} conversion calls, {len(calls)} of a known form"
    return calls
