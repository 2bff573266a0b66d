"""The harness's commands: ``python -m fp8pass bench | report | layers | sweep`` (:mod:`fp8pass.cli`
dispatches here, and imports this module only when one of them runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import UsageError, choices_help, config_arguments, config_from, write_text

__all__ = [
    "bench",
    "bench_arguments",
    "layers",
    "layers_arguments",
    "report",
    "report_arguments",
    "sweep",
    "sweep_arguments",
]


def bench_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench.variants import VARIANTS
    from ..bench.zoo import MODELS, default_model

    models = list(MODELS)
    p.add_argument(
        "--model",
        choices=models,
        metavar="MODEL",
        help=choices_help(models, f"{default_model('cuda')} on a GPU, {default_model('cpu')} on a CPU"),
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default: cuda when present)")
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=choices_help(list(VARIANTS), "those that suit the device"),
    )
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant per round (default: 3)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds over all variants (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first call (default: 1)")
    p.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep every variant and time them round by round (default: when they fit in half the free memory)",
    )
    p.add_argument(
        "--max-autotune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the max-autotune and fused variants (default: on CUDA only; they tune for minutes on a CPU)",
    )
    p.add_argument(
        "--pipeline",
        metavar="PIPELINE",
        help="time a whole tiny pipeline end to end instead (bf16, FP8 denoiser only, FP8 whole pipeline): "
        "sd15-tiny, sdxl-tiny, flux-dev-tiny, sd3-tiny, wan-tiny, qwen-image-tiny",
    )
    p.add_argument("--json", type=Path, help="also write the results here (standard JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def bench(args: argparse.Namespace) -> int:
    from ..bench import variants as b
    from ..bench.zoo import default_model

    device = b.resolve_device(args.device)
    if args.pipeline:
        from ..bench.pipeline_bench import run_pipeline_benchmark

        env, results = run_pipeline_benchmark(
            args.pipeline, args.device, args.steps, args.rounds, not args.quiet
        )
        print(b.format_environment(env))
        print(b.format_results(env, results))
        print(
            "(pipeline mode: 'step ms' is one pipeline call end to end; 'SQNR dB' is the image's PSNR against bf16 eager)"
        )
        if args.json:
            write_text(args.json, b.to_json(env, results))
        return 0
    model = args.model or default_model(device.type)
    print(b.format_environment(b.environment(model, device)), flush=True)

    def save(env: dict, results: list) -> None:  # after every variant: a killed run keeps its rows
        write_text(args.json, b.to_json({**env, "complete": False}, results))

    env, results = b.run_benchmark(
        model,
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
    print()
    print(b.conclusion(env, results))
    if args.json:
        write_text(args.json, b.to_json({**env, "complete": True}, results))
        print(f"wrote {args.json}")
    if not args.verbose:
        print("(third-party warnings hidden; --verbose shows them)")
    return 0 if any(r.ok for r in results) else 1


def report_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench.zoo import MODELS

    models = list(MODELS)
    p.add_argument(
        "--model", default="flux-dev-tiny", choices=models, metavar="MODEL", help=choices_help(models)
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    config_arguments(p)
    p.add_argument("--top", type=int, default=15, help="rows of the sensitivity table (0: all)")
    p.add_argument("--alone", type=int, default=8, help="layers measured alone in FP8 (one forward each)")


def report(args: argparse.Namespace) -> int:
    import torch

    from ..analyze import analyze
    from ..backend import FP8Backend
    from ..bench import zoo
    from ..bench.variants import resolve_device
    from ..metrics import sqnr

    device = resolve_device(args.device)
    config = config_from(args)
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


def layers_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench.zoo import MODELS, default_model

    models = list(MODELS)
    p.add_argument(
        "--model",
        choices=models,
        metavar="MODEL",
        help=choices_help(models, f"{default_model('cuda')} on a GPU, {default_model('cpu')} on a CPU"),
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument("--mode", default=None, help="torch.compile mode (default: max-autotune on CUDA)")
    p.add_argument("--max-m", type=int, help="only shapes with at most this many rows")
    p.add_argument("--steps", type=int, default=20, help="timed calls per shape and variant (default: 20)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def layers(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..bench.layers import format_layer_results, run_layer_benchmark
    from ..bench.variants import resolve_device
    from ..bench.zoo import default_model

    device = resolve_device(args.device)
    model = args.model or default_model(device.type)
    mode = args.mode or ("max-autotune" if device.type == "cuda" else None)
    gpu = f"  gpu={torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"model={model}  torch={torch.__version__}  device={device}{gpu}  mode={mode}", flush=True)
    rows = run_layer_benchmark(model, device, mode, args.max_m, args.steps, progress=not args.quiet)
    print(format_layer_results(rows))
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2, default=list, allow_nan=False))
    return 0


def sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--entries", nargs="+", metavar="ENTRY", help="catalogue entries (default: all)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--markdown", type=Path, help="also write the table here")


def sweep(args: argparse.Namespace) -> int:
    import torch

    from ..bench.catalogue import CATALOGUE
    from ..bench.sweep import format_sweep, run_sweep, to_json

    if unknown := sorted(set(args.entries or ()) - set(CATALOGUE)):
        raise UsageError(
            f"--entries: no catalogue entry {unknown[0]!r}; the sweep's entries are the catalogue's"
        )
    torch.set_num_threads(1)  # tiny models: one thread is faster and steadier on a shared machine
    env, rows = run_sweep(args.entries)
    table = format_sweep(rows)
    print(table)
    if args.json:
        write_text(args.json, to_json(env, rows))
    if args.markdown:
        write_text(args.markdown, table)
    return 0 if not any(r.error for r in rows) else 1
