"""fp8pass under tensor and context parallelism: per rank and per mode, bf16 compiled against
fp8pass FP8, on N GPUs (or N CPU processes).

    torchrun --nproc-per-node N benchmarks/distributed.py --model flux-dev-tiny --json out.json

The committed CPU run (2 processes on a 2-core CPU, gloo, Inductor; ~9 minutes):

    OMP_NUM_THREADS=1 torchrun --nproc-per-node 2 benchmarks/distributed.py \
        --model flux-dev-tiny wan21-1.3b-tiny --compute cast scaled_mm \
        --json benchmarks/results/distributed-cpu-2026-11-23.json

Modes: ``none`` (every rank runs the whole model in its own process: the single-process
reference), ``tp`` (tensor parallelism: diffusers' ``TensorParallelConfig`` for a model with a
``_tp_plan``, Flux; a plain ``parallelize_module`` plan for Wan), ``ulysses`` and ``ring``
(diffusers' context parallelism); see ``fp8pass.bench.parallel``. Variants: ``bf16 compiled``
(``torch.compile`` with ``--compiler``) and ``fp8pass <compute>`` (``FP8Backend`` with the same
compiler as its inner one).

Per rank and per (model, mode, variant):

- weight bytes this rank holds: parameters' and buffers' storages (a DTensor's local shard; a
  weight fp8pass released counts 0) plus the FP8 copies and scales fp8pass's store keeps for the
  model (local shards): ``fp8pass.bench.parallel.rank_weight_bytes``;
- peak memory: ``torch.cuda.max_memory_allocated`` during one step (and from building the model
  through its first, compiling, call); not measured on a CPU (torch keeps no allocator statistics
  there, and the process RSS mixes in the compiler's own memory), recorded as null with a note;
- step time: ``--rounds`` rounds of ``--steps`` steps, every rank starting each round together
  (a barrier); median over every step, fastest and slowest step, per-round medians;
- SQNR (dB) of the output against the single-process bf16 eager output: rank 0 gathers every
  rank's output and compares it with its own reference.

A case that fails (ring attention on a CPU: diffusers refuses torch's native SDPA with
``return_lse``, see ``benchmarks/ring_attention_cpu.py``) is recorded with its exact error and the
run goes on. Cases run one after another (build, compile, warm up, time, free); a run of one
process (no torchrun) measures only ``none``.

On a CPU the processes talk over gloo, and diffusers' parallel setup needs a *harness* workaround
(``fp8pass.bench.parallel.cpu_workarounds``, not part of fp8pass): diffusers 0.42.1 computes its
device as ``rank % torch.accelerator.device_count()``, which divides by zero without an
accelerator, and its tensor parallelism refuses CPU meshes. Rows that went through it say so.
CPU numbers say nothing about GPU speed (FP8 matmuls, NCCL, kernels); they check that every mode
runs, what each rank holds and the fidelity.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from fp8pass import FP8Backend, FP8Config
from fp8pass.bench import parallel, zoo
from fp8pass.bench.variants import cpu_name, resolve_device, time_ms
from fp8pass.metrics import sqnr

MODES = ("none", *parallel.MODES)
CPU_WORKAROUND = (
    "harness workaround (fp8pass.bench.parallel.cpu_workarounds, not fp8pass): diffusers' "
    "rank % torch.accelerator.device_count() divides by zero on a CPU and its tensor parallelism "
    "refuses CPU meshes; while diffusers sets up parallelism, device_count answers 1 and 'cpu' is "
    "an accepted TP device"
)
CPU_PEAK_NOTE = (
    "peak memory not measured on a CPU: torch keeps no allocator statistics there and the "
    "process RSS mixes in the compiler's memory"
)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    dev = resolve_device(args.device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    else:
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=args.timeout),
            **({"device_id": dev} if dev.type == "cuda" else {}),
        )
    try:
        rows, outputs, references = _run(args, rank, world, dev)
        gathered = [None] * world if rank == 0 else None
        mine = (rows, outputs, references)
        if distributed:
            dist.gather_object(mine, gathered, dst=0)
        else:
            gathered = [mine]
        if rank == 0:
            _report(args, world, dev, gathered)
    finally:
        if distributed:
            dist.destroy_process_group()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        nargs="+",
        default=["flux-dev-tiny"],
        choices=list(zoo.MODELS),
        help="zoo models (tiny or full size); several run one after another",
    )
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument(
        "--compute",
        nargs="+",
        default=["auto"],
        choices=["auto", "cast", "scaled_mm"],
        help="fp8pass compute paths (auto: scaled_mm on CUDA sm89+, cast elsewhere)",
    )
    p.add_argument(
        "--compiler",
        default="inductor",
        choices=["inductor", "aot_eager"],
        help="torch.compile backend for bf16, and FP8Backend's inner compiler (aot_eager: no codegen, fast on CPU)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cuda or cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="CPU threads per rank (default: cores / ranks)")
    p.add_argument("--timeout", type=int, default=300, help="seconds a rank waits in a collective")
    p.add_argument("--json", type=Path, help="write the environment and every row here (rank 0)")
    return p.parse_args(argv)


# -- every rank ------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, rank: int, world: int, dev: torch.device):
    rows: list[dict[str, Any]] = []
    outputs: list[torch.Tensor | None] = []
    references: dict[str, torch.Tensor] = {}
    variants = ["bf16 compiled", *(f"fp8pass {c}" for c in args.compute)]
    cases = [(m, mode, v) for m in args.model for mode in args.modes for v in variants]
    for i, (name, mode, variant) in enumerate(cases):
        if name not in references:
            references[name] = _reference(name, dev)
        if rank == 0:
            print(f"[{i + 1}/{len(cases)}] {name} {mode} {variant}", file=sys.stderr, flush=True)
        row, out = _case(args, name, mode, variant, rank, world, dev)
        rows.append(row)
        outputs.append(out)
        if world > 1 and dist.is_initialized():
            dist.barrier()  # the next case starts together on every rank
    return rows, outputs, references


def _reference(name: str, dev: torch.device) -> torch.Tensor:
    """The single-process bf16 eager output (no parallelism, no compile)."""
    model, inputs = zoo.build(name, dev)
    out = parallel.call(model, inputs).float().cpu()
    del model
    _free(dev)
    return out


def _case(args, name: str, mode: str, variant: str, rank: int, world: int, dev: torch.device):
    row: dict[str, Any] = dict(model=name, mode=mode, variant=variant, rank=rank, status="ok", error="")
    if mode != "none" and world < 2:
        row.update(status="skipped", error="needs 2 or more processes (torchrun --nproc-per-node N)")
        return row, None
    torch._dynamo.reset()
    _free(dev)
    model = fn = None
    out = None
    try:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        model, inputs = zoo.build(name, dev)
        if mode != "none":
            # diffusers' enable_parallelism (context parallelism; tensor parallelism of a model
            # with a _tp_plan) needs the harness workaround on a CPU; torch's parallelize_module not
            if dev.type == "cpu" and (mode != "tp" or getattr(model, "_tp_plan", None) is not None):
                row["workaround"] = "cpu_workarounds (harness)"
            parallel.parallelize(model, mode, world, dev)
        backend: Any = args.compiler
        if variant.startswith("fp8pass"):
            backend = FP8Backend(FP8Config(compute=variant.split()[1]), inner=args.compiler)
        fn = torch.compile(model, backend=backend)
        t0 = time.perf_counter()
        out = parallel.call(fn, inputs)
        _sync(dev)
        row["first_call_s"] = round(time.perf_counter() - t0, 2)
        if dev.type == "cuda":
            row["peak_setup_bytes"] = torch.cuda.max_memory_allocated(dev)
        for _ in range(args.warmup):
            parallel.call(fn, inputs)
        row["weight_bytes"] = parallel.rank_weight_bytes(model)
        if isinstance(backend, FP8Backend):
            report = backend.report()
            row["fp8_layers"] = f"{sum(r.converted for r in report)}/{len(report)}"
            row["fp8_compute"] = sorted({r.compute for r in report if r.converted})
        row["peak_bytes"] = _peak_step_bytes(fn, inputs, dev)
        samples = []
        for _ in range(args.rounds):
            if world > 1:
                dist.barrier()
            samples.append(time_ms(lambda: parallel.call(fn, inputs), dev, args.steps))
        every = [t for block in samples for t in block]
        row.update(
            step_ms=statistics.median(every),
            step_ms_min=min(every),
            step_ms_max=max(every),
            round_ms=[statistics.median(block) for block in samples],
        )
        out = out.float().cpu()
    except Exception as e:  # the case says how it failed; the run goes on
        where = traceback.extract_tb(e.__traceback__)[-1]
        row.update(
            status="failed",
            error=f"{type(e).__name__}: {e}",
            raised_in=f"{where.name} ({where.filename.split('site-packages/')[-1]}:{where.lineno})",
        )
        out = None
    finally:
        model = fn = None
        _free(dev)
    return row, out


def _peak_step_bytes(fn, inputs: dict, dev: torch.device) -> int | None:
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    parallel.call(fn, inputs)
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# -- rank 0 ----------------------------------------------------------------------------------------


def _report(args: argparse.Namespace, world: int, dev: torch.device, gathered: list) -> None:
    references = gathered[0][2]
    pairs = [pair for rank_rows, outs, _ in gathered for pair in zip(rank_rows, outs, strict=True)]
    compiled = {  # the single-process compiled bf16 output, same compiler: rank 0's ``none`` row
        row["model"]: out
        for row, out in pairs
        if (row["mode"], row["variant"], row["rank"]) == ("none", "bf16 compiled", 0) and out is not None
    }
    rows = []
    for row, out in pairs:
        if out is not None:
            value = sqnr(references[row["model"]], out)
            row["sqnr_db"] = None if value == float("inf") else round(value, 2)
            row["identical_to_reference"] = value == float("inf")
            if row["model"] in compiled:
                value = sqnr(compiled[row["model"]], out)
                row["sqnr_vs_compiled_db"] = None if value == float("inf") else round(value, 2)
        rows.append(row)
    rows.sort(key=lambda r: (args.model.index(r["model"]), MODES.index(r["mode"]), r["variant"], r["rank"]))
    env = _environment(args, world, dev)
    print(_format_environment(env))
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**env, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")


def _environment(args: argparse.Namespace, world: int, dev: torch.device) -> dict[str, Any]:
    import diffusers

    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": dev.type,
        "world_size": world,
        "process_group": ("nccl" if dev.type == "cuda" else "gloo") if world > 1 else None,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "models": {m: zoo.MODELS[m].shape_note for m in args.model},
        "compiler": args.compiler,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "warmup": args.warmup,
        "command": " ".join(sys.argv),
        "sqnr_reference": "sqnr_db: against the single-process bf16 eager output of the same model and "
        "inputs (rank 0's); sqnr_vs_compiled_db: against rank 0's single-process compiled bf16 output "
        "(mode none); null where identical",
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
    else:
        env["cpu"] = cpu_name()
        env["threads_per_rank"] = torch.get_num_threads()
        env["notes"] = [CPU_WORKAROUND + " (rows with a 'workaround' key)", CPU_PEAK_NOTE]
    return env


def _format_environment(env: dict[str, Any]) -> str:
    keys = ("date", "device", "gpu", "cpu", "threads_per_rank", "world_size", "process_group", "torch")
    line = "  ".join(f"{k}={env[k]}" for k in (*keys, "diffusers", "compiler") if k in env)
    notes = "".join(f"\nnote: {n}" for n in env.get("notes", []))
    return line + notes


def format_table(rows: list[dict[str, Any]], tablefmt: str = "github") -> str:
    """The markdown table: one line per (model, mode, variant, rank)."""
    from tabulate import tabulate

    def size(n: int | None) -> str:
        if n is None:
            return "-"
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if n >= 1 << shift:
                return f"{n / (1 << shift):.1f} {unit}"
        return f"{n} B"

    lines = []
    for r in rows:
        ok = r["status"] == "ok"
        wb = r.get("weight_bytes") or {}
        db = _db(r, "sqnr_db") if r.get("identical_to_reference") is not None else "-"
        db_compiled = _db(r, "sqnr_vs_compiled_db") if "sqnr_vs_compiled_db" in r else "-"
        status = "ok" if ok else f"{r['status']}: {r['error'].splitlines()[0][:90]}"
        lines.append(
            [
                r["model"],
                r["mode"] + (" *" if r.get("workaround") else ""),
                r["variant"],
                r["rank"],
                size(wb.get("total")),
                size(wb.get("fp8")) if wb else "-",
                r.get("fp8_layers", "-"),
                size(r.get("peak_bytes")),
                f"{r['step_ms']:.1f}" if ok else "-",
                f"{r['step_ms_min']:.1f}-{r['step_ms_max']:.1f}" if ok else "-",
                db,
                db_compiled,
                status,
            ]
        )
    headers = [
        "model",
        "mode",
        "variant",
        "rank",
        "weights (rank)",
        "of which FP8",
        "fp8 layers",
        "peak",
        "step ms",
        "min-max ms",
        "SQNR dB vs eager",
        "vs compiled",
        "status",
    ]
    table = tabulate(lines, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    table += (
        "\n\nSQNR: the rank's output against one process's bf16 output of the same model and inputs, "
        "eager and compiled (the `none` / `bf16 compiled` row of rank 0); `exact` where identical."
    )
    if any(r.get("workaround") for r in rows):
        table += "\n\\* through the CPU harness workaround (fp8pass.bench.parallel.cpu_workarounds)"
    return table


def _db(row: dict[str, Any], key: str) -> str:
    return "exact" if row[key] is None else f"{row[key]:.1f}"


if __name__ == "__main__":
    main()
