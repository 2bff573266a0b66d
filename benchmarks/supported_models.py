"""The README's "supported models" table, measured.

Full-size models are built on the ``meta`` device (no memory, no values) and planned with the
module-level plan, which converts exactly the layers the compiled graph pass converts (checked on
every tiny model by tests/test_zoo.py). Fidelity is measured on the ``-tiny`` twins on this
machine's device: compiled (aot_eager) output SQNR for compute="cast" and "scaled_mm", and for the
two pipelines PSNR/SSIM of the decoded image against the bf16 pipeline (same seed, 4 steps).

    python benchmarks/supported_models.py --json benchmarks/results/supported_models-DATE.json
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
from tabulate import tabulate

from fp8pass import FP8Backend, FP8Config
from fp8pass.analyze import weight_bytes
from fp8pass.bench import zoo
from fp8pass.metrics import psnr, sqnr, ssim
from fp8pass.plan import plan_modules

FULL = ["sd15", "sdxl", "flux-dev", "sd35-medium", "wan21-1.3b"]


def static_counts(name: str, config: FP8Config) -> dict:
    model = zoo.build_model(name, "meta")
    counts = weight_bytes(model, config)
    kept = sorted(
        {
            la.reason.split(" '")[0]
            for la in plan_modules(model, config, check_values=False)
            if not la.converted
        }
    )
    return {
        "layers_converted": counts["layers_converted"],
        "layers_total": counts["layers_total"],
        "params_b": counts["params"] / 1e9,
        "linear_conv_bytes_bf16": counts["linear_conv_bytes_before"],
        "linear_conv_bytes_fp8": counts["linear_conv_bytes_after"],
        "model_bytes_ratio": counts["model_ratio"],
        "kept": kept,
    }


def compiled_sqnr(name: str, compute: str) -> float:
    torch._dynamo.reset()
    model, inputs = zoo.build(name)
    with torch.no_grad():
        ref = model(**inputs, return_dict=False)[0]
        be = FP8Backend(FP8Config(compute=compute), inner="aot_eager")
        out = torch.compile(model, backend=be, fullgraph=True)(**inputs, return_dict=False)[0]
    return sqnr(ref, out)


def pipeline_fidelity(name: str) -> tuple[float, float]:
    torch._dynamo.reset()
    pipe, call = zoo.build_pipeline(name)
    ref = pipe(**call, generator=torch.Generator().manual_seed(0)).images
    attr = "transformer" if name.startswith("flux") else "unet"
    setattr(
        pipe,
        attr,
        torch.compile(getattr(pipe, attr), backend=FP8Backend(FP8Config(compute="cast"), inner="aot_eager")),
    )
    out = pipe(**call, generator=torch.Generator().manual_seed(0)).images
    return psnr(ref, out), ssim(ref, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = FP8Config()
    rows = []
    for name in FULL:
        row = {"model": name, **static_counts(name, config)}
        row["tiny_sqnr_cast"] = compiled_sqnr(f"{name}-tiny", "cast")
        row["tiny_sqnr_scaled_mm"] = compiled_sqnr(f"{name}-tiny", "scaled_mm")
        if f"{name}-tiny" in ("sd15-tiny", "flux-dev-tiny"):
            row["tiny_pipeline_psnr"], row["tiny_pipeline_ssim"] = pipeline_fidelity(f"{name}-tiny")
        rows.append(row)
    env = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "device": "cpu",
        "config": "FP8Config() defaults",
    }
    table = [
        [
            r["model"],
            f"{r['params_b']:.2f}",
            f"{r['layers_converted']}/{r['layers_total']}",
            f"{r['linear_conv_bytes_bf16'] / 2**30:.2f} -> {r['linear_conv_bytes_fp8'] / 2**30:.2f}",
            f"{r['model_bytes_ratio']:.3f}",
            f"{r['tiny_sqnr_cast']:.1f} / {r['tiny_sqnr_scaled_mm']:.1f}",
            f"{r['tiny_pipeline_psnr']:.1f} / {r['tiny_pipeline_ssim']:.4f}"
            if "tiny_pipeline_psnr" in r
            else "-",
        ]
        for r in rows
    ]
    headers = [
        "model",
        "params (B)",
        "layers converted",
        "linear/conv GiB bf16 -> fp8",
        "all weights, x bf16",
        "tiny: SQNR dB cast / scaled_mm",
        "tiny pipeline: PSNR dB / SSIM",
    ]
    print(tabulate(table, headers=headers, tablefmt="github"))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
