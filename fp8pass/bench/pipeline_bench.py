"""Whole pipelines, end to end: ``python -m fp8pass bench --pipeline flux-dev-tiny``.

One tiny pipeline (:mod:`fp8pass.bench.pipelines`) run from a prompt, encode + denoising steps +
decode, four ways: bf16 eager; bf16 with the same components compiled (Inductor) as the FP8
variants; fp8pass on the denoiser alone (text encoders compiled in bf16); fp8pass on the whole
pipeline (:func:`fp8pass.compile_pipeline`'s default: denoiser and text encoders). Timed like the
denoiser benchmark (every variant prepared first, then rounds in rotated order; ratios within
rounds), with the weight bytes of every component and the image's PSNR against bf16 eager.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..metrics import psnr
from ..pipeline import compile_pipeline, component_kind
from .pipelines import PIPELINES, build_tiny_pipeline
from .variants import UNSTABLE_SPREAD, Result, environment, held_weight_bytes, resolve_device, time_ms

__all__ = ["PIPELINE_VARIANTS", "run_pipeline_benchmark"]


def _bf16(pipe: Any) -> list:
    return []


def _bf16_compiled(pipe: Any) -> list:
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module) and component_kind(name, module) in (
            "denoiser",
            "text_encoder",
        ):
            module.compile()
    return []


def _denoiser_only(pipe: Any) -> list:
    names = [n for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)]
    denoisers = [n for n in names if component_kind(n, getattr(pipe, n)) == "denoiser"]
    for n in names:
        if component_kind(n, getattr(pipe, n)) == "text_encoder":
            getattr(pipe, n).compile()
    report = compile_pipeline(pipe, components=denoisers)
    return [report]


def _whole(pipe: Any) -> list:
    return [compile_pipeline(pipe)]


PIPELINE_VARIANTS = {
    "bf16 eager": _bf16,
    "bf16 compiled": _bf16_compiled,
    "fp8pass denoiser only": _denoiser_only,
    "fp8pass whole pipeline": _whole,
}


def _image(pipe: Any, call: dict) -> torch.Tensor:
    out = pipe(**{**call, "generator": torch.Generator().manual_seed(0)})
    x = torch.as_tensor(out.images if hasattr(out, "images") else out.frames).float()
    x = x.reshape(-1, *x.shape[-3:])
    return (x.permute(0, 3, 1, 2) if x.shape[-1] == 3 else x).clamp(0, 1)


def _weight_bytes(pipe: Any, reports: list) -> int:
    rows = [r for report in reports for c in report.components for be in c.backends for r in be.report()]
    modules = {id(m): m for m in pipe.components.values() if isinstance(m, torch.nn.Module)}.values()
    wrapper = torch.nn.ModuleList(list(modules))
    return held_weight_bytes(wrapper, rows, [])


def run_pipeline_benchmark(
    name: str = "flux-dev-tiny", device: str = "auto", steps: int = 3, rounds: int = 3, progress: bool = True
) -> tuple[dict[str, Any], list[Result]]:
    """The four variants of :data:`PIPELINE_VARIANTS` on the tiny pipeline ``name``."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    dev = resolve_device(device)
    env = {
        **environment(PIPELINES[name].denoiser, dev),
        "pipeline": name,
        "rounds": rounds,
        "steps_per_round": steps,
    }
    env["shape"] = "end to end: prompt encode + denoising steps + decode"
    env["interleaved"] = True
    prepared, results, reference = [], [], None
    for variant, prepare in PIPELINE_VARIANTS.items():
        pipe, call = build_tiny_pipeline(name, dev)
        reports = prepare(pipe)
        t0 = time.perf_counter()
        image = _image(pipe, call)
        first = time.perf_counter() - t0
        if reference is None:
            reference = image
        value = psnr(reference, image)
        result = Result(
            variant,
            first_call_s=first,
            weight_bytes=_weight_bytes(pipe, reports),
            sqnr_db=None if value == float("inf") else value,  # here: image PSNR against bf16 eager
            identical=value == float("inf"),
        )
        results.append(result)
        prepared.append((result, pipe, {**call, "generator": torch.Generator().manual_seed(0)}, []))
        if progress:
            print(f"prepared {variant}", flush=True)
    for r in range(rounds):
        shift = r % len(prepared)
        for _result, pipe, call, samples in prepared[shift:] + prepared[:shift]:
            pipe(**call)  # untimed: re-warm after the other variants
            samples.append(time_ms(lambda pipe=pipe, call=call: pipe(**call), dev, steps))
    base = None
    for result, _, _, samples in prepared:
        every = [t for block in samples for t in block]
        result.step_ms, result.step_ms_min, result.step_ms_max = (
            statistics.median(every),
            min(every),
            max(every),
        )
        result.round_ms = [statistics.median(block) for block in samples]
        result.unstable = max(result.round_ms) / min(result.round_ms) - 1 > UNSTABLE_SPREAD
        if result.variant == "bf16 compiled":
            base = result
    for result in results:
        if base is not None:
            ratios = [t / b for t, b in zip(result.round_ms, base.round_ms, strict=True)]
            result.time_vs_compiled_bf16 = statistics.median(ratios)
    return env, results
