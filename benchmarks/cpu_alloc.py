"""CPU conversion of Flux-sized weights under three allocator settings (issue 16's page faults).

Each conversion's output is a fresh allocation. Above glibc's mmap threshold (32 MiB: a bf16
3072x12288 weight is 75 MB) glibc maps new pages for it and unmaps them on free, so every call
pays a page fault per 4 KiB. Each setting runs in its own process (both are read at start-up):

- default: glibc as it comes;
- ``THP_MEM_ALLOC_ENABLE=1``: torch aligns large CPU allocations to 2 MiB and asks for huge pages;
- ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``: glibc serves every
  allocation from its heap and keeps freed memory there, so the next call reuses mapped pages.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cpu_alloc.py [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

SETTINGS = {
    "default": {},
    "THP_MEM_ALLOC_ENABLE=1": {"THP_MEM_ALLOC_ENABLE": "1"},
    "GLIBC_TUNABLES mmap_max=0": {
        "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296"
    },
}
SHAPES = [(3072, 3072), (3072, 12288), (12288, 3072), (18432, 3072)]  # flux-dev's linear weights

_CHILD = """
import json, resource, statistics, sys, time
import torch
import fp8pass.dequant  # registers fp8pass::fp8_to_cpu
torch.set_num_threads(int(sys.argv[1]))
rows = []
for shape in json.loads(sys.argv[2]):
    w = (torch.randn(shape) * 0.1).to(torch.float8_e4m3fn)
    for _ in range(3):  # compile, and the one recompile on the second call
        torch.ops.fp8pass.fp8_to_cpu(w, torch.bfloat16)
    times, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(15):
        t = time.perf_counter()
        y = torch.ops.fp8pass.fp8_to_cpu(w, torch.bfloat16)
        times.append(time.perf_counter() - t)
        del y
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 15
    ms = statistics.median(times) * 1e3
    rows.append(dict(shape=shape, ms=ms, ms_min=min(times) * 1e3, ms_max=max(times) * 1e3,
                     g_el_per_s=w.numel() / ms / 1e6, minor_faults_per_call=faults))
print(json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    import torch

    results = {}
    for name, extra in SETTINGS.items():
        env = {**os.environ, **extra, "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(args.threads), json.dumps(SHAPES)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        for r in results[name]:
            print(
                f"{name:28s} {str(tuple(r['shape'])):14s} {r['ms']:7.2f} ms  {r['g_el_per_s']:5.2f} G el/s"
                f"  ({r['ms_min']:.2f}-{r['ms_max']:.2f} ms)  {r['minor_faults_per_call']:7.0f} faults/call"
            )
    if args.json:
        meta = dict(
            date=datetime.datetime.now().isoformat(timespec="seconds"),
            torch=torch.__version__,
            threads=args.threads,
            cpu=open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "),
            note="15 calls per shape after 3 untimed; each setting in its own process",
        )
        with open(args.json, "w") as f:
            json.dump({"environment": meta, "results": results}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
