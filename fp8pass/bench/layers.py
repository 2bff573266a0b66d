"""Layer micro-benchmark: bf16 vs FP8 cast vs FP8 scaled_mm at the real layer shapes of a zoo model.

Shapes come from one forward of the full-size model on the ``meta`` device (no memory, no compute)
with hooks that record each linear's (M, K, N) and each convolution's input and weight shapes.
Each shape is timed as three functions, compiled the same way: ``F.linear`` / ``F.conv*`` on bf16
weights, and fp8pass's cast and scaled_mm decompositions on FP8 weights (what Inductor compiles).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .._compat.matmul import rowwise_scaled_mm_supported
from ..computes import COMPUTES
from ..quantize import quantize_weight
from . import zoo
from .variants import draw_progress, resolve_device, time_ms

__all__ = [
    "LayerShape",
    "format_layer_results",
    "layer_functions",
    "layer_shapes",
    "median_ms",
    "run_layer_benchmark",
]

_CONV_FNS = {4: F.conv2d, 5: F.conv3d}


@dataclass(frozen=True)
class LayerShape:
    kind: str  # "linear" or "conv"
    x: tuple[int, ...]
    w: tuple[int, ...]
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    groups: int = 1

    @property
    def mkn(self) -> tuple[int, int, int]:
        """Rows, reduction size and output features of the equivalent matmul."""
        if self.kind == "linear":
            return math.prod(self.x[:-1]), self.w[1], self.w[0]
        spatial = [
            (i + 2 * p - k) // s + 1
            for i, p, k, s in zip(self.x[2:], self.padding, self.w[2:], self.stride, strict=True)
        ]
        return self.x[0] * math.prod(spatial), math.prod(self.w[1:]), self.w[0]


def layer_shapes(model_name: str) -> Counter[LayerShape]:
    """Every distinct linear / conv shape of ``model_name`` at its real input shape, with counts."""
    model = zoo.build_model(model_name, "meta")
    inputs = zoo.build_inputs(model_name, "meta")
    found: Counter[LayerShape] = Counter()

    def record(module: torch.nn.Module, args: tuple, out: Any) -> None:
        x, w = tuple(args[0].shape), tuple(module.weight.shape)
        if isinstance(module, torch.nn.Linear):
            found[LayerShape("linear", x, w)] += 1
        elif module.padding != "same":
            found[LayerShape("conv", x, w, tuple(module.stride), tuple(module.padding), module.groups)] += 1

    layers = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d)
    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, layers)]
    with torch.no_grad():
        model(**inputs)
    for h in handles:
        h.remove()
    return found


def layer_functions(shape: LayerShape, device: torch.device) -> dict[str, tuple[Any, tuple]]:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape.x, generator=g, device=device).to(torch.bfloat16)
    w = (torch.randn(shape.w, generator=g, device=device) * 0.02).to(torch.bfloat16)
    q, scale = quantize_weight(w, torch.float8_e4m3fn, "channel")
    rowwise = rowwise_scaled_mm_supported(device)  # per-row FP8 matmuls (not on torch 2.11's CPU)
    if shape.kind == "linear":
        fns = {
            "bf16": (F.linear, (x, w)),
            "fp8 cast": (COMPUTES["cast"].math("linear"), (x, q, scale, None)),
        }
        if all(d % 16 == 0 for d in shape.w) and rowwise:
            fns["fp8 scaled_mm"] = (COMPUTES["scaled_mm"].math("linear"), (x, q, scale, None))
        return fns
    conv = _CONV_FNS[len(shape.w)]
    args = (list(shape.stride), list(shape.padding), [1] * (len(shape.w) - 2), shape.groups)
    cast, scaled = COMPUTES["cast"].math("conv"), COMPUTES["scaled_mm"].math("conv")
    fns = {
        "bf16": (lambda x, w: conv(x, w, None, *args), (x, w)),
        "fp8 cast": (lambda x, q, s: cast(x, q, s, None, *args), (x, q, scale)),
    }
    one_by_one = all(k == 1 for k in shape.w[2:]) and not any(shape.padding) and set(shape.stride) == {1}
    if one_by_one and shape.groups == 1 and shape.w[0] % 16 == 0 and shape.w[1] % 16 == 0 and rowwise:
        fns["fp8 scaled_mm"] = (lambda x, q, s: scaled(x, q, s, None, *args), (x, q, scale))
    return fns


def median_ms(fn, args, device: torch.device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn(*args)
    return statistics.median(time_ms(lambda: fn(*args), device, steps))


def run_layer_benchmark(
    model_name: str,
    device: str = "auto",
    mode: str | None = None,
    max_m: int | None = None,
    steps: int = 20,
    warmup: int = 5,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Time every distinct layer shape (or those with at most ``max_m`` rows). Each function is
    compiled with ``torch.compile(mode=mode)`` (max-autotune by default on CUDA), one shape at a
    time; ``progress`` draws a bar on stderr."""
    dev = resolve_device(device)
    mode = mode if mode is not None else ("max-autotune" if dev.type == "cuda" else None)
    rows = []
    shapes = sorted(layer_shapes(model_name).items(), key=lambda kv: kv[0].mkn)
    shapes = [(shape, count) for shape, count in shapes if max_m is None or shape.mkn[0] <= max_m]
    for i, (shape, count) in enumerate(shapes):
        m, k, n = shape.mkn
        if progress:
            draw_progress(i, len(shapes), f"{shape.kind} M={m} K={k} N={n}")
        row: dict[str, Any] = {
            "kind": shape.kind,
            "M": m,
            "K": k,
            "N": n,
            "layers": count,
            "x": shape.x,
            "w": shape.w,
        }
        with torch.no_grad():
            for label, (fn, args) in layer_functions(shape, dev).items():
                torch._dynamo.reset()
                try:
                    row[f"{label} ms"] = median_ms(
                        torch.compile(fn, mode=mode, dynamic=False), args, dev, steps, warmup
                    )
                except Exception as e:
                    row[f"{label} ms"] = None
                    row[f"{label} error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows.append(row)
    if progress:
        draw_progress(len(shapes), len(shapes), "done")
    return rows


def format_layer_results(rows: list[dict[str, Any]], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    def ratio(row: dict[str, Any], label: str) -> str:
        t, base = row.get(f"{label} ms"), row.get("bf16 ms")
        return f"{t / base:.2f}" if t and base else "-"

    def ms(x: float | None) -> str:
        return f"{x:.3f}" if x is not None else "-"

    table = [
        [
            r["kind"],
            r["M"],
            r["K"],
            r["N"],
            r["layers"],
            ms(r.get("bf16 ms")),
            ms(r.get("fp8 cast ms")),
            ratio(r, "fp8 cast"),
            ms(r.get("fp8 scaled_mm ms")),
            ratio(r, "fp8 scaled_mm"),
        ]
        for r in rows
    ]
    headers = list(LAYER_COLUMNS)
    footer = "\n".join(f"  {name}: {meaning}" for name, meaning in LAYER_COLUMNS.items())
    return tabulate(table, headers=headers, tablefmt=tablefmt) + "\nColumns:\n" + footer


LAYER_COLUMNS = {
    "kind": "linear, or conv (its matmul view below)",
    "M": "rows of the equivalent matmul (tokens; batch x output pixels for a convolution)",
    "K": "reduction size (in features; in channels x kernel for a convolution)",
    "N": "output features / channels",
    "layers": "how many layers of the model have this shape",
    "bf16 ms": "the bf16 layer, compiled: median of the timed calls after warm-up",
    "fp8 cast ms": "fp8pass's cast path on the FP8 weight (cast + matmul + scale), compiled the same way",
    "cast time vs bf16": "fp8 cast ms / bf16 ms: below 1.00 is faster (the bench's convention too)",
    "scaled_mm ms": "fp8pass's scaled_mm path (activation quantized per call + FP8 matmul)",
    "scaled_mm time vs bf16": "scaled_mm ms / bf16 ms; '-' where the shape cannot take an FP8 matmul",
}
