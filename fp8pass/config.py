"""FP8Config: the one place fp8pass's options live, validated on construction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

import torch

__all__ = ["DEFAULT_SKIP", "FP8Config"]

# Layers kept in bf16 by default, matched with ``re.search`` against the layer's module path.
# Each pattern is anchored so that it names one family of layers and nothing else: an unanchored
# "norm" also matches Flux's AdaLN modulation linears (FIELD_NOTES 2.3). AdaLN modulation linears
# (``norm1.linear``, ``norm1_context.linear``, ``norm.linear`` inside blocks) are converted on
# purpose: they hold about a quarter of Flux's weights and read one row per sample, so they are
# the layers where FP8 storage saves the most bytes.
DEFAULT_SKIP: tuple[str, ...] = (
    # input embeddings: UNet conv_in, DiT patch / latent / context embedders
    r"^conv_in$",
    r"^(x_embedder|context_embedder|patch_embedding)$",
    r"^(pos_embed|patch_embed)\.proj$",
    # timestep / guidance / pooled-text embeddings: tiny, and they condition every block
    r"^(time_embedding|time_text_embed|add_embedding|condition_embedder)\.",
    # final output projection and the AdaLN that feeds it
    r"^(conv_out|proj_out)$",
    r"^norm_out\.",
    # PEFT LoRA adapter matrices (``to_q.lora_A.default``): small, and swapped, re-weighted or
    # fused by the user after loading, which needs their original values
    r"\.lora_(A|B)\.",
)

_COMPUTES = ("auto", "cast", "scaled_mm")
_GRANULARITIES = ("channel", "tensor")
_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


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
            matches any of them with ``re.search`` stays in its original dtype. Replaces the
            default; extend it with ``skip=(*DEFAULT_SKIP, r"my\\.layer")``.
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
    min_weight_numel: int = 4096
    release_weights: bool | str = True
    fuse_projections: bool = False
    _skip_res: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_choice("compute", self.compute, _COMPUTES)
        _check_choice("granularity", self.granularity, _GRANULARITIES)
        if self.dtype not in _DTYPES:
            raise ValueError(
                f"FP8Config.dtype must be one of torch.float8_e4m3fn, torch.float8_e5m2; got {self.dtype!r}"
            )
        if isinstance(self.skip, str) or not all(isinstance(p, str) for p in self.skip):
            raise ValueError(
                "FP8Config.skip must be a sequence of regular-expression strings, "
                f"e.g. skip=(*DEFAULT_SKIP, r'^proj_out$'); got {self.skip!r}"
            )
        compiled = []
        for pattern in self.skip:
            try:
                compiled.append(re.compile(pattern))
            except re.error as e:
                raise ValueError(f"FP8Config.skip: {pattern!r} is not a valid regular expression: {e}") from e
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
        object.__setattr__(self, "_skip_res", tuple(compiled))

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
        if "skip" in values:
            values["skip"] = tuple(values["skip"])
        return cls(**values)

    def skip_reason(self, name: str) -> str:
        """The reason ``name`` is skipped by a pattern, or ``""`` if no pattern matches it."""
        for pattern in self._skip_res:
            if pattern.search(name):
                return f"matches skip pattern {pattern.pattern!r}"
        return ""


def _check_choice(field_name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(
            f"FP8Config.{field_name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
        )
