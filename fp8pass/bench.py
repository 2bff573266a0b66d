"""Benchmark: one zoo denoiser, every way of running it, one after another in one process.

Variants: bf16 eager and compiled; FP8 storage by hooks (fp8pass's and diffusers'); fp8pass's
backend with each compute path; torchao's FP8 configs under torch.compile. For each: step latency
(median of timed steps after warm-up; CUDA events on a GPU), speed against compiled bf16, first
call time (compile included), weight bytes of the denoiser, peak memory during a step (CUDA),
and output SQNR against bf16 eager. A variant that fails gets a row saying why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import zoo
from .backend import FP8Backend
from .config import FP8Config
from .hooks import apply_fp8_hooks
from .metrics import sqnr

__all__ = [
    "VARIANTS",
    "Result",
    "environment",
    "format_results",
    "held_weight_bytes",
    "resolve_device",
    "run_benchmark",
    "time_ms",
]


@dataclass
class Result:
    variant: str
    ok: bool
    error: str = ""
    step_ms: float | None = None
    speedup_vs_compiled_bf16: float | None = None
    first_call_s: float | None = None
    weight_bytes: int | None = None
    peak_bytes: int | None = None
    sqnr_db: float | None = None
    converted: str = ""


# name -> (prepare(model) -> (callable, info), run by default on CUDA only: max-autotune compiles
# take many minutes on a CPU, and the fused-projection lever is for GPUs to measure)
Prepared = tuple[Callable[..., Any], dict[str, Any]]


def _bf16_eager(model: torch.nn.Module, device: torch.device) -> Prepared:
    return model, {}


def _compiled(mode: str | None) -> Callable[..., Prepared]:
    def prepare(model: torch.nn.Module, device: torch.device) -> Prepared:
        return torch.compile(model, mode=mode), {}

    return prepare


def _fp8pass(
    compute: str, granularity: str = "channel", mode: str | None = None, fuse: bool = False
) -> Callable[..., Prepared]:
    def prepare(model: torch.nn.Module, device: torch.device) -> Prepared:
        config = FP8Config(compute=compute, granularity=granularity, fuse_projections=fuse)
        be = FP8Backend(config, mode=mode)
        return torch.compile(model, backend=be), {"report": be.report}

    return prepare


def _fp8_hooks(model: torch.nn.Module, device: torch.device) -> Prepared:
    hooks = apply_fp8_hooks(model, FP8Config())
    return model, {
        "report": hooks.report,
        "extra": lambda: [t for s in hooks._stored.values() for t in (s.q, s.scale)],
    }


def _diffusers_hooks(model: torch.nn.Module, device: torch.device) -> Prepared:
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return model, {}


def _torchao(kind: str) -> Callable[..., Prepared]:
    def prepare(model: torch.nn.Module, device: torch.device) -> Prepared:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Float8WeightOnlyConfig,
            PerRow,
            quantize_,
        )

        config = (
            Float8WeightOnlyConfig()
            if kind == "weight_only"
            else Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
        )
        quantize_(model, config)
        return torch.compile(model), {}

    return prepare


VARIANTS: dict[str, tuple[Callable[..., Prepared], bool]] = {
    "bf16 eager": (_bf16_eager, False),
    "bf16 compiled": (_compiled(None), False),
    "bf16 compiled max-autotune": (_compiled("max-autotune"), True),
    "fp8 hooks (fp8pass.hooks)": (_fp8_hooks, False),
    "fp8 hooks (diffusers layerwise)": (_diffusers_hooks, False),
    "fp8pass cast": (_fp8pass("cast"), False),
    "fp8pass cast max-autotune": (_fp8pass("cast", mode="max-autotune"), True),
    "fp8pass scaled_mm per-tensor": (_fp8pass("scaled_mm", "tensor"), False),
    "fp8pass scaled_mm per-row": (_fp8pass("scaled_mm", "channel"), False),
    "fp8pass cast max-autotune fused": (_fp8pass("cast", mode="max-autotune", fuse=True), True),
    "fp8pass scaled_mm per-row fused": (_fp8pass("scaled_mm", "channel", fuse=True), True),
    "torchao fp8 weight-only compiled": (_torchao("weight_only"), False),
    "torchao fp8 dynamic per-row compiled": (_torchao("dynamic"), False),
}


def run_benchmark(
    model_name: str = "flux-dev-tiny",
    device: str = "auto",
    variants: list[str] | None = None,
    steps: int = 10,
    warmup: int = 3,
    max_autotune: bool | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], list[Result]]:
    """Run the variants on ``model_name``; returns ``(environment, results)``.

    By default max-autotune and fused-projection variants run only on CUDA (on a CPU max-autotune
    takes many minutes to tune); name them in ``variants`` to run them anyway.
    """
    dev = resolve_device(device)
    if max_autotune is None:
        max_autotune = dev.type == "cuda"
    names = variants or [n for n, (_, autotune) in VARIANTS.items() if max_autotune or not autotune]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    env = environment(model_name, dev)
    inputs = zoo.build_inputs(model_name, dev)
    _warm_up_compiler(dev)
    reference = None
    results = []
    for i, name in enumerate(names):
        if progress:
            _progress(i, len(names), name)
        with _cold_compiles():
            result, out = _run_variant(name, model_name, dev, inputs, steps, warmup)
        if name == "bf16 eager" and out is not None:
            reference = out
        if out is not None and reference is not None:
            result.sqnr_db = sqnr(reference, out)
        results.append(result)
    if progress:
        _progress(len(names), len(names), "done")
    base = next((r.step_ms for r in results if r.variant == "bf16 compiled" and r.ok), None)
    for r in results:
        if base and r.step_ms:
            r.speedup_vs_compiled_bf16 = base / r.step_ms
    return env, results


def _run_variant(name, model_name, dev, inputs, steps, warmup) -> tuple[Result, torch.Tensor | None]:
    prepare, _ = VARIANTS[name]
    torch._dynamo.reset()
    _free(dev)
    try:
        model = zoo.build_model(model_name, dev)
        fn, info = prepare(model, dev)
        t0 = time.perf_counter()
        out = _step(fn, inputs)
        _sync(dev)
        first = time.perf_counter() - t0
        for _ in range(warmup):
            _step(fn, inputs)
        times = time_ms(lambda: _step(fn, inputs), dev, steps)
        peak = _peak_bytes(fn, inputs, dev)
        rows = info["report"]() if "report" in info else []
        result = Result(
            name,
            True,
            step_ms=statistics.median(times),
            first_call_s=first,
            weight_bytes=held_weight_bytes(model, rows, info.get("extra", lambda: [])()),
            peak_bytes=peak,
            converted=f"{sum(r.converted for r in rows)}/{len(rows)}" if rows else "",
        )
        return result, out.detach().float().cpu()
    except Exception as e:  # a variant that cannot run on this device says so
        return Result(name, False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"), None
    finally:
        model = fn = None
        _free(dev)


def _warm_up_compiler(dev: torch.device) -> None:
    """One throwaway compile, so that Inductor's one-time start-up is not billed to the first variant."""
    with _cold_compiles(), torch.no_grad():
        torch.compile(lambda x: torch.nn.functional.gelu(x @ x))(torch.randn(8, 8, device=dev))
    torch._dynamo.reset()


