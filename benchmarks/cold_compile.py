"""Cold compile of one zoo model on the CPU, per way of converting the FP8 weight, each in a fresh
process with Inductor's caches off: plain Inductor (bf16), fp8pass as shipped (the conversion op,
a C kernel built once per machine: fp8pass.native), fp8pass with the integer conversion traced
inline (one C++ kernel per weight size: what fp8pass did before the op), and fp8pass with
Inductor's own ``.to()``.

    python benchmarks/cold_compile.py [--model sd15] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time, torch
from torch._inductor.utils import run_and_get_code
import fp8pass
from fp8pass import FP8Backend, FP8Config, dequant, ops
from fp8pass.bench import zoo
model_name, variant = sys.argv[1], sys.argv[2]
model, inputs = zoo.build(model_name)
if variant == "fp8pass, conversion inline":
    ops.fp8_to = lambda w, d: dequant.fp8_to_int(w, d) if dequant.uses_native(w, d) else w.to(d)
if variant == "fp8pass, .to()":
    dequant.uses_native = lambda w, d: False
backend = "inductor" if variant == "bf16 (Inductor)" else FP8Backend(FP8Config(compute="cast"))
t0 = time.perf_counter()
with torch.no_grad():
    _, codes = run_and_get_code(torch.compile(model, backend=backend), **inputs)
first = time.perf_counter() - t0
code = codes[0]
print(json.dumps({"variant": variant, "first_call_s": first,
                  "cpp_kernels": code.count("async_compile.cpp_pybinding("),
                  "conversion_op_calls": sum(code.count(c) for c in ("fp8pass_convert_scaled_held(",
                                                                      "fp8_scaled_to_cpu_kernel(", "fp8_to_cpu_kernel("))}))
"""

VARIANTS = ["bf16 (Inductor)", "fp8pass", "fp8pass, conversion inline", "fp8pass, .to()"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    rows = []
    for variant in VARIANTS:
        run = subprocess.run(
            [sys.executable, "-c", CHILD, args.model, variant], env=env, capture_output=True, text=True
        )
        row = (
            json.loads(run.stdout.strip().splitlines()[-1])
            if run.returncode == 0
            else {"variant": variant, "error": run.stderr[-2000:]}
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "what": "cold first call (compile + one step), Inductor caches off, one fresh process per variant",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
