"""Shared test helpers: the toy denoiser, SQNR, live-memory accounting."""

import copy
import gc
import warnings

import pytest
import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor

import fp8pass

BF16 = torch.bfloat16


from fp8pass.metrics import sqnr  # noqa: E402,F401  (re-exported for the tests)


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
        for p in self.parameters():
            nn.init.normal_(p, std=0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv.weight.dtype)
        h = torch.nn.functional.silu(self.conv(self.conv_in(x)))
        h = self.conv3d(h.unsqueeze(2)).squeeze(2) + h
        h = h.permute(0, 2, 3, 1)
        h = torch.nn.functional.gelu(self.fc1(h))
        h = self.fc2(h) + 0.5 * self.fc2_tied(h)
        return self.proj_out(h).permute(0, 3, 1, 2)


#: layers of ToyDenoiser the default config converts, and the distinct weights among them
TOY_CONVERTED = {"conv", "conv3d", "fc1", "fc2", "fc2_tied"}
TOY_CONVERTED_WEIGHTS = 4


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
ROWWISE_CPU = fp8pass._compat.rowwise_scaled_mm_supported(torch.device("cpu"))
needs_rowwise_cpu = pytest.mark.skipif(
    not ROWWISE_CPU, reason=f"torch {torch.__version__} has no per-row _scaled_mm on CPU"
)
