"""The compute paths a converted layer can run: one row per path, read by every path.

A :class:`Compute` says which op (:mod:`fp8pass.ops`) runs a converted layer of each kind
(:mod:`fp8pass.kinds`) and what stops it from running a given layer; the planner then falls back
to ``"cast"`` and notes why. ``FP8Config(compute=...)``, the command line, the sweep and the layer
benchmark take their choices from :data:`COMPUTES`; ``"auto"`` is resolved per layer by
:func:`resolve_auto`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import ops
from ._compat.matmul import rowwise_scaled_mm_supported
from ._compat.storage import local_tensor
from .kinds import KINDS, CallArgs

__all__ = ["AUTO", "COMPUTES", "Compute", "has_fp8_matmul", "resolve_auto"]

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


def resolve_auto(kind: str, weight: torch.Tensor) -> str:
    """What ``compute="auto"`` picks for one layer: ``"scaled_mm"`` for a matmul whose weight
    lives on a device with native FP8 matmuls, ``"cast"`` elsewhere."""
    return "scaled_mm" if KINDS[kind].matmul and has_fp8_matmul(weight.device) else "cast"
