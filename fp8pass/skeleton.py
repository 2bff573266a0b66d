"""Building a model to load weights into: its ``config.json`` (checked), its class, and a skeleton
whose parameters hold no memory; putting loaded tensors in place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ._compat.storage import release_storage
from .safetensors_io import CheckpointError

__all__ = [
    "assign",
    "diffusers_class",
    "hollow_parameter",
    "model_config_path",
    "read_model_config",
    "skeleton",
]


def model_config_path(source: str | Path, model_config: str | Path | None = None) -> Path | None:
    """The ``config.json`` a model is built from: ``model_config`` (a file, or the folder it is
    in), else ``source``'s own; None where there is none (a single checkpoint file)."""
    path = Path(model_config) if model_config is not None else Path(source)
    path = path / "config.json" if path.is_dir() else path
    return path if path.suffix == ".json" and path.is_file() else None


def read_model_config(source: str | Path, model_config: dict | str | Path | None) -> dict:
    if isinstance(model_config, dict):
        return model_config
    path = model_config_path(source, model_config)
    if path is None:
        raise ValueError(
            f"no config.json for {source}: pass model_config= (a dict, a config.json, or the diffusers "
            "model folder it is in); a single checkpoint file does not carry one"
        )
    if path.stat().st_size > 2**20:
        raise CheckpointError(path, "is over 1 MiB: not a model's config.json")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(path, f"is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(path, "is not a JSON object")
    return data


def diffusers_class(source: str | Path, cfg: dict) -> type:
    import diffusers

    name = cfg.get("_class_name", "")
    model_class = getattr(diffusers, name, None) if isinstance(name, str) and name else None
    if model_class is None:
        raise ValueError(
            f"{source}'s config names no diffusers class ({name!r}); pass model_class= (--model-class)"
        )
    return model_class


def skeleton(model_class: type, model_config: dict, source: Any = None) -> torch.nn.Module:
    """``model_class`` from its config with every parameter on the ``meta`` device and buffers
    real: what ``from_pretrained`` builds before loading (``accelerate.init_empty_weights``). A
    config written for another class is refused, naming both."""
    from accelerate import init_empty_weights

    named = model_config.get("_class_name")
    if isinstance(named, str) and named and named != model_class.__name__:
        raise ValueError(
            f"{source or 'the config'} holds a {named}, not a {model_class.__name__}: pass {named} as the "
            f"model class (diffusers.{named}), or a config.json written for {model_class.__name__}"
        )
    kwargs = {k: v for k, v in model_config.items() if not k.startswith("_")}
    with init_empty_weights(include_buffers=False):
        return (
            model_class.from_config(kwargs) if hasattr(model_class, "from_config") else model_class(**kwargs)
        )


def hollow_parameter(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.nn.Parameter:
    """A parameter of this shape, dtype and device that holds no memory (its FP8 copy is adopted
    by the store); one such tensor is allocated in full, transiently, as it is made."""
    param = torch.nn.Parameter(torch.empty(shape, dtype=dtype, device=device), requires_grad=False)
    release_storage(param)
    return param


def assign(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Put ``value`` where ``name`` is: a parameter stays a parameter, a buffer keeps its persistence."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, attr)
    if isinstance(old, torch.nn.Parameter) and not isinstance(value, torch.nn.Parameter):
        value = torch.nn.Parameter(value, requires_grad=old.requires_grad)
    setattr(module, attr, value)
