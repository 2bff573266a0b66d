#!/usr/bin/env bash
# The GPU measurements in one call, for a lent H100/H200 (torch 2.11, Python 3.12, no torchao/diffusers):
#   GPU tests, the benchmark on each full-size model named, and the layer micro-benchmark.
# Results land in $OUT (the device tool's folder) or benchmarks/results/gpu-DATE: commit them there.
#
# Before the call, on the dev machine, in the repo root (wheels travel with `carry: [".whl"]`):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     torchao==0.18.0 diffusers==0.42.1 huggingface-hub safetensors regex   # + what `pip show` says is missing
# One call runs at most 10 minutes. Measured on an H100 (2026-11-24): the CUDA tests take 40 s;
# each flux-dev variant compiles in 85-140 s (caches off) and is timed in ~10 s, so five variants
# fill a call: name them with BENCH_VARIANTS. `--json` is written after every variant, so a run cut
# off by the limit keeps what it measured.
#   BENCH_VARIANTS='"bf16 compiled" "fp8pass cast" "fp8pass scaled_mm per-row" "torchao fp8 dynamic per-row compiled" "torchao fp8 weight-only compiled"' \
#     bash benchmarks/gpu_suite.sh flux-dev          # issue 29's first call: fp8pass and torchao in one process
#   BENCH_VARIANTS='"bf16 compiled" "fp8pass cast max-autotune" "fp8pass scaled_mm per-row fused"' \
#     bash benchmarks/gpu_suite.sh flux-dev          # second: max-autotune and fused projections
#   then: sd15 sdxl (their rows), and CROSSOVERS=1 for compute="auto"'s table (benchmarks/crossovers.py)
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
out=${OUT:-benchmarks/results/gpu-$(date +%F)}
mkdir -p "$out"
models=("${@:-flux-dev}")

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/env.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/env.txt"
python3 -m pytest -q -m cuda tests 2>&1 | tail -20 | tee "$out/tests.log"
for m in "${models[@]}"; do
  eval "variants=(${BENCH_VARIANTS:-})"
  python3 -m fp8pass bench --model "$m" --device cuda --quiet --json "$out/bench-$m.json" \
    ${variants[@]+--variants "${variants[@]}"} 2>&1 | tail -20 | tee -a "$out/bench.log"
done
python3 -m fp8pass layers --model "${models[0]}" --max-m 256 --json "$out/layers-${models[0]}.json" 2>&1 | tail -40 | tee "$out/layers.log"
if [ -n "${CROSSOVERS:-}" ]; then
  python3 benchmarks/crossovers.py measure --model "${models[0]}" --json "$out/crossovers-${models[0]}.json" 2>&1 | tail -5 | tee "$out/crossovers.log"
fi
# peak GPU memory while loading an FP8 checkpoint into a meta skeleton (issue 7: the 16 GB card case)
python3 benchmarks/load_memory.py --model "${models[0]}" --device cuda --json "$out/load-memory-${models[0]}.json" 2>&1 | tail -3 | tee "$out/load-memory.log"
