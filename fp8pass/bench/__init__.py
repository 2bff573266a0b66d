"""The harness around the library: a model zoo, the benchmark and the layer micro-benchmark.

- :mod:`fp8pass.bench.zoo`: diffusers denoisers from their published configs, random weights with
  checkpoint-like statistics, inputs at real shapes.
- :mod:`fp8pass.bench.variants`: every way of running one denoiser, timed (``python -m fp8pass bench``).
- :mod:`fp8pass.bench.layers`: bf16 vs FP8 at a model's real layer shapes (``python -m fp8pass layers``).
- :mod:`fp8pass.bench.lora`: LoRA hot-swapping on an fp8pass-compiled model (a test's scenario,
  ``benchmarks/compile_cost.py``'s measurement).

Nothing in the library imports from here.
"""
