"""fp8pass: FP8 weight storage for diffusion denoisers, as a torch.compile backend.

    >>> import torch, fp8pass
    >>> # unet = torch.compile(unet, backend=fp8pass.fp8_backend)

Importing fp8pass registers its custom ops; it imports neither Inductor nor Dynamo and does not
touch CUDA. The backend name ``"fp8pass"`` reaches ``torch.compile`` through the package's
``torch_dynamo_backends`` entry point (see pyproject.toml), so it needs no import at all.
"""

from . import _compat
from .backend import FP8Backend, fp8_backend
from .checkpoint import load_fp8, load_model, save_fp8
from .config import DEFAULT_SKIP, FP8Config
from .pipeline import PipelineReport, compile_pipeline
from .report import LayerReport, format_report
from .store import restore

__all__ = [
    # the backend
    "FP8Backend",
    "fp8_backend",
    "restore",
    # the whole pipeline: denoisers, text encoders, ControlNets (and the VAE on request)
    "compile_pipeline",
    "PipelineReport",
    # FP8 checkpoints: save, load from any checkpoint, build and load
    "save_fp8",
    "load_fp8",
    "load_model",
    # configuration
    "FP8Config",
    "DEFAULT_SKIP",
    # reporting
    "LayerReport",
    "format_report",
]

__version__ = "0.1.0"


# The entry point covers installed copies; a source checkout on sys.path is covered here when
# Dynamo is already imported (importing it just for this would slow down `import fp8pass`).
_compat.register_backend_name("fp8pass", fp8_backend)
