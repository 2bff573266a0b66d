"""Benchmark: one zoo denoiser, every way of running it, in one process.

Variants: bf16 eager and compiled; FP8 storage by hooks (fp8pass's and diffusers'); fp8pass's
backend with each compute path; torchao's FP8 configs under torch.compile. For each: step latency,
time against compiled bf16, first call time (compile included), weight bytes of the denoiser, peak
memory during a step (CUDA) and output SQNR against bf16 eager. A variant that cannot run on the
device says why; one that fails says how.

Timing is built to survive a noisy machine: every variant is prepared (compiled, warmed up) first
and kept, then timed in ``rounds`` rounds, each round running ``steps`` steps of every variant in
turn (the order rotated between rounds). A slow stretch of the machine then lands on all variants
alike; ratios to compiled bf16 are taken within each round; each row reports the spread of its
steps and is flagged when its rounds disagree. Where the variants do not fit in memory together
(full-size models), each is timed on its own, its rounds back to back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..backend import FP8Backend
from ..config import FP8Config
from ..hooks import apply_fp8_hooks
from ..metrics import sqnr
from ..report import reason_counts
from . import zoo

__all__ = [
    "VARIANTS",
    "Result",
    "Variant",
    "environment",
    "format_results",
    "held_weight_bytes",
    "resolve_device",
    "conclusion",
    "draw_progress",
    "run_benchmark",
    "time_ms",
    "to_json",
]

#: a row whose per-round median step times differ by more than this (max / min - 1) is unstable
UNSTABLE_SPREAD = 0.15

Prepared = tuple[Callable[..., Any], dict[str, Any]]


@dataclass
class Result:
    """One variant's row. ``status``: ``"ok"``, ``"failed"`` or ``"not supported"`` (on this device)."""

    variant: str
    status: str = "ok"
    error: str = ""
    step_ms: float | None = None  # median of every timed step
    step_ms_min: float | None = None
    step_ms_max: float | None = None
    round_ms: list[float] = field(default_factory=list)  # per-round medians
    time_vs_compiled_bf16: float | None = None  # median over rounds of (this / compiled bf16)
    unstable: bool = False
    first_call_s: float | None = None
    weight_bytes: int | None = None
    peak_bytes: int | None = None
    sqnr_db: float | None = None  # None with identical=True: the output equals bf16 eager's
    identical: bool = False
    converted: str = ""
    kept: dict[str, int] = field(default_factory=dict)  # layers left unconverted, by why
    ok: bool = True

    def __post_init__(self) -> None:
        self.ok = self.status == "ok"


@dataclass(frozen=True)
class Variant:
    """How to prepare a variant, whether it runs by default on a device, and why it cannot run."""

    prepare: Callable[[torch.nn.Module, torch.device, dict], Prepared]
    gpu_only_by_default: bool = False  # max-autotune tuning takes many minutes on a CPU
    #: in the CPU main job by default: not the FP8 matmuls (emulated on a CPU, they say nothing
    #: about a GPU), nor fp8pass's own hook baseline (diffusers' hooks are what people run), nor
    #: the layer-set comparison with torchao (a researcher's question: ask for it with --variants)
    cpu_default: bool = True
    unsupported: Callable[[torch.device], str] = lambda device: ""


