"""CPU FP8 -> bf16 conversion (issue 16): throughput per formulation, and the layer micro-benchmark
before / after. Writes benchmarks/results/cpu-dequant-<date>.json.

Conversion: ATen ``.to()``, Inductor's ``.to()``, and fp8pass.dequant's integer and table
formulations compiled by Inductor, on 3072 x 3072 (the linear's weight), 16M and 64M e4m3fn
elements. Layers: a linear (4096 tokens,
3072 x 3072), a 3x3 and a 1x1 convolution (640 channels, 32 x 32, batch 2), each compiled as bf16,
as fp8pass's cast path with the old ``.to()`` and with fp8pass.dequant.

Every variant is timed in interleaved rounds (one call of each per round), so that the load of
other jobs on a shared machine falls on all of them alike; medians, min and max are reported, and
ratios are taken between medians of the same run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cpu_dequant.py [--repeats 7] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import torch

from fp8pass import dequant
from fp8pass.bench.layers import LayerShape, layer_functions
from fp8pass.bench.variants import cpu_name

RESULTS = Path(__file__).parent / "results"


def _rounds(calls: dict[str, callable], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def _summary(seconds: list[float], scale: float = 1.0) -> dict[str, float]:
    v = [s * scale for s in seconds]
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def conversion(sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    d = torch.bfloat16
    for n in sizes:
        g = torch.Generator().manual_seed(0)
        w = (torch.randn(n, generator=g) * 0.1).to(torch.float8_e4m3fn)
        fns = {
            "aten .to": lambda w: w.to(d),
            "inductor .to": _compiled(lambda w: w.to(d)),
            "inductor int (fp8pass.dequant.fp8_to_int)": _compiled(lambda w: dequant.fp8_to_int(w, d)),
            "inductor table (fp8pass.dequant.fp8_to_table)": _compiled(lambda w: dequant.fp8_to_table(w, d)),
        }
        ref = w.to(d).view(torch.int16)
        for name, fn in fns.items():
            assert torch.equal(fn(w).view(torch.int16), ref), name
        times = _rounds({name: (lambda fn=fn, w=w: fn(w)) for name, fn in fns.items()}, repeats)
        base = statistics.median(times["aten .to"])
        for name, t in times.items():
            gels = [n / s / 1e9 for s in t]
            rows.append(
                {
                    "elements": n,
                    "formulation": name,
                    "G elements/s": {
                        "median": n / statistics.median(t) / 1e9,
                        "min": min(gels),
                        "max": max(gels),
                    },
                    "ms": _summary(t, 1e3),
                    "speed vs aten .to": base / statistics.median(t),
                }
            )
            print(
                f"{n:>10} {name:48s} {rows[-1]['G elements/s']['median']:.3f} G el/s  x{rows[-1]['speed vs aten .to']:.2f}"
            )
    return rows


LAYERS = {
    "linear 4096 tokens, 3072x3072": LayerShape("linear", (1, 4096, 3072), (3072, 3072)),
    "conv 3x3, 640 ch, 32x32, batch 2": LayerShape(
        "conv", (2, 640, 32, 32), (640, 640, 3, 3), (1, 1), (1, 1)
    ),
    "conv 1x1, 640 ch, 32x32, batch 2": LayerShape(
        "conv", (2, 640, 32, 32), (640, 640, 1, 1), (1, 1), (0, 0)
    ),
}


def _with_to(call):
    """``call`` run with fp8pass.dequant switched off (the cast path as it was: ``.to()``). Dynamo
    guards on the switched global, so the compiled "before" function must also *run* with it
    switched, or its first call after switching back recompiles it into the "after" one."""
    real = dequant.uses_native

    def run(*args):
        dequant.uses_native = _off
        try:
            return call(*args)
        finally:
            dequant.uses_native = real

    return run


def _off(weight, dtype):
    return False


def layers(repeats: int) -> list[dict]:
    rows = []
    for label, shape in LAYERS.items():
        fns = layer_functions(shape, torch.device("cpu"))
        bf16_fn, bf16_args = fns["bf16"]
        cast_fn, cast_args = fns["fp8 cast"]
        with torch.no_grad():
            calls = {"bf16": (_compiled(bf16_fn), bf16_args)}
            calls["fp8 cast, .to (before)"] = (_with_to(_compiled(cast_fn)), cast_args)
            calls["fp8 cast, fp8pass.dequant (after)"] = (_compiled(cast_fn), cast_args)
            outs = {k: f(*a) for k, (f, a) in calls.items()}  # compile each once
            with torch._dynamo.config.patch(error_on_recompile=True):
                times = _rounds({k: (lambda f=f, a=a: f(*a)) for k, (f, a) in calls.items()}, repeats)
        same = torch.equal(*(outs[k].view(torch.int16) for k in list(calls)[1:]))
        base = statistics.median(times["bf16"])
        row = {"layer": label, "x": shape.x, "w": shape.w, "before == after (bits)": same}
        for name, t in times.items():
            row[name] = {"ms": _summary(t, 1e3), "time vs bf16": statistics.median(t) / base}
        rows.append(row)
        print(
            label,
            {k: round(v["ms"]["median"], 2) for k, v in row.items() if isinstance(v, dict)},
            "same",
            same,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3072 * 3072, 16 * 2**20, 64 * 2**20])
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu-dequant-2026-11-23.json")
    args = parser.parse_args()
    result = {
        "what": "CPU FP8 (e4m3fn) -> bf16 conversion and fp8pass cast-path layers, before/after fp8pass.dequant",
        "date": datetime.date.today().isoformat(),
        "device": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "repeats": args.repeats,
        "note": "shared machine: 2 cores, another job used about one of them; variants interleaved per round",
        "conversion": conversion(args.sizes, args.repeats),
    }
    if not args.skip_layers:
        result["layers"] = layers(args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
