import json

import pytest
import torch

from fp8pass import bench


def test_benchmark_rows_and_failures_are_reported():
    variants = ["bf16 eager", "fp8 hooks (fp8pass.hooks)", "torchao fp8 dynamic per-row compiled"]
    env, results = bench.run_benchmark("flux-dev-tiny", "cpu", variants, steps=2, warmup=1, progress=False)
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    eager, hooks, dynamic = results
    assert eager.ok and hooks.ok and eager.step_ms > 0 and hooks.step_ms > 0
    assert eager.sqnr_db == float("inf") and 25 < hooks.sqnr_db < float("inf")
    assert hooks.weight_bytes < eager.weight_bytes
    assert hooks.converted == "26/36"
    if not torch.cuda.is_available():  # torchao's dynamic FP8 needs sm89: a row that says so
        assert not dynamic.ok and "compute capability" in dynamic.error
    table = bench.format_results(env, results)
    assert "fp8 hooks (fp8pass.hooks)" in table and "SQNR" in table
    assert json.loads(bench.to_json(env, results))["results"][1]["variant"] == "fp8 hooks (fp8pass.hooks)"


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variants"):
        bench.run_benchmark("flux-dev-tiny", "cpu", ["bf16 fast"], progress=False)
