"""The compute paths a converted layer can run: one row per path, read by every path.

A :class:`Compute` says which op (:mod:`fp8pass.ops`) runs a converted layer of each kind
(:mod:`fp8pass.kinds`) and what stops it from running a given layer; the planner then falls back
to ``"cast"`` and notes why. ``FP8Config(compute=...)``, the command line, the sweep and the layer
benchmark take their choices from :data:`COMPUTES`; ``"auto"`` is resolved per layer by
:func:`resolve_auto`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import ops
from ._compat.matmul import rowwise_scaled_mm_supported
from ._compat.storage import local_tensor
from .kinds import KINDS, CallArgs

__all__ = ["AUTO", "COMPUTES", "CROSSOVERS", "Compute", "crossover_rows", "has_fp8_matmul", "resolve_auto"]

_fp8 = torch.ops.fp8pass

#: the compute name that picks a path per layer (see :func:`resolve_auto`)
AUTO = "auto"


@dataclass(frozen=True)
class Compute:
    """A way to run a converted layer.

    ``ops``: kind name -> the op. ``obstacle(kind, weight, call_args, activation_dtype, config)``:
    why this compute cannot run that layer (``""`` when it can). ``summary``: one line for
    ``--help`` and the docs.
    """

    name: str
    ops: dict[str, Any]  # kind name -> OpOverload
    obstacle: Callable[..., str]
    summary: str

    def math(self, kind: str) -> Callable[..., torch.Tensor]:
        """The plain-PyTorch implementation of this compute for ``kind`` (what Inductor compiles)."""
        return ops.DECOMPOSITIONS[self.ops[kind]]


def _cast_obstacle(*args: Any) -> str:
    return ""


def _scaled_mm_obstacle(
    kind: str, w: torch.Tensor, call_args: CallArgs, activation_dtype: torch.dtype | None, config: Any
) -> str:
    if not KINDS[kind].matmul:
        return f"an {kind} is a lookup, not a matmul"
    # the shapes the matmul sees: a sharded (DTensor) weight's local shard
    out_features, in_features = local_tensor(w).shape[:2]
    if kind == "conv":
        stride, padding, _, groups = call_args
        if any(k != 1 for k in w.shape[2:]) or any(s != 1 for s in stride) or any(padding) or groups != 1:
            return "only 1x1 convolutions (stride 1, no padding, one group) run as FP8 matmuls"
    if in_features % 16 or out_features % 16:
        return f"FP8 matmul needs in/out features divisible by 16, got {in_features}/{out_features}"
    if activation_dtype != torch.bfloat16:
        return f"FP8 matmul output is bfloat16 only; activation is {activation_dtype or 'unknown'}"
    if config.granularity == "channel" and not rowwise_scaled_mm_supported(w.device):
        return (
            f"torch {torch.__version__}'s _scaled_mm takes no per-row scales on {w.device.type}; "
            "FP8Config(granularity='tensor') runs FP8 matmuls there"
        )
    return ""


CAST = Compute(
    "cast",
    {"linear": _fp8.linear.default, "conv": _fp8.conv.default, "embedding": _fp8.embedding.default},
    _cast_obstacle,
    "FP8 storage; the weight is cast up to the activation dtype in front of the matmul",
)
SCALED_MM = Compute(
    "scaled_mm",
    {"linear": _fp8.scaled_linear.default, "conv": _fp8.scaled_conv.default},
    _scaled_mm_obstacle,
    "activations quantized per call, then an FP8 matmul (torch._scaled_mm; CPU too, slowly)",
)
COMPUTES: dict[str, Compute] = {c.name: c for c in (CAST, SCALED_MM)}


def has_fp8_matmul(device: torch.device) -> bool:
    """Whether ``device`` runs FP8 matmuls natively: CUDA with compute capability 8.9 (Ada) or newer."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


#: Measured per device: below how many rows (tokens) a GEMM of a given size runs faster on the cast
#: path than as an FP8 matmul (per-row activation quantization costs more than the FP8 matmul saves
#: while the GEMM is bandwidth-bound). Written by ``benchmarks/crossovers.py`` from a GPU run of it,
#: which the file names; empty until one is committed, and then ``"auto"`` picks the FP8 matmul for
#: every matmul on an FP8-capable GPU.
CROSSOVERS = Path(__file__).parent / "crossovers.json"


@functools.cache
def _crossovers() -> dict[str, list[dict[str, int]]]:
    return json.loads(CROSSOVERS.read_text())["devices"]


def _capability(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}.{minor}"


def crossover_rows(device: torch.device, k: int, n: int) -> int:
    """The fewest rows from which an FP8 matmul of a (K, N) weight beats the cast path on
    ``device``, from the measured table: the entry for the smallest measured K * N at or above
    this one (0 where the device or the size was not measured: no threshold)."""
    entries = _crossovers().get(_capability(device), [])
    fitting = [e for e in entries if e["max_kn"] >= k * n]
    return min(fitting, key=lambda e: e["max_kn"])["min_rows"] if fitting else 0


def resolve_auto(kind: str, weight: torch.Tensor, rows: int | None = None) -> tuple[str, str]:
    """What ``compute="auto"`` picks for one layer, and why when it is not the FP8 matmul:
    ``"scaled_mm"`` for a matmul whose weight lives on a device with native FP8 matmuls, unless
    the layer's GEMM has fewer ``rows`` than its measured crossover (:data:`CROSSOVERS`);
    ``"cast"`` elsewhere."""
    if not (KINDS[kind].matmul and has_fp8_matmul(weight.device)):
        return "cast", ""
    n, k = weight.shape[0], math.prod(weight.shape[1:])
    threshold = crossover_rows(weight.device, k, n)
    if rows is not None and rows < threshold:
        return "cast", (
            f"auto: {rows} rows, below this GPU's measured crossover ({threshold} rows for K={k}, N={n}): "
            "quantizing the activation would cost more than the FP8 matmul saves"
        )
    return "scaled_mm", ""
