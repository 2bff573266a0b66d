"""Command line: ``python -m fp8pass COMMAND``.

Nothing heavy is imported until a command runs: ``python -m fp8pass --help`` loads neither torch
nor the harness, and each command imports what it needs when it runs. Errors a user can fix print
one line naming the flag to change; ``--verbose`` shows the traceback (and third-party warnings).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMMANDS",
    "Command",
    "UsageError",
    "choices_help",
    "config_arguments",
    "config_from",
    "main",
    "write_text",
]

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


class UsageError(Exception):
    """A mistake on the command line: printed as one line, no traceback."""


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module`` defines ``<name>_arguments(parser)`` and ``<name>(args) -> int``,
    imported only when the command runs."""

    summary: str
    module: str
    description: str = ""

    def load(self, name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
        module = importlib.import_module(self.module)
        return getattr(module, f"{name}_arguments"), getattr(module, name)


def config_arguments(p: argparse.ArgumentParser) -> None:
    """The FP8Config options the commands that convert take, their choices from the tables."""
    from .computes import AUTO, COMPUTES
    from .config import FP8_DTYPES, GRANULARITIES

    p.add_argument("--granularity", default=GRANULARITIES[0], choices=GRANULARITIES)
    p.add_argument(
        "--dtype", default=next(iter(FP8_DTYPES)), choices=list(FP8_DTYPES), help="FP8 storage dtype"
    )
    p.add_argument("--compute", default=AUTO, choices=[AUTO, *COMPUTES])


def config_from(args: argparse.Namespace):  # -> FP8Config
    from .config import FP8_DTYPES, FP8Config

    return FP8Config(
        compute=getattr(args, "compute", "auto"), granularity=args.granularity, dtype=FP8_DTYPES[args.dtype]
    )


# -- convert -------------------------------------------------------------------------------------


def convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="diffusers model folder, or a .safetensors file")
    p.add_argument("destination", type=Path, help="the fp8pass .safetensors file to write (a new file)")
    p.add_argument(
        "--config", type=Path, help="the model's config.json (or its folder), for a single-file source"
    )
    p.add_argument("--model-class", help="diffusers class (default: the config's _class_name)")
    config_arguments(p)
    p.add_argument("--model-dtype", choices=["bfloat16", "float16", "float32"], help="dtype of kept tensors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def convert(args: argparse.Namespace) -> int:
    from .checkpoint import convert, model_config_path

    if model_config_path(args.source, args.config) is None:
        raise UsageError(
            f"{args.source} is a single file, which carries no config.json: pass --config "
            "path/to/config.json (or the diffusers model folder it belongs to)"
        )
    model_class = None
    if args.model_class:
        import diffusers

        model_class = getattr(diffusers, args.model_class, None)
        if model_class is None:
            raise UsageError(f"--model-class: diffusers has no class {args.model_class!r}")
    import torch

    config = config_from(args)

    def bar(done: int, total: int, name: str) -> None:
        _progress(done, total, name)

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


_HARNESS = "fp8pass.bench.commands"

COMMANDS: dict[str, Command] = {
    "bench": Command(
        "hook vs compiled, FP8 vs bf16, fp8pass vs torchao on one denoiser: time, memory, fidelity",
        _HARNESS,
        "Every way of running one denoiser, in one process: step time (with its spread), time "
        "against compiled bf16, first call, weight memory, SQNR against bf16 eager; then a conclusion.",
    ),
    "convert": Command(
        "write an fp8pass file from a diffusers folder, a safetensors file or a community FP8 file",
        __name__,
        "Reads and writes one tensor at a time: the model is never held in bf16. The destination "
        "appears whole or not at all, and may not be one of the source's files.",
    ),
    "report": Command("conversion report and per-layer FP8 fidelity of one zoo denoiser", _HARNESS),
    "layers": Command("bf16 vs FP8 cast vs FP8 scaled_mm at a model's real layer shapes", _HARNESS),
    "sweep": Command(
        "every denoiser class diffusers ships (small configs), under fp8pass",
        _HARNESS,
        "Runs every entry of fp8pass.bench.catalogue through fp8pass (both compute paths, aot_eager "
        "on this device): layers converted, boundary kept, SQNR, graph breaks, whether every path "
        "plans the same layers.",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv)  # prints the help, or the error, and exits
        return 2
    name, command = argv[0], COMMANDS[argv[0]]
    arguments, run = command.load(name)
    parser = argparse.ArgumentParser(
        prog=f"python -m fp8pass {name}", description=command.description or command.summary
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and third-party warnings")
    arguments(parser)
    args = parser.parse_args(argv[1:])
    if not args.verbose:
        _quiet_third_parties()
    try:
        return run(args)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        print("(--verbose shows the traceback)", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if args.verbose:
            raise
        print(
            f"error: {name} needs the package {e.name!r}: pip install 'fp8pass[bench]' (or the package itself)",
            file=sys.stderr,
        )
        return 2


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fp8pass",
        description="FP8 weight storage for diffusion models, as a torch.compile backend. "
        "`python -m fp8pass COMMAND --help` describes each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.summary, add_help=False)
    return parser


def choices_help(names: list[str], default: str = "") -> str:
    return "one of: " + ", ".join(names) + (f" (default: {default})" if default else "")


def write_text(path: Path, text: str) -> None:
    """``text`` and a newline to ``path``, its folder made if missing (JSON and markdown outputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:50]:<50}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _quiet_third_parties() -> None:
    # diffusers and transformers set their loggers' levels from these when first imported
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_QUIET_MODULES)
