"""FP8 checkpoints: save a model's converted weights once, load them without ever materialising
the model in its original precision on the device.

    >>> fp8pass.save_fp8(unet, "unet-fp8.safetensors")                  # doctest: +SKIP
    >>> with torch.device("meta"):                                        # doctest: +SKIP
    ...     unet = UNet2DConditionModel(**config)                         # a skeleton, no memory
    >>> config = fp8pass.load_fp8(unet, "unet-fp8.safetensors", "cuda")   # doctest: +SKIP
    >>> unet = torch.compile(unet, backend=FP8Backend(config))            # doctest: +SKIP

The file is safetensors: each converted weight as ``NAME.fp8`` (float8) and ``NAME.fp8_scale``
(float32), every other parameter and buffer as ``NAME``, and the :class:`FP8Config` in the metadata.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from . import _compat, store
from .config import FP8Config
from .plan import plan_modules
from .quantize import quantize_weight

__all__ = ["load_fp8", "save_fp8"]

_FORMAT = "fp8pass-1"


def save_fp8(model: torch.nn.Module, path: str | Path, config: FP8Config | None = None) -> None:
    """Write ``model``'s weights to ``path``, the layers ``config`` converts in FP8.

    ``model`` may be unconverted, or already converted by the fp8pass backend with the same dtype
    and granularity (then its FP8 copies are saved as they are; its originals may be gone).
    """
    from safetensors.torch import save_file

    config = config or FP8Config()
    plan = plan_modules(model, config, check_values=False)
    converted = {id(la.weight.tensor) for la in plan if la.converted}
    tensors: dict[str, torch.Tensor] = {}
    dtypes: dict[str, str] = {}  # a converted weight's own dtype: the one it loads back as
    aliases: dict[str, str] = {}
    seen: dict[int, str] = {}
    named = list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    )
    for name, t in named:
        if id(t) in seen:  # tied weights are stored once
            aliases[name] = seen[id(t)]
            continue
        seen[id(t)] = name
        if id(t) in converted:
            q, scale = _fp8_copy(t, config, name)
            # a fused group's copies are views of one buffer: safetensors stores each on its own
            q, scale = (t if _owns_storage(t) else t.clone() for t in (q.cpu(), scale.cpu()))
            tensors[f"{name}.fp8"], tensors[f"{name}.fp8_scale"] = q, scale
            dtypes[name] = str(t.dtype).removeprefix("torch.")
        elif _compat.is_released(t):
            raise ValueError(
                f"save_fp8: '{name}' was released by an earlier conversion that this config does not "
                "repeat (compare its dtype, granularity and skip list with the compiling backend's)."
            )
        else:
            tensors[name] = t.detach().cpu().contiguous()
    metadata = {
        "format": _FORMAT,
        "config": json.dumps(config.to_dict()),
        "aliases": json.dumps(aliases),
        "dtypes": json.dumps(dtypes),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_fp8(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> FP8Config:
    """Fill ``model`` (typically built on the ``meta`` device) from an FP8 checkpoint, on ``device``.

    Every tensor loads with the dtype it had when it was saved, whatever the skeleton's dtype
    (a skeleton built under ``torch.device("meta")`` is float32): converted weights become
    parameters of their saved dtype and shape that hold no memory, with their FP8 copies
    registered for the fp8pass backend; at most one such weight is ever allocated in full,
    transiently. Returns the :class:`FP8Config` the file was written with: compile with it
    (another dtype or granularity cannot use the stored FP8 weights).
    """
    from safetensors import safe_open

    device = torch.device(device)
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"load_fp8: {path} is not an fp8pass checkpoint (written by fp8pass.save_fp8)")
        config = FP8Config.from_dict(json.loads(metadata["config"]))
        aliases = json.loads(metadata["aliases"])
        keys = set(f.keys())
        dtypes = _saved_dtypes(metadata, f, keys)
        expected = {n for n, _ in model.named_parameters(remove_duplicate=False)} | {
            n for n, _ in model.named_buffers(remove_duplicate=False)
        }
        stored = {k.removesuffix(".fp8") for k in keys if not k.endswith(".fp8_scale")} | set(aliases)
        if missing := sorted(expected - stored):
            raise ValueError(
                f"load_fp8: {path} has no tensor for {len(missing)} of the model's, first '{missing[0]}'"
            )
        if unexpected := sorted(stored - expected):
            raise ValueError(
                f"load_fp8: {path} holds {len(unexpected)} tensors the model lacks, first '{unexpected[0]}'"
            )
        loaded: dict[str, torch.Tensor] = {}
        fp8: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name in sorted(stored - set(aliases)):
            if f"{name}.fp8" in keys:
                loaded[name] = _hollow_parameter(_tensor(model, name).shape, dtypes[name], device)
                fp8[name] = (f.get_tensor(f"{name}.fp8"), f.get_tensor(f"{name}.fp8_scale"))
            else:
                loaded[name] = f.get_tensor(name)
    for name, alias_of in aliases.items():
        loaded[name] = loaded[alias_of]
    for name, value in loaded.items():
        _assign(model, name, value)
    for name, (q, scale) in fp8.items():
        store.adopt(model, loaded[name], config, q, scale)
    return config


def _fp8_copy(t: torch.Tensor, config: FP8Config, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    entry = store.lookup(t, config)
    if entry is not None:
        return entry.q, entry.scale
    if _compat.is_released(t):
        raise ValueError(f"save_fp8: '{name}' was converted with another dtype/granularity than {config}")
    return quantize_weight(t, config.dtype, config.granularity)


def _saved_dtypes(metadata: dict, f: Any, keys: set[str]) -> dict[str, torch.dtype]:
    """Converted weight -> its dtype when saved. Files written before the ``dtypes`` entry existed
    take the dtype their unconverted floating tensors share."""
    if "dtypes" in metadata:
        return {name: getattr(torch, d) for name, d in json.loads(metadata["dtypes"]).items()}
    kept = {f.get_slice(k).get_dtype() for k in keys if not k.endswith((".fp8", ".fp8_scale"))}
    floats = {d for d in kept if d in ("BF16", "F16", "F32")}
    if len(floats) != 1:
        raise ValueError(
            "load_fp8: this checkpoint does not record its weights' dtype and its other tensors do "
            f"not agree on one ({sorted(floats)}); save it again with this version of fp8pass.save_fp8"
        )
    dtype = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}[floats.pop()]
    return defaultdict(lambda: dtype)


def _hollow_parameter(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.nn.Parameter:
    """A parameter of this shape, dtype and device that holds no memory (its FP8 copy is adopted
    by the store); one such tensor is allocated in full, transiently, as it is made."""
    param = torch.nn.Parameter(torch.empty(shape, dtype=dtype, device=device), requires_grad=False)
    _compat.release_storage(param)
    return param


def _owns_storage(t: torch.Tensor) -> bool:
    return t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()


def _tensor(model: torch.nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(module_name), attr)


def _assign(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Put ``value`` where ``name`` is: a parameter stays a parameter, a buffer keeps its persistence."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, attr)
    if isinstance(old, torch.nn.Parameter) and not isinstance(value, torch.nn.Parameter):
        value = torch.nn.Parameter(value, requires_grad=old.requires_grad)
    setattr(module, attr, value)
