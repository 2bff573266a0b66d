import json
import subprocess
import sys

import pytest
import torch

from fp8pass.bench import variants as bench


def test_benchmark_rows_spread_and_unsupported_variants():
    variants = [
        "bf16 eager",
        "bf16 compiled",
        "fp8 hooks (fp8pass.hooks)",
        "torchao fp8 dynamic per-row compiled",
    ]
    env, results = bench.run_benchmark(
        "flux-dev-tiny", "cpu", variants, steps=2, warmup=1, rounds=2, progress=False
    )
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["interleaved"]
    eager, compiled, hooks, dynamic = results
    assert eager.ok and compiled.ok and hooks.ok
    for r in (eager, compiled, hooks):
        assert len(r.round_ms) == 2 and r.step_ms_min <= r.step_ms <= r.step_ms_max
        assert r.time_vs_compiled_bf16 > 0
    assert compiled.time_vs_compiled_bf16 == 1.0
    assert eager.identical and eager.sqnr_db is None and 25 < hooks.sqnr_db < 100
    assert hooks.weight_bytes < eager.weight_bytes
    assert hooks.converted == "26/36"
    if not torch.cuda.is_available():  # torchao's dynamic FP8 needs sm89: a plain status, not an error
        assert dynamic.status == "not supported" and dynamic.error.startswith("not supported on cpu:")
    table = bench.format_results(env, results)
    assert "fp8 hooks (fp8pass.hooks)" in table and "time vs compiled bf16" in table
    assert "peak MiB: torch.cuda.max_memory_allocated" in table  # the footer explains every column
    data = json.loads(bench.to_json(env, results))  # standard JSON: no Infinity for the exact row
    assert data["results"][0]["identical"] is True and data["results"][0]["sqnr_db"] is None


def test_the_cpu_main_job_runs_full_width_layers_and_the_comparisons_that_say_something():
    """Without --model / --variants, a CPU runs flux-dev's full-width layers (not a tiny model whose
    64-wide layers make fixed costs decide the verdict) and no emulated FP8 matmul."""
    from fp8pass.bench import zoo

    assert zoo.default_model("cpu") == "flux-dev-128-2blocks" and zoo.default_model("cuda") == "flux-dev"
    cpu = bench.default_variants("cpu")
    assert cpu == [
        "bf16 eager",
        "bf16 compiled",
        "fp8 hooks (diffusers layerwise)",
        "fp8pass cast",
        "torchao fp8 weight-only compiled",
    ]
    assert {"fp8pass scaled_mm per-row", "fp8pass cast max-autotune"} <= set(bench.default_variants("cuda"))


def test_unknown_variant_and_model():
    with pytest.raises(ValueError, match="unknown variants"):
        bench.run_benchmark("flux-dev-tiny", "cpu", ["bf16 fast"], progress=False)
    with pytest.raises(ValueError, match="unknown model 'sd99'; choose one of sd15"):
        bench.run_benchmark("sd99", "cpu", progress=False)


def test_command_line_errors_are_one_line_with_the_valid_names():
    for args, valid in (
        (["--model", "sd99"], "flux-dev-tiny"),
        (["--variants", "bf16 fast"], "fp8pass cast"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "fp8pass", "bench", *args], capture_output=True, text=True
        )
        assert run.returncode == 2 and "invalid choice" in run.stderr and valid in run.stderr
        assert "Traceback" not in run.stderr


def test_fp8pass_on_torchaos_layers_converts_every_linear_and_no_convolution(monkeypatch):
    """The variant that compares fp8pass with torchao's weight-only path layer for layer: torchao's
    quantize_ converts every nn.Linear and nothing else, so must this one."""
    import functools

    from fp8pass import FP8Backend
    from fp8pass.bench import zoo

    monkeypatch.setattr(bench, "FP8Backend", functools.partial(FP8Backend, inner="aot_eager"))
    model, inputs = zoo.build("sd15-tiny")
    kinds = {name: type(m) for name, m in model.named_modules()}
    fn, extra = bench.VARIANTS["fp8pass cast, torchao's layers"].prepare(model, torch.device("cpu"), inputs)
    with torch.no_grad():
        fn(**inputs)
    rows = extra["report"]()
    converted = {r.name for r in rows if r.converted}
    assert converted == {name for name, cls in kinds.items() if cls is torch.nn.Linear}
    assert all(not r.converted for r in rows if issubclass(kinds.get(r.name, object), torch.nn.Conv2d))
    assert any(issubclass(kinds.get(r.name, object), torch.nn.Conv2d) for r in rows)
