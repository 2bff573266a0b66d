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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
