"""FP8Config: the one place fp8pass's options live, validated on construction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from .computes import AUTO, COMPUTES

__all__ = ["DEFAULT_SKIP", "FP8_DTYPES", "GRANULARITIES", "FP8Config"]

# Layers kept in their dtype by default whatever the model's structure, matched with ``re.search``
# against the layer's module path: PEFT LoRA adapter matrices (``to_q.lora_A.default``), small,
# and swapped, re-weighted or fused by the user after loading, which needs their original values.
# The model's boundary layers (embedders, output projections) are kept by its structure, not by
# name: see ``keep_boundary`` and fp8pass.structure.
DEFAULT_SKIP: tuple[str, ...] = (r"\.lora_(A|B)\.",)

#: the ``granularity`` choices: one scale per output channel, or one per weight
GRANULARITIES = ("channel", "tensor")
#: the FP8 storage dtypes, by the names the command line and checkpoint metadata use
FP8_DTYPES: dict[str, torch.dtype] = {"e4m3fn": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


@dataclass(frozen=True)
class FP8Config:
    """What fp8pass converts and how.

    Args:
        compute: ``"auto"`` picks ``"scaled_mm"`` for layers whose weight lives on a CUDA device of
            compute capability 8.9 or newer and ``"cast"`` elsewhere. ``"cast"`` stores the weight in
            FP8 and casts it up to the activation dtype right before the matmul. ``"scaled_mm"``
            also quantizes the activation per call and runs an FP8 matmul (``torch._scaled_mm``,
            which exists on CPU too, slowly).
        granularity: ``"channel"`` keeps one scale per output channel, ``"tensor"`` one per weight.
            For ``"scaled_mm"`` it also sets the activation scaling: per row, or per tensor.
        dtype: FP8 storage dtype, ``torch.float8_e4m3fn`` or ``torch.float8_e5m2``.
            Activations are always quantized to e4m3.
        skip: regular expressions; a layer whose module path (``"down_blocks.0.resnets.0.conv1"``)
            matches any of them with ``re.search`` stays in its original dtype (keep more).
            Replaces the default; extend it with ``skip=(*DEFAULT_SKIP, r"my\\.layer")``.
        keep_boundary: keep the model's boundary layers (those that read only the model's inputs,
            no block's output: patch / context embedders, timestep / guidance / pooled-text
            embedders; and those that read the blocks' output and feed no block: output
            projections) in their dtype. Decided from the model's structure, see
            :mod:`fp8pass.structure`.
        convert: regular expressions; a boundary layer whose module path matches one converts
            anyway (convert a boundary layer on purpose).
        min_weight_numel: weights with fewer elements stay in their original dtype.
        release_weights: ``True`` frees the original weight storage once the FP8 copy exists;
            ``"cpu"`` frees it too but keeps a copy in CPU memory, so that :func:`fp8pass.restore`
            can bring the model back; ``False`` keeps the originals where they are (no memory
            saved; for debugging and comparisons).
        fuse_projections: run converted linears that read the same input (attention's q/k/v,
            Flux single blocks' q/k/v and MLP input) as one matmul over their concatenated FP8
            weights, with one activation quantization on the ``scaled_mm`` path. Needs
            ``granularity="channel"`` (per-channel scales concatenate exactly). The fused weight
            is one buffer and each layer's FP8 copy a view into it, so memory does not grow.
            Off by default until GPU measurements show it pays.

    Example:
        >>> FP8Config(compute="cast", granularity="tensor").granularity
        'tensor'
    """

    compute: str = "auto"
    granularity: str = "channel"
    dtype: torch.dtype = torch.float8_e4m3fn
    skip: tuple[str, ...] = DEFAULT_SKIP
    keep_boundary: bool = True
    convert: tuple[str, ...] = ()
    min_weight_numel: int = 4096
    release_weights: bool | str = True
    fuse_projections: bool = False
    _skip_res: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _convert_res: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_choice("compute", self.compute, (AUTO, *COMPUTES))
        _check_choice("granularity", self.granularity, GRANULARITIES)
        if self.dtype not in FP8_DTYPES.values():
            raise ValueError(
                f"FP8Config.dtype must be one of torch.float8_e4m3fn, torch.float8_e5m2; got {self.dtype!r}"
            )
        skip_res = _patterns("skip", self.skip)
        convert_res = _patterns("convert", self.convert)
        if not isinstance(self.keep_boundary, bool):
            raise ValueError(f"FP8Config.keep_boundary must be True or False; got {self.keep_boundary!r}")
        if (
            isinstance(self.min_weight_numel, bool)
            or not isinstance(self.min_weight_numel, int)
            or self.min_weight_numel < 0
        ):
            raise ValueError(f"FP8Config.min_weight_numel must be an int >= 0; got {self.min_weight_numel!r}")
        if not (isinstance(self.release_weights, bool) or self.release_weights == "cpu"):
            raise ValueError(
                f"FP8Config.release_weights must be True, False or 'cpu'; got {self.release_weights!r}"
            )
        if not isinstance(self.fuse_projections, bool):
            raise ValueError(
                f"FP8Config.fuse_projections must be True or False; got {self.fuse_projections!r}"
            )
        if self.fuse_projections and self.granularity != "channel":
            raise ValueError(
                "FP8Config.fuse_projections=True needs granularity='channel': per-tensor scales of "
                "different layers cannot share one matmul"
            )
        object.__setattr__(self, "skip", tuple(self.skip))
        object.__setattr__(self, "convert", tuple(self.convert))
        object.__setattr__(self, "_skip_res", skip_res)
        object.__setattr__(self, "_convert_res", convert_res)

    @property
    def storage_key(self) -> tuple[torch.dtype, str]:
        """What makes two FP8 copies of one weight interchangeable: storage dtype and granularity."""
        return (self.dtype, self.granularity)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able values (the dtype by name); :meth:`from_dict` reads it back.

        Example:
            >>> FP8Config.from_dict(FP8Config(granularity="tensor").to_dict()) == FP8Config(granularity="tensor")
            True
        """
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        out["dtype"] = str(self.dtype).removeprefix("torch.")
        out["skip"] = list(self.skip)
        out["convert"] = list(self.convert)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FP8Config:
        """The config :meth:`to_dict` wrote; unknown keys are refused, missing ones take defaults."""
        known = {f.name for f in fields(cls) if f.init}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"FP8Config.from_dict: unknown fields {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "dtype" in values:
            values["dtype"] = getattr(torch, values["dtype"], values["dtype"])
        for name in ("skip", "convert"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def skip_reason(self, name: str) -> str:
        """The reason ``name`` is skipped by a pattern, or ``""`` if no pattern matches it."""
        for pattern in self._skip_res:
            if pattern.search(name):
                return f"matches skip pattern {pattern.pattern!r}"
        return ""

    def boundary_reason(self, name: str, boundary: str) -> str:
        """``boundary`` (why the layer ``name`` is a boundary layer, or ``""``) when this config
        keeps boundary layers and no ``convert`` pattern names the layer; else ``""``."""
        if not boundary or not self.keep_boundary or any(p.search(name) for p in self._convert_res):
            return ""
        return boundary


def _patterns(field_name: str, patterns: Any) -> tuple[re.Pattern[str], ...]:
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
        raise ValueError(
            f"FP8Config.{field_name} must be a sequence of regular-expression strings, "
            f"e.g. {field_name}=(r'^proj_out$',); got {patterns!r}"
        )
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise ValueError(
                f"FP8Config.{field_name}: {pattern!r} is not a valid regular expression: {e}"
            ) from e
    return tuple(compiled)


def _check_choice(field_name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(
            f"FP8Config.{field_name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
        )
