"""fp8pass: FP8 weight storage for diffusion denoisers, as a torch.compile backend.

    >>> import torch, fp8pass
    >>> # unet = torch.compile(unet, backend=fp8pass.fp8_backend)

The public names below load on first use (``from fp8pass import FP8Backend`` imports the backend
then), so that ``import fp8pass`` and ``python -m fp8pass --help`` cost nothing: no torch, no
Inductor, no CUDA. Using any of them registers fp8pass's custom ops. The backend name
``"fp8pass"`` reaches ``torch.compile`` through the package's ``torch_dynamo_backends`` entry point
(see pyproject.toml), so ``torch.compile(model, backend="fp8pass")`` needs no import at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    # the backend
    "FP8Backend": "backend",
    "fp8_backend": "backend",
    "restore": "store",
    # the whole pipeline: denoisers, text encoders, ControlNets (and the VAE on request)
    "compile_pipeline": "pipeline",
    "PipelineReport": "pipeline",
    # FP8 checkpoints: save, load from any checkpoint, build and load, convert
    "save_fp8": "checkpoint",
    "load_fp8": "checkpoint",
    "load_model": "checkpoint",
    "convert": "checkpoint",
    "CheckpointError": "safetensors_io",
    # configuration
    "FP8Config": "config",
    "DEFAULT_SKIP": "config",
    # reporting
    "LayerReport": "report",
    "format_report": "report",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'fp8pass' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from .backend import FP8Backend, fp8_backend  # noqa: F401
    from .checkpoint import convert, load_fp8, load_model, save_fp8  # noqa: F401
    from .config import DEFAULT_SKIP, FP8Config  # noqa: F401
    from .pipeline import PipelineReport, compile_pipeline  # noqa: F401
    from .report import LayerReport, format_report  # noqa: F401
    from .safetensors_io import CheckpointError  # noqa: F401
    from .store import restore  # noqa: F401
