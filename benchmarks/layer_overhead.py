"""Fixed cost per converted layer on the CPU: 32 stacked Linear(64, 64) at one token, compiled
with Inductor, bf16 against fp8pass's cast path (alternated in one process), plus the pieces of
one conversion call. Writes benchmarks/results/layer-overhead-cpu-<date>.json.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/layer_overhead.py [--rounds 15] [--label after]

Variants: ``bf16`` (plain Inductor), ``fp8 cast`` (fp8pass, the C conversion kernel),
``fp8 cast, .to()`` (the same graph with torch's ``.to()`` conversion inlined by Inductor).
Run it from an older checkout (``--label before``) to measure the code it replaced.

Inductor's caches are off: the ``.to()`` variant's graph has the same cache key as the
``fp8 cast`` one (what differs is a module attribute the key cannot see), so with caches on both
variants ran whichever code was compiled first (the 2026-12-03 "after" result measured Inductor's
inlined ``.to()`` twice, not the C kernel).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch._inductor.config
import torch.nn as nn

import fp8pass
from fp8pass import FP8Backend, FP8Config

RESULTS = Path(__file__).parent / "results"
LAYERS, WIDTH = 32, 64


def _model() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])
        .to(torch.bfloat16)
        .requires_grad_(False)
    )


def _per_call_us(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e6


def _summary(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch._inductor.config.force_disable_caches = True  # see the module docstring

    x = torch.randn(1, WIDTH, dtype=torch.bfloat16)
    config = FP8Config(min_weight_numel=0, keep_boundary=False, compute="cast")
    variants = {"bf16": torch.compile(_model())}
    be = FP8Backend(config, inner="inductor")
    variants["fp8 cast"] = torch.compile(_model(), backend=be)
    inline = None
    try:
        from fp8pass import dequant

        if hasattr(dequant, "uses_native"):
            inline = dequant
    except ImportError:
        pass
    if inline is not None:  # the same graph, Inductor's own .to() inlined instead of the op

        def to_variant():
            real = inline.uses_native
            inline.uses_native = lambda w, d: False
            try:
                m = torch.compile(_model(), backend=FP8Backend(config, inner="inductor"))
                with torch.no_grad():
                    m(x)
                return m
            finally:
                inline.uses_native = real

        variants["fp8 cast, .to()"] = to_variant()
    with torch.no_grad():
        for m in variants.values():
            for _ in range(20):
                m(x)
        converted = sum(r.converted for r in be.report())
        assert converted == LAYERS, f"{converted} of {LAYERS} layers converted"
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):  # alternated: every round times every variant
            for name, m in variants.items():
                times[name].append(_per_call_us(lambda m=m: m(x), args.calls))
        per_layer = [(f - b) / LAYERS for f, b in zip(times["fp8 cast"], times["bf16"], strict=True)]

        w = copy.deepcopy(_model()[0].weight).to(torch.float8_e4m3fn)
        scale = torch.rand(WIDTH)
        bf16 = torch.bfloat16
        pieces = {
            "fp8pass::fp8_scaled_to_cpu(64x64) through the dispatcher": lambda: (
                torch.ops.fp8pass.fp8_scaled_to_cpu(w, scale, bf16)
            ),
            "torch.empty_like(64x64, bf16)": lambda: torch.empty_like(w, dtype=bf16),
        }
        if inline is not None and hasattr(inline, "fp8_scaled_to_cpu_kernel"):
            from fp8pass import native

            out = torch.empty(WIDTH, WIDTH, dtype=bf16)
            pieces["its kernel called directly (a large weight)"] = lambda: inline.fp8_scaled_to_cpu_kernel(
                w, scale, bf16
            )
            pieces["native.convert_scaled (C loop via ctypes)"] = lambda: native.convert_scaled(w, scale, out)
            held = getattr(native, "held_scaled_arguments", lambda *a: None)(
                tuple(w.shape), w.dtype, tuple(scale.shape), scale.dtype, bf16
            )
            if held is not None:  # what Inductor's generated code runs for a small weight
                call, alloc = native.convert_scaled_held, torch._C._dynamo.guards._empty_strided_cpu

                def generated():
                    buf = alloc((WIDTH, WIDTH), (WIDTH, 1), bf16)
                    call(w.data_ptr(), scale.data_ptr(), buf.data_ptr(), *held)

                pieces["generated code's allocation + C loop (a small weight)"] = generated
        piece_times = {k: [_per_call_us(f, 2000) for _ in range(7)] for k, f in pieces.items()}

    result = {
        "what": f"{LAYERS} stacked Linear({WIDTH}, {WIDTH}), one token, Inductor: bf16 vs fp8pass cast",
        "label": args.label,
        "date": datetime.date.today().isoformat(),
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "fp8pass": getattr(fp8pass, "__version__", "?")},
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "step_us": {k: _summary(v) for k, v in times.items()},
        "fp8_over_bf16": _summary([f / b for f, b in zip(times["fp8 cast"], times["bf16"], strict=True)]),
        "per_layer_overhead_us": _summary(per_layer),
        "pieces_us": {k: _summary(v) for k, v in piece_times.items()},
    }
    out = args.out or RESULTS / f"layer-overhead-cpu-{result['date']}-{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("step_us", "per_layer_overhead_us", "pieces_us")}, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