def _bf16_eager(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
    return model, {}


def _compiled(mode: str | None) -> Callable[..., Prepared]:
    def prepare(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
        return torch.compile(model, mode=mode), {}

    return prepare


def _fp8pass(
    compute: str, granularity: str = "channel", mode: str | None = None, fuse: bool = False
) -> Callable[..., Prepared]:
    def prepare(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
        config = FP8Config(compute=compute, granularity=granularity, fuse_projections=fuse)
        be = FP8Backend(config, mode=mode)
        return torch.compile(model, backend=be), {"report": be.report}

    return prepare


def _fp8pass_torchao_layers(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
    """fp8pass's cast path on the layers torchao's ``quantize_`` converts: every ``nn.Linear``
    (boundary and small ones included), no convolution, so the two compare layer for layer."""
    convs = [
        rf"^{re.escape(name)}$"
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.modules.conv._ConvNd)
    ]
    config = FP8Config(compute="cast", skip=tuple(convs), keep_boundary=False, min_weight_numel=0)
    be = FP8Backend(config)
    return torch.compile(model, backend=be), {"report": be.report}


def _fp8_hooks(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
    hooks = apply_fp8_hooks(model, FP8Config(), inputs)  # the inputs trace the model's structure
    return model, {
        "report": hooks.report,
        "extra": hooks.stored_tensors,
    }


def _diffusers_hooks(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return model, {}


def _torchao(kind: str) -> Callable[..., Prepared]:
    def prepare(model: torch.nn.Module, device: torch.device, inputs: dict) -> Prepared:
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


def _needs_sm89(device: torch.device) -> str:
    if device.type != "cuda":
        return f"not supported on {device.type}: torchao's dynamic FP8 runs on CUDA GPUs of compute capability 8.9+"
    if torch.cuda.get_device_capability(device) < (8, 9):
        return "not supported on this GPU: torchao's dynamic FP8 needs compute capability 8.9+"
    return ""


VARIANTS: dict[str, Variant] = {
    "bf16 eager": Variant(_bf16_eager),
    "bf16 compiled": Variant(_compiled(None)),
    "bf16 compiled max-autotune": Variant(_compiled("max-autotune"), gpu_only_by_default=True),
    "fp8 hooks (fp8pass.hooks)": Variant(_fp8_hooks, cpu_default=False),
    "fp8 hooks (diffusers layerwise)": Variant(_diffusers_hooks),
    "fp8pass cast": Variant(_fp8pass("cast")),
    "fp8pass cast max-autotune": Variant(_fp8pass("cast", mode="max-autotune"), gpu_only_by_default=True),
    "fp8pass scaled_mm per-tensor": Variant(_fp8pass("scaled_mm", "tensor"), cpu_default=False),
    "fp8pass scaled_mm per-row": Variant(_fp8pass("scaled_mm", "channel"), cpu_default=False),
    "fp8pass cast max-autotune fused": Variant(
        _fp8pass("cast", mode="max-autotune", fuse=True), gpu_only_by_default=True
    ),
    "fp8pass scaled_mm per-row fused": Variant(
        _fp8pass("scaled_mm", "channel", fuse=True), gpu_only_by_default=True
    ),
    "fp8pass cast, torchao's layers": Variant(_fp8pass_torchao_layers, cpu_default=False),
    "torchao fp8 weight-only compiled": Variant(_torchao("weight_only")),
    "torchao fp8 dynamic per-row compiled": Variant(
        _torchao("dynamic"), unsupported=_needs_sm89, cpu_default=False
    ),
}

BASELINE = "bf16 compiled"


def default_variants(device_type: str, max_autotune: bool | None = None) -> list[str]:
    """The variants ``python -m fp8pass bench`` runs on a device of this type without --variants
    (max-autotune ones on CUDA only, unless ``max_autotune`` says otherwise)."""
    if max_autotune is None:
        max_autotune = device_type == "cuda"
    return [
        n
        for n, v in VARIANTS.items()
        if (max_autotune or not v.gpu_only_by_default) and (device_type != "cpu" or v.cpu_default)
    ]


@dataclass
class _Prepared:
    result: Result
    model: torch.nn.Module
    fn: Callable[..., Any]
    samples: list[list[float]] = field(default_factory=list)  # per round


def run_benchmark(
    model_name: str = "flux-dev-tiny",
    device: str = "auto",
    variants: list[str] | None = None,
    steps: int = 5,
    warmup: int = 2,
    max_autotune: bool | None = None,
    progress: bool = True,
    rounds: int = 3,
    interleave: bool | None = None,
    on_result: Callable[[dict[str, Any], list[Result]], None] | None = None,
) -> tuple[dict[str, Any], list[Result]]:
    """Run the variants on ``model_name``; returns ``(environment, results)``.

    ``steps`` timed steps per variant per round, ``rounds`` rounds. By default max-autotune and
    fused-projection variants run only on CUDA (on a CPU max-autotune takes many minutes to tune);
    name them in ``variants`` to run them anyway. ``interleave`` (default: when every variant's
    model fits in half the free memory at once) keeps all variants and times them round by round.
    ``on_result(environment, results so far)`` is called after each variant is done (timed, or
    failed), so that a caller can save what a run killed part-way had measured.
    """
    dev = resolve_device(device)
    if model_name not in zoo.MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(zoo.MODELS)}")
    names = variants or default_variants(dev.type, max_autotune)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if interleave is None:
        interleave = _fits_together(model_name, dev, len(names))
    env = {
        **environment(model_name, dev),
        "rounds": rounds,
        "steps_per_round": steps,
        "interleaved": interleave,
    }
    inputs = zoo.build_inputs(model_name, dev)
    _warm_up_compiler(dev, model_name)
    torch._dynamo.reset()
    results: list[Result] = []
    prepared: list[_Prepared] = []
    reference = None
    units = iter(range(len(names) * (1 + (rounds if interleave else 0)) + 1))

    def tell(label: str) -> None:
        if progress:
            draw_progress(next(units), len(names) * (1 + (rounds if interleave else 0)), label)

    # every variant compiles its own model of one class: let Dynamo keep a graph per variant
    with torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(names))):
        for name in names:
            tell(f"preparing {name}")
            entry, out = _prepare(name, model_name, dev, inputs, warmup)
            if entry is None:
                status, message = out
                results.append(Result(name, status=status, error=message))
                if on_result is not None:
                    on_result(env, results)
                continue
            results.append(entry.result)
            if name == "bf16 eager":
                reference = out
            if reference is not None:
                value = sqnr(reference, out)
                entry.result.identical = math.isinf(value)
                entry.result.sqnr_db = None if math.isinf(value) else value
            if interleave:
                prepared.append(entry)
            else:
                for _ in range(rounds):
                    _time_block(entry, inputs, dev, steps)
                _finish(entry, inputs, dev)
                entry.model = entry.fn = None
                _free(dev)
                if on_result is not None:
                    _compare_to_baseline(results)
                    on_result(env, results)
        for r in range(rounds if interleave else 0):
            shift = r % max(len(prepared), 1)
            for entry in prepared[shift:] + prepared[:shift]:
                tell(f"round {r + 1}/{rounds}: {entry.result.variant}")
                _time_block(entry, inputs, dev, steps)
        for entry in prepared:
            _finish(entry, inputs, dev)
    if progress:
        draw_progress(1, 1, "done")
    _compare_to_baseline(results)
    return env, results


def _prepare(name: str, model_name: str, dev: torch.device, inputs: dict, warmup: int):
    """Build, prepare, first call (timed, compile included), warm-up. ``(entry, output)``, or
    ``(None, error message)``."""
    variant = VARIANTS[name]
    if reason := variant.unsupported(dev):
        return None, ("not supported", reason)
    model = fn = None
    try:
        model = zoo.build_model(model_name, dev)
        fn, info = variant.prepare(model, dev, inputs)
        with _cold_compiles():
            t0 = time.perf_counter()
            out = _step(fn, inputs)
            _sync(dev)
            first = time.perf_counter() - t0
        for _ in range(warmup):
            _step(fn, inputs)
        rows = info["report"]() if "report" in info else []
        result = Result(
            name,
            first_call_s=first,
            weight_bytes=held_weight_bytes(model, rows, info.get("extra", lambda: [])()),
            converted=f"{sum(r.converted for r in rows)}/{len(rows)}" if rows else "",
            kept=reason_counts(rows),
        )
        return _Prepared(result, model, fn), out.detach().float().cpu()
    except Exception as e:  # a variant that fails says so, and the others still run
        model = fn = None
        _free(dev)
        return None, ("failed", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")


def _time_block(entry: _Prepared, inputs: dict, dev: torch.device, steps: int) -> None:
    _step(entry.fn, inputs)  # untimed: the first call after another variant re-warms caches
    entry.samples.append(time_ms(lambda: _step(entry.fn, inputs), dev, steps))


def _finish(entry: _Prepared, inputs: dict, dev: torch.device) -> None:
    r = entry.result
    every = [t for block in entry.samples for t in block]
    r.step_ms, r.step_ms_min, r.step_ms_max = statistics.median(every), min(every), max(every)
    r.round_ms = [statistics.median(block) for block in entry.samples]
    r.unstable = max(r.round_ms) / min(r.round_ms) - 1 > UNSTABLE_SPREAD
    r.peak_bytes = _peak_bytes(entry.fn, inputs, dev)


def _compare_to_baseline(results: list[Result]) -> None:
    base = next((r for r in results if r.variant == BASELINE and r.ok), None)
    if base is None:
        return
    for r in results:
        if r.ok and len(r.round_ms) == len(base.round_ms):
            ratios = [t / b for t, b in zip(r.round_ms, base.round_ms, strict=True)]
            r.time_vs_compiled_bf16 = statistics.median(ratios)


def _fits_together(model_name: str, dev: torch.device, n: int) -> bool:
    """Whether ``n`` copies of the model's bf16 weights take at most half the free memory."""
    meta = zoo.build_model(model_name, "meta")
    need = n * sum(p.numel() * p.element_size() for p in meta.parameters())
    if dev.type == "cuda":
        free = torch.cuda.mem_get_info(dev)[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return False
    return need <= free / 2


def _warm_up_compiler(dev: torch.device, model_name: str | None = None) -> None:
    """Throwaway compiles, so that the process's one-time start-up is not billed to the first
    variant's first call: Inductor's, and, with ``model_name``, what the first compile of that
    model's class and dtype pays once (Dynamo reading diffusers' code, Inductor's bf16 kernels'
    headers, oneDNN's set-up), through a compile of the zoo's tiny model of the same class. Without
    it the first compiled variant's first call measured 8.7 s in one run and 18.0 s in the next."""
    with _cold_compiles(), torch.no_grad():
        torch.compile(lambda x: torch.nn.functional.gelu(x @ x))(torch.randn(8, 8, device=dev))
        twin = zoo.tiny_twin(model_name) if model_name else None
        if twin is not None:
            torch.compile(zoo.build_model(twin, dev))(**zoo.build_inputs(twin, dev))


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


def draw_progress(done: int, total: int, label: str) -> None:
    """A one-line progress bar on stderr; ``label`` ``"done"`` ends the line."""
    width = 24
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {label[:60]:<60}")
    if label == "done":
        sys.stderr.write("\n")
    sys.stderr.flush()


#: allocator settings change CPU step times (fresh large outputs pay page faults; README "On a CPU")
_ALLOCATOR_ENV = ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "LD_PRELOAD", "MALLOC_CONF")


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
        env["cpu"] = cpu_name()
        env["threads"] = torch.get_num_threads()
    for name in _ALLOCATOR_ENV:
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_environment(env: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in env.items())


COLUMNS = {
    "variant": "how the denoiser runs",
    "step ms": "median wall time of one denoiser step over every timed step (CUDA events on a GPU)",
    "min-max ms": "fastest and slowest timed step; '!' marks a row whose per-round medians differ "
    f"by more than {UNSTABLE_SPREAD:.0%} (the machine was busy: compare it with care)",
    "time vs compiled bf16": "this variant's step time / compiled bf16's, taken within each round, median "
    "over rounds: below 1.00 is faster",
    "first call s": "the first call, compile included (Inductor's on-disk caches off)",
    "weights MiB": "distinct weight storages the denoiser holds, FP8 copies and scales included",
    "peak MiB": "torch.cuda.max_memory_allocated during one step; '-' on a CPU, where torch keeps no "
    "allocator statistics",
    "SQNR dB": "output against bf16 eager, 20*log10(|ref|/|ref-out|); 'exact' where identical",
    "fp8 layers": "layers converted / linear and conv layers seen (fp8pass variants and hooks)",
    "status": "'not supported on ...' where the variant cannot run on this device; the error where it failed",
}


def format_results(env: dict[str, Any], results: list[Result], tablefmt: str = "github") -> str:
    """The table and a footer that explains every column (the environment is printed apart, first)."""
    from tabulate import tabulate

    def mib(n):
        return f"{n / 2**20:.1f}" if n is not None else "-"

    def num(x, fmt):
        return format(x, fmt) if x is not None else "-"

    rows = [
        [
            r.variant,
            num(r.step_ms, ".2f"),
            f"{r.step_ms_min:.2f}-{r.step_ms_max:.2f}{' !' if r.unstable else ''}" if r.ok else "-",
            num(r.time_vs_compiled_bf16, ".2f"),
            num(r.first_call_s, ".1f"),
            mib(r.weight_bytes),
            mib(r.peak_bytes),
            "exact" if r.identical else num(r.sqnr_db, ".1f"),
            r.converted or "-",
            "ok" if r.ok else (r.error if r.status == "not supported" else f"failed: {r.error}"),
        ]
        for r in results
    ]
    table = tabulate(rows, headers=list(COLUMNS), tablefmt=tablefmt)
    timing = (
        f"{env.get('rounds', '?')} rounds x {env.get('steps_per_round', '?')} timed steps per variant, "
        + (
            "variants interleaved within each round"
            if env.get("interleaved")
            else "each variant timed on its own"
        )
    )
    footer = "\n".join(f"  {name}: {meaning}" for name, meaning in COLUMNS.items())
    return f"{table}\n{timing}. Columns:\n{footer}"


def to_json(env: dict[str, Any], results: list[Result]) -> str:
    """Standard JSON (no NaN / Infinity: identical outputs are ``"identical": true``)."""
    return json.dumps(
        {"environment": env, "results": [dataclasses.asdict(r) for r in results]}, indent=2, allow_nan=False
    )


#: the fp8pass variant the conclusion speaks of first, and the hooks it compares with
_FP8PASS, _HOOKS = "fp8pass cast", "fp8 hooks (diffusers layerwise)"


def conclusion(env: dict[str, Any], results: list[Result]) -> str:
    """What the run says, in words a newcomer can act on: weight memory saved, fp8pass's time and
    first call against compiled bf16 (with the spread over rounds), fidelity, what stayed in bf16
    and why, the hooks' cost, and what to try next."""
    by = {r.variant: r for r in results if r.ok}
    base, ours = by.get(BASELINE), by.get(_FP8PASS)
    if base is None or ours is None:
        missing = ", ".join(n for n in (BASELINE, _FP8PASS) if n not in by)
        return f"No conclusion: {missing} did not run (see the status column)."
    lines = [f"## Conclusion ({env['model']} on {env['device']})"]
    if ours.weight_bytes and base.weight_bytes:
        lines.append(
            f"- Memory: fp8pass holds the denoiser's weights in {ours.weight_bytes / 2**20:.0f} MiB, "
            f"bf16 in {base.weight_bytes / 2**20:.0f} MiB ({ours.weight_bytes / base.weight_bytes:.2f}x); "
            f"{ours.converted} layers are FP8."
        )
    if ours.kept:
        why = "; ".join(f"{n} {reason}" for reason, n in ours.kept.items())
        lines.append(f"- Kept in bf16: {why}.")
    if ours.time_vs_compiled_bf16 is not None:
        ratios = [t / b for t, b in zip(ours.round_ms, base.round_ms, strict=False)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} rounds" if ratios else ""
        first = (
            f"; its first call (compile included) {ours.first_call_s / base.first_call_s:.2f}x"
            if ours.first_call_s and base.first_call_s
            else ""
        )
        busy = (
            " The machine was busy (rounds disagree): rerun before trusting the time."
            if ours.unstable or base.unstable
            else ""
        )
        lines.append(
            f"- Time: a step takes {ours.time_vs_compiled_bf16:.2f}x compiled bf16's ({spread}){first}.{busy}"
        )
    if ours.sqnr_db is not None:
        ref = f" (compiled bf16 itself: {base.sqnr_db:.1f} dB)" if base.sqnr_db is not None else ""
        lines.append(
            f"- Fidelity: output SQNR against bf16 eager {ours.sqnr_db:.1f} dB{ref}; above 20 dB counts as close."
        )
    hooks = by.get(_HOOKS)
    if hooks is not None and hooks.time_vs_compiled_bf16 is not None:
        lines.append(
            f"- diffusers' FP8 hooks (layerwise casting) take {hooks.time_vs_compiled_bf16:.2f}x compiled "
            "bf16's time for the same storage."
        )
    nxt = (
        "`--model flux-dev` on a GPU for full size; FP8Config(compute='scaled_mm') (default on Ada/Hopper) for FP8 matmuls"
        if env.get("device") != "cuda"
        else "FP8Config(compute='scaled_mm') for FP8 matmuls; `--max-autotune` for fused casts"
    )
    lines.append(
        f"- Next: `python -m fp8pass report --model {env['model']}` for per-layer fidelity; {nxt}; "
        "on your model: torch.compile(model, backend='fp8pass')."
    )
    return "\n".join(lines)
