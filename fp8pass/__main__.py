"""Command line: ``python -m fp8pass bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fp8pass")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="hook vs compiled, FP8 vs bf16 on one zoo denoiser")
    bench.add_argument("--model", default="flux-dev-tiny", help="zoo model (default: flux-dev-tiny)")
    bench.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    bench.add_argument("--variants", nargs="+", help="variants to run (default: all that suit the device)")
    bench.add_argument("--steps", type=int, default=10)
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--max-autotune", action=argparse.BooleanOptionalAction, default=None)
    bench.add_argument("--json", type=Path, help="also write the results here")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    report = sub.add_parser("report", help="conversion report and per-layer FP8 fidelity of one zoo denoiser")
    report.add_argument("--model", default="flux-dev-tiny", help="zoo model (default: flux-dev-tiny)")
    report.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    report.add_argument("--granularity", default="channel", choices=["channel", "tensor"])
    report.add_argument("--dtype", default="e4m3fn", choices=["e4m3fn", "e5m2"])
    report.add_argument("--compute", default="auto", choices=["auto", "cast", "scaled_mm"])
    report.add_argument("--top", type=int, default=15, help="rows of the sensitivity table (0: all)")
    report.add_argument(
        "--alone", type=int, default=8, help="layers measured alone in FP8 (one forward each)"
    )
    layers = sub.add_parser("layers", help="bf16 vs FP8 cast vs FP8 scaled_mm at a zoo model's layer shapes")
    layers.add_argument(
        "--model", default="flux-dev", help="zoo model whose shapes to time (default: flux-dev)"
    )
    layers.add_argument("--device", default="auto")
    layers.add_argument("--mode", default=None, help="torch.compile mode (default: max-autotune on CUDA)")
    layers.add_argument("--max-m", type=int, help="only shapes with at most this many rows")
    layers.add_argument("--steps", type=int, default=20)
    layers.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "report":
        return _report(args)
    if args.command == "layers":
        return _layers(args)

    from . import bench as b

    env, results = b.run_benchmark(
        args.model, args.device, args.variants, args.steps, args.warmup, args.max_autotune, not args.quiet
    )
    print(b.format_results(env, results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(b.to_json(env, results))
        print(f"wrote {args.json}")
    return 0 if any(r.ok for r in results) else 1


def _layers(args: argparse.Namespace) -> int:
    import json

    import torch

    from .bench import resolve_device
    from .layerbench import format_layer_results, run_layer_benchmark

    device = resolve_device(args.device)
    mode = args.mode or ("max-autotune" if device.type == "cuda" else None)
    gpu = f"  gpu={torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"model={args.model}  torch={torch.__version__}  device={device}{gpu}  mode={mode}")
    rows = run_layer_benchmark(args.model, device, mode, args.max_m, args.steps)
    print(format_layer_results(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2, default=list))
    return 0


def _report(args: argparse.Namespace) -> int:
    import torch

    from . import zoo
    from .analyze import analyze
    from .backend import FP8Backend
    from .bench import resolve_device
    from .config import FP8Config
    from .metrics import sqnr

    device = resolve_device(args.device)
    config = FP8Config(
        compute=args.compute, granularity=args.granularity, dtype=getattr(torch, f"float8_{args.dtype}")
    )
    model, inputs = zoo.build(args.model, device)
    print(
        f"model={args.model} ({zoo.MODELS[args.model].shape_note})  device={device}  torch={torch.__version__}  "
        f"compute={config.compute}  granularity={config.granularity}  dtype={config.dtype}"
    )
    fidelity = analyze(model, inputs, config, alone=args.alone)
    with torch.no_grad():
        reference = model(**inputs, return_dict=False)[0]
        be = FP8Backend(config, inner="aot_eager")
        compiled = torch.compile(model, backend=be)(**inputs, return_dict=False)[0]
    print("\n## Conversion (fp8pass backend, aot_eager)\n")
    print(be.report_table())
    print(f"compiled output SQNR vs the original model: {sqnr(reference, compiled):.1f} dB")
    print("\n## Fidelity (eager, same FP8 weights)\n")
    print(fidelity.table(args.top or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
