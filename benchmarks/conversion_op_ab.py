"""Run-time cost of calling the CPU conversion as one op (fp8pass::fp8_to_cpu, compiled once with
dynamic shapes) against tracing the integer conversion inline (one kernel per weight size): SD1.5
(512², batch 2) compiled both ways in one process, step times interleaved over 6 rounds (best of 2
steps each), ratio op / inline per round. Prints its results (benchmarks/results/conversion-op-ab-*.txt).

    python benchmarks/conversion_op_ab.py
"""

import statistics
import time

import torch

from fp8pass import FP8Backend, FP8Config, dequant, ops
from fp8pass.bench import zoo

real = ops.fp8_to


def inline(w, d):
    return dequant.fp8_to_int(w, d) if dequant.uses_int_path(w, d) else w.to(d)


fns = {}
for name in ("op", "inline"):
    model, inputs = zoo.build("sd15")
    ops.fp8_to = real if name == "op" else inline
    cm = torch.compile(model, backend=FP8Backend(FP8Config(compute="cast")))
    t0 = time.perf_counter()
    with torch.no_grad():
        cm(**inputs)
        cm(**inputs)
    ops.fp8_to = real
    print(name, "compiled+2 calls s", round(time.perf_counter() - t0, 1), flush=True)
    fns[name] = (cm, inputs)
ratios = []
for r in range(6):
    t = {}
    for name in ("op", "inline") if r % 2 == 0 else ("inline", "op"):
        cm, inputs = fns[name]
        ts = []
        with torch.no_grad():
            for _ in range(2):
                t0 = time.perf_counter()
                cm(**inputs)
                ts.append(time.perf_counter() - t0)
        t[name] = min(ts)
    ratios.append(t["op"] / t["inline"])
    print(r, {k: round(v, 3) for k, v in t.items()}, f"op/inline {ratios[-1]:.3f}", flush=True)
print("median op/inline", statistics.median(ratios), "min", min(ratios), "max", max(ratios))
