"""From a checkpoint's own key layout to a diffusers model's, tensor by tensor.

Community checkpoints (ComfyUI's, Kijai's, the original releases) name their tensors as the
original code did (``double_blocks.0.img_attn.qkv.weight``), not as diffusers does
(``transformer_blocks.0.attn.to_q.weight``). diffusers ships a conversion function per model class
(``SINGLE_FILE_LOADABLE_CLASSES``); it renames keys and also chunks, splits and concatenates
tensors (fused q/k/v, Flux's single-block ``linear1``, swapped shift/scale). To use those functions
without holding the checkpoint, :func:`trace_mapping` runs one on stand-ins (``meta`` tensors that
record what is done to them) and returns, for every model key, a :class:`Piece`: the source tensor(s)
and the operations that make the model's tensor from them. :func:`replay` applies a piece to real
tensors read one at a time, so that an FP8 weight keeps its bytes (and its per-tensor scale, or its
per-row scale split the same way) through any split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Piece", "UnsupportedTransform", "converter_for", "replay", "sources", "trace_mapping"]

#: prefixes under which full checkpoints keep the denoiser's tensors
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")


class UnsupportedTransform(ValueError):
    """A conversion function did something to a tensor that :func:`replay` cannot repeat."""


@dataclass(frozen=True)
class Piece:
    """How to make one tensor: ``op`` applied to ``inputs`` (other pieces) with ``args``; a
    ``"source"`` piece is the checkpoint's tensor ``key``."""

    op: str
    args: tuple = ()
    inputs: tuple[Piece, ...] = ()
    key: str | None = None

    @property
    def whole_source(self) -> str | None:
        """The source key when this piece is that tensor unchanged (a pure rename)."""
        piece = self
        while piece.op == "same":
            piece = piece.inputs[0]
        return piece.key if piece.op == "source" else None


def sources(piece: Piece) -> set[str]:
    """The checkpoint keys a piece reads."""
    if piece.op == "source":
        return {piece.key}
    return set().union(*(sources(p) for p in piece.inputs)) if piece.inputs else set()


def replay(piece: Piece, read: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """The tensor ``piece`` describes, from real tensors ``read(key)`` returns."""
    if piece.op == "source":
        return read(piece.key)
    if piece.op == "constant":
        return piece.args[0]
    values = [replay(p, read) for p in piece.inputs]
    return _APPLY[piece.op](values, *piece.args)


def dim0_only(piece: Piece) -> bool:
    """Whether every operation of ``piece`` selects or joins whole rows (dim 0): then a per-row
    scale can be carried through it by replaying the same piece on the scale."""
    if piece.op in ("source", "same"):
        return all(dim0_only(p) for p in piece.inputs)
    if piece.op in ("chunk", "split", "cat"):
        return piece.args[-1 if piece.op != "cat" else 0] in (0, -0) and all(
            dim0_only(p) for p in piece.inputs
        )
    return False


_APPLY: dict[str, Callable[..., torch.Tensor]] = {
    "same": lambda v: v[0],
    "chunk": lambda v, chunks, i, dim: torch.chunk(v[0], chunks, dim)[i],
    "split": lambda v, sizes, i, dim: torch.split(v[0], sizes, dim)[i],
    "cat": lambda v, dim: torch.cat(v, dim),
    "getitem": lambda v, index: v[0][index],
    "reshape": lambda v, shape: v[0].reshape(shape),
    "permute": lambda v, dims: v[0].permute(dims),
}


class _Traced(torch.Tensor):
    """A ``meta`` tensor that remembers how it was made from the checkpoint's tensors."""

    piece: Piece

    @staticmethod
    def __new__(cls, meta: torch.Tensor, piece: Piece) -> _Traced:
        t = meta.as_subclass(cls)
        t.piece = piece
        return t

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        plain_args, plain_kwargs = _plain((args, kwargs))
        out = func(*plain_args, **plain_kwargs)
        if name in _METADATA or not _has_tensor(out):
            return out
        first = args[0] if args else None
        if name in ("chunk", "split", "unbind"):
            dim = plain_kwargs.get("dim", plain_args[2] if len(plain_args) > 2 else 0)
            arg = (
                plain_args[1]
                if len(plain_args) > 1
                else plain_kwargs.get("chunks", plain_kwargs.get("split_size_or_sections"))
            )
            if name == "unbind":
                raise UnsupportedTransform("unbind")
            op = "chunk" if name == "chunk" else "split"
            return tuple(_Traced(o, Piece(op, (arg, i, dim), (_piece_of(first),))) for i, o in enumerate(out))
        if name in ("cat", "concat", "concatenate"):
            tensors = args[0] if args else kwargs["tensors"]
            dim = plain_kwargs.get("dim", plain_args[1] if len(plain_args) > 1 else 0)
            pieces = tuple(_piece_of(t) for t in tensors)
            return _Traced(out, pieces[0] if len(pieces) == 1 else Piece("cat", (dim,), pieces))
        if name in _SAME:
            return _Traced(out, Piece("same", (), (_piece_of(first),)))
        if name == "__getitem__":
            return _Traced(out, Piece("getitem", (plain_args[1],), (_piece_of(first),)))
        if name in ("reshape", "view", "flatten", "squeeze", "unsqueeze"):
            return _Traced(out, Piece("reshape", (tuple(out.shape),), (_piece_of(first),)))
        if name in ("permute", "t", "transpose"):
            raise UnsupportedTransform(
                f"{name}: a transposed weight (fp8pass stores weights as the model holds them)"
            )
        raise UnsupportedTransform(f"torch.{name}")


_METADATA = {
    "shape",
    "size",
    "dim",
    "numel",
    "dtype",
    "device",
    "__len__",
    "ndim",
    "is_floating_point",
    "__get__",
    "__format__",
    "__repr__",
}
_SAME = {"to", "clone", "contiguous", "detach", "float", "half", "bfloat16", "type", "__torch_function__"}


def _piece_of(t: Any) -> Piece:
    if isinstance(t, _Traced):
        return t.piece
    if isinstance(t, torch.Tensor):
        return Piece("constant", (t,))
    raise UnsupportedTransform(f"a non-tensor operand {type(t).__name__}")


def _plain(value: Any) -> Any:
    if isinstance(value, _Traced):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value)