@contextlib.contextmanager
def _cold_compiles():
    """Inductor's on-disk caches would make the second run's compile look free: turn them off."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        yield


def _step(fn: Callable[..., Any], inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        out = fn(**inputs)
    return out[0] if isinstance(out, tuple) else out.sample


def time_ms(call: Callable[[], Any], device: torch.device, steps: int) -> list[float]:
    """Wall times of ``steps`` calls in ms: CUDA events on a GPU, ``perf_counter`` elsewhere."""
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _peak_bytes(fn, inputs, dev: torch.device) -> int | None:
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(dev)
    _step(fn, inputs)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(dev)


def held_weight_bytes(model: torch.nn.Module, rows, extra: list[torch.Tensor]) -> int:
    """Distinct storages held by the model's parameters and buffers (inner tensors of tensor
    subclasses included), plus FP8 copies held outside the model."""
    storages: dict[int, int] = {}
    tensors = list(model.parameters()) + list(model.buffers()) + list(extra)
    while tensors:
        t = tensors.pop()
        if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, torch.nn.Parameter):
            tensors.extend(getattr(t, name) for name in t.__tensor_flatten__()[0])
            continue
        s = t.untyped_storage()
        if s.nbytes():
            storages[s.data_ptr()] = s.nbytes()
    held_by_backend = sum(r.bytes_after for r in rows if r.converted) if rows and not extra else 0
    return sum(storages.values()) + held_by_backend


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _progress(done: int, total: int, label: str) -> None:
    width = 24
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<40}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def environment(model_name: str, dev: torch.device) -> dict[str, Any]:
    """Versions and device, printed before any number."""
    import diffusers
    import torchao

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": model_name,
        "shape": zoo.MODELS[model_name].shape_note,
        "device": dev.type,
        "torch": torch.__version__,
        "torchao": torchao.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(dev)))
    else:
        env["cpu"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def format_results(env: dict[str, Any], results: list[Result], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    def mib(n):
        return f"{n / 2**20:.1f}" if n is not None else "-"

    def num(x, fmt):
        return format(x, fmt) if x is not None else "-"

    head = "  ".join(f"{k}={v}" for k, v in env.items())
    rows = [
        [
            r.variant,
            num(r.step_ms, ".2f"),
            num(r.speedup_vs_compiled_bf16, ".2f"),
            num(r.first_call_s, ".1f"),
            mib(r.weight_bytes),
            mib(r.peak_bytes),
            num(r.sqnr_db, ".1f"),
            r.converted or "-",
            r.error or "",
        ]
        for r in results
    ]
    headers = [
        "variant",
        "step ms",
        "x vs compiled bf16",
        "first call s",
        "weights MiB",
        "peak MiB",
        "SQNR dB",
        "fp8 layers",
        "error",
    ]
    note = "SQNR: output vs bf16 eager, 20*log10(|ref|/|ref-out|). Step: median after warm-up."
    return head + "\n" + tabulate(rows, headers=headers, tablefmt=tablefmt) + "\n" + note


def to_json(env: dict[str, Any], results: list[Result]) -> str:
    return json.dumps({"environment": env, "results": [dataclasses.asdict(r) for r in results]}, indent=2)
