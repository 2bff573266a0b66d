"""Command line: ``python -m fp8pass {bench,report,layers}``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

# Third-party chatter that makes a working install look broken on the first screen (torchao's
# optional CUDA kernels, Dynamo's notes on diffusers' code, deprecations). The command line hides
# it unless --verbose; as a library fp8pass leaves warnings and logging alone.
_QUIET_LOGGERS = (
    "torchao",
    "torch.utils._pytree",
    "diffusers",
    "transformers",
    "torch._dynamo",
    "torch._inductor",
)
_QUIET_MODULES = r"(torch|torchao|diffusers|transformers|peft|accelerate)(\.|$)"


def _quiet_third_parties() -> None:
    # diffusers and transformers set their loggers' levels from these when first imported
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_QUIET_MODULES)


def _models() -> list[str]:
    from .bench.zoo import MODELS

    return list(MODELS)


def main(argv: list[str] | None = None) -> int:
    from .bench.variants import VARIANTS

    models = _models()
    parser = argparse.ArgumentParser(prog="python -m fp8pass")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser(
        "bench",
        help="hook vs compiled, FP8 vs bf16 on one zoo denoiser",
        description="Every way of running one denoiser, in one process: step time (with its spread), "
        "time against compiled bf16, first call, weight memory, SQNR against bf16 eager.",
    )
    bench.add_argument(
        "--model", default="flux-dev-tiny", choices=models, metavar="MODEL", help=_choices(models)
    )
    bench.add_argument("--device", default="auto", help="cpu, cuda, or auto (default: cuda when present)")
    bench.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=_choices(list(VARIANTS), "all that suit the device"),
    )
    bench.add_argument("--steps", type=int, default=5, help="timed steps per variant per round (default: 5)")
    bench.add_argument("--rounds", type=int, default=3, help="timing rounds over all variants (default: 3)")
    bench.add_argument(
        "--warmup", type=int, default=2, help="untimed steps after the first call (default: 2)"
    )
    bench.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep every variant and time them round by round (default: when they fit in half the free memory)",
    )
    bench.add_argument(
        "--max-autotune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the max-autotune and fused variants (default: on CUDA only; they tune for minutes on a CPU)",
    )
    bench.add_argument(
        "--pipeline",
        metavar="PIPELINE",
        help="time a whole tiny pipeline end to end instead (bf16, FP8 denoiser only, FP8 whole pipeline): "
        "sd15-tiny, sdxl-tiny, flux-dev-tiny, sd3-tiny, wan-tiny, qwen-image-tiny",
    )
    bench.add_argument("--json", type=Path, help="also write the results here (standard JSON)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--verbose", action="store_true", help="show third-party warnings and logs")

    report = sub.add_parser("report", help="conversion report and per-layer FP8 fidelity of one zoo denoiser")
    report.add_argument(
        "--model", default="flux-dev-tiny", choices=models, metavar="MODEL", help=_choices(models)
    )
    report.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    report.add_argument("--granularity", default="channel", choices=["channel", "tensor"])
    report.add_argument("--dtype", default="e4m3fn", choices=["e4m3fn", "e5m2"])
    report.add_argument("--compute", default="auto", choices=["auto", "cast", "scaled_mm"])
    report.add_argument("--top", type=int, default=15, help="rows of the sensitivity table (0: all)")
    report.add_argument(
        "--alone", type=int, default=8, help="layers measured alone in FP8 (one forward each)"
    )
    report.add_argument("--verbose", action="store_true", help="show third-party warnings and logs")

    layers = sub.add_parser("layers", help="bf16 vs FP8 cast vs FP8 scaled_mm at a zoo model's layer shapes")
    layers.add_argument("--model", default="flux-dev", choices=models, metavar="MODEL", help=_choices(models))
    layers.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    layers.add_argument("--mode", default=None, help="torch.compile mode (default: max-autotune on CUDA)")
    layers.add_argument("--max-m", type=int, help="only shapes with at most this many rows")
    layers.add_argument(
        "--steps", type=int, default=20, help="timed calls per shape and variant (default: 20)"
    )
    layers.add_argument("--json", type=Path, help="also write the results here")
    layers.add_argument("--verbose", action="store_true", help="show third-party warnings and logs")

    sweep = sub.add_parser(
        "sweep",
        help="every denoiser class diffusers ships (small configs), under fp8pass",
        description="Runs every entry of fp8pass.bench.catalogue through fp8pass (both compute paths, "
        "aot_eager on this device): layers converted, boundary kept, SQNR, graph breaks, whether every "
        "path plans the same layers.",
    )
    sweep.add_argument("--entries", nargs="+", metavar="ENTRY", help="catalogue entries (default: all)")
    sweep.add_argument("--json", type=Path, help="also write the rows here")
    sweep.add_argument("--markdown", type=Path, help="also write the table here")
    sweep.add_argument("--verbose", action="store_true", help="show third-party warnings and logs")

    convert = sub.add_parser(
        "convert",
        help="write an fp8pass file from a diffusers folder, a safetensors file or a community FP8 file",
        description="Reads and writes one tensor at a time: the model is never held in bf16.",
    )
    convert.add_argument("source", type=Path, help="diffusers model folder, or a .safetensors file")
    convert.add_argument("destination", type=Path, help="the fp8pass .safetensors file to write")
    convert.add_argument("--config", type=Path, help="config.json (or its folder) for a single-file source")
    convert.add_argument("--model-class", help="diffusers class (default: the config's _class_name)")
    convert.add_argument("--granularity", default="channel", choices=["channel", "tensor"])
    convert.add_argument("--dtype", default="e4m3fn", choices=["e4m3fn", "e5m2"], help="FP8 storage dtype")
    convert.add_argument(
        "--model-dtype", choices=["bfloat16", "float16", "float32"], help="dtype of kept tensors"
    )
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.add_argument("--verbose", action="store_true", help="show third-party warnings and logs")

    args = parser.parse_args(argv)
    if not args.verbose:
        _quiet_third_parties()
    commands = {"bench": _bench, "report": _report, "layers": _layers, "sweep": _sweep, "convert": _convert}
    return commands[args.command](args)


def _choices(names: list[str], default: str = "") -> str:
    return "one of: " + ", ".join(names) + (f" (default: {default})" if default else "")


def _write_text(path: Path, text: str) -> None:
    """``text`` and a newline to ``path``, its folder made if missing (JSON and markdown outputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _bench(args: argparse.Namespace) -> int:
    from .bench import variants as b

    device = b.resolve_device(args.device)
    if args.pipeline:
        from .bench.pipeline_bench import run_pipeline_benchmark

        env, results = run_pipeline_benchmark(
            args.pipeline, args.device, args.steps, args.rounds, not args.quiet
        )
        print(b.format_environment(env))
        print(b.format_results(env, results))
        print(
            "(pipeline mode: 'step ms' is one pipeline call end to end; 'SQNR dB' is the image's PSNR against bf16 eager)"
        )
        if args.json:
            _write_text(args.json, b.to_json(env, results))
        return 0
    print(b.format_environment(b.environment(args.model, device)), flush=True)

    def save(env: dict, results: list) -> None:  # after every variant: a killed run keeps its rows
        _write_text(args.json, b.to_json({**env, "complete": False}, results))

    env, results = b.run_benchmark(
        args.model,
        args.device,
        args.variants,
        args.steps,
        args.warmup,
        args.max_autotune,
        not args.quiet,
        rounds=args.rounds,
        interleave=args.interleave,
        on_result=save if args.json else None,
    )
    print(b.format_results(env, results))
    if args.json:
        _write_text(args.json, b.to_json({**env, "complete": True}, results))
        print(f"wrote {args.json}")
    if not args.verbose:
        print("(third-party warnings hidden; --verbose shows them)")
    return 0 if any(r.ok for r in results) else 1


def _convert(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import convert
    from .config import FP8Config

    model_class = None
    if args.model_class:
        import diffusers

        model_class = getattr(diffusers, args.model_class, None)
        if model_class is None:
            print(f"error: diffusers has no class {args.model_class!r}", file=sys.stderr)
            return 2
    config = FP8Config(granularity=args.granularity, dtype=getattr(torch, f"float8_{args.dtype}"))

    def bar(done: int, total: int, name: str) -> None:
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name[:50]:<50}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    convert(
        args.source,
        args.destination,
        config,
        model_class=model_class,
        model_config=args.config,
        dtype=getattr(torch, args.model_dtype) if args.model_dtype else None,
        progress=None if args.quiet else bar,
    )
    print(f"wrote {args.destination}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import torch

    from .bench.sweep import format_sweep, run_sweep, to_json

    torch.set_num_threads(1)  # tiny models: one thread is faster and steadier on a shared machine
    env, rows = run_sweep(args.entries)
    table = format_sweep(rows)
    print(table)
    if args.json:
        _write_text(args.json, to_json(env, rows))
    if args.markdown:
        _write_text(args.markdown, table)
    return 0 if not any(r.error for r in rows) else 1


def _layers(args: argparse.Namespace) -> int:
    import json

    import torch

    from .bench.layers import format_layer_results, run_layer_benchmark
    from .bench.variants import resolve_device

    device = resolve_device(args.device)
    mode = args.mode or ("max-autotune" if device.type == "cuda" else None)
    gpu = f"  gpu={torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"model={args.model}  torch={torch.__version__}  device={device}{gpu}  mode={mode}", flush=True)
    rows = run_layer_benchmark(args.model, device, mode, args.max_m, args.steps)
    print(format_layer_results(rows))
    if args.json:
        _write_text(args.json, json.dumps(rows, indent=2, default=list, allow_nan=False))
    return 0


def _report(args: argparse.Namespace) -> int:
    import torch

    from .analyze import analyze
    from .backend import FP8Backend
    from .bench import zoo
    from .bench.variants import resolve_device
    from .config import FP8Config
    from .metrics import sqnr

    device = resolve_device(args.device)
    config = FP8Config(
        compute=args.compute, granularity=args.granularity, dtype=getattr(torch, f"float8_{args.dtype}")
    )
    print(
        f"model={args.model} ({zoo.MODELS[args.model].shape_note})  device={device}  torch={torch.__version__}  "
        f"compute={config.compute}  granularity={config.granularity}  dtype={config.dtype}",
        flush=True,
    )
    model, inputs = zoo.build(args.model, device)
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