def converter_for(model: torch.nn.Module) -> Callable[..., dict] | None:
    """diffusers' single-file conversion function for ``model``'s class, if it has one."""
    try:
        from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    except ImportError:
        return None
    entry = SINGLE_FILE_LOADABLE_CLASSES.get(type(model).__name__)
    return entry["checkpoint_mapping_fn"] if entry else None


def strip_prefix(keys: list[str]) -> tuple[str, dict[str, str]]:
    """The prefix most keys share among :data:`PREFIXES` (or ``""``), and stripped key -> key."""
    for prefix in PREFIXES:
        if sum(k.startswith(prefix) for k in keys) > len(keys) // 2:
            return prefix, {k.removeprefix(prefix): k for k in keys if k.startswith(prefix)}
    return "", {k: k for k in keys}


def trace_mapping(
    model: torch.nn.Module, shapes: dict[str, tuple[torch.dtype, tuple[int, ...]]]
) -> tuple[dict[str, Piece], list[str]]:
    """Model key -> :class:`Piece`, for a checkpoint whose tensors have ``shapes`` (key -> (dtype,
    shape)), keys as the checkpoint names them minus a common prefix. Keys that already match the
    model's are taken as they are; otherwise diffusers' conversion function for the model's class
    runs on stand-ins. Also returns the checkpoint keys nothing reads."""
    expected = set(model.state_dict(keep_vars=True))
    if set(shapes) >= expected:
        mapping = {k: Piece("source", key=k) for k in expected}
        return mapping, sorted(set(shapes) - expected)
    convert = converter_for(model)
    if convert is None:
        missing = sorted(expected - set(shapes))
        raise ValueError(
            f"the checkpoint's keys are not {type(model).__name__}'s (first missing: '{missing[0]}'), and diffusers "
            "has no single-file conversion function for this class to map them"
        )
    stand_ins = {
        k: _Traced(torch.empty(shape, dtype=dtype, device="meta"), Piece("source", key=k))
        for k, (dtype, shape) in shapes.items()
    }
    config = dict(getattr(model, "config", {}) or {})
    try:
        converted = convert(checkpoint=dict(stand_ins), config=config)
    except UnsupportedTransform:
        raise
    except Exception as e:
        raise ValueError(
            f"diffusers' {convert.__name__} could not map this checkpoint to {type(model).__name__}: "
            f"{type(e).__name__}: {e}"
        ) from e
    mapping = {k: _piece_of(v) for k, v in converted.items() if k in expected}
    used = set().union(*(sources(p) for p in mapping.values())) if mapping else set()
    return mapping, sorted(set(shapes) - used)
