"""Per-layer conversion report: what was converted, what was not and why, bytes before/after."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from . import _compat, distributed
from .plan import Layer
from .quantize import stored_bytes

__all__ = ["LayerReport", "format_report", "layer_rows", "summarize", "summary_line"]

#: what a converted layer holds: (FP8 weight, scale, original released?)
Copy = tuple[torch.Tensor, torch.Tensor, bool]


@dataclass(frozen=True)
class LayerReport:
    """One linear / conv layer as the backend last saw it.

    ``bytes_before`` / ``bytes_after`` count the weight once: a layer that reuses another layer's
    weight shows 0 / 0 and names the layer that carries the bytes in ``note``.
    """

    name: str
    kind: str
    converted: bool
    reason: str
    compute: str | None
    bytes_before: int
    bytes_after: int
    weight: str = ""
    shape: tuple[int, ...] = ()
    dtype: str = ""
    granularity: str | None = None
    released: bool = False
    note: str = ""


def layer_rows(layers: Iterable[Layer], copy_of: Callable[[Layer], Copy | None]) -> list[LayerReport]:
    """One row per layer, the one place rows are built (backend and hooks). ``copy_of(layer)`` is
    what a converted layer holds, or None. Bytes come from the stored tensors themselves (a
    sharded weight's: this rank's shard); a weight used by several layers carries its bytes in its
    first row, the others name that row."""
    rows = []
    counted: dict[int, str] = {}
    for layer in layers:
        w = layer.weight.tensor if layer.weight is not None else None
        held = copy_of(layer) if layer.converted else None
        local = _compat.local_tensor(w)
        before = local.numel() * local.element_size() if w is not None else 0
        after = before
        if held is not None:
            q, scale, _ = held
            after = stored_bytes(
                _compat.local_tensor(q).shape, q.dtype, "channel" if scale.dim() else "tensor"
            )
        notes = list(layer.notes)
        if w is not None and (sharded := distributed.shard_note(w)):
            notes.append(sharded)
        if w is not None and id(w) in counted:
            before = after = 0
            notes.append(f"weight bytes counted under '{counted[id(w)]}'")
        elif w is not None:
            counted[id(w)] = layer.name
        rows.append(
            LayerReport(
                name=layer.name,
                kind=layer.kind,
                converted=layer.converted,
                reason=layer.reason,
                compute=layer.compute,
                bytes_before=before,
                bytes_after=after,
                weight=layer.weight.path if layer.weight else "",
                shape=tuple(w.shape) if w is not None else (),
                dtype=str(held[0].dtype if held else (w.dtype if w is not None else "")).removeprefix(
                    "torch."
                ),
                granularity=("channel" if held[1].dim() else "tensor") if held else None,
                released=bool(held and held[2]),
                note="; ".join(notes),
            )
        )
    return rows


def summarize(rows: Iterable[LayerReport]) -> dict[str, int | float]:
    """Totals: layers converted / total, weight bytes before and after, and their ratio."""
    rows = list(rows)
    before = sum(r.bytes_before for r in rows)
    after = sum(r.bytes_after for r in rows)
    return {
        "layers": len(rows),
        "converted": sum(r.converted for r in rows),
        "bytes_before": before,
        "bytes_after": after,
        "ratio": after / before if before else 1.0,
    }


def format_report(rows: Iterable[LayerReport], tablefmt: str = "github") -> str:
    """A tabulate table of ``rows`` followed by a totals line."""
    from tabulate import tabulate

    rows = list(rows)
    table = [
        [
            r.name,
            r.kind,
            "yes" if r.converted else "no",
            r.compute or "-",
            r.dtype,
            _size(r.bytes_before),
            _size(r.bytes_after),
            "; ".join(x for x in (r.reason, r.note) if x),
        ]
        for r in rows
    ]
    headers = ["layer", "kind", "fp8", "compute", "stored as", "before", "after", "reason / note"]
    return tabulate(table, headers=headers, tablefmt=tablefmt) + "\n" + summary_line(rows)


def summary_line(rows: Iterable[LayerReport]) -> str:
    """Layers converted and bytes; when nothing was converted, why, in words."""
    rows = list(rows)
    s = summarize(rows)
    line = (
        f"{s['converted']}/{s['layers']} layers converted; linear/conv weights "
        f"{_size(s['bytes_before'])} -> {_size(s['bytes_after'])} ({s['ratio']:.3f}x)"
    )
    if rows and not s["converted"]:
        reasons = Counter(_reason_kind(r.reason) for r in rows)
        line += ". Nothing was converted: " + ", ".join(f"{n} {why}" for why, n in reasons.most_common())
    return line


def _reason_kind(reason: str) -> str:
    """A reason without the layer-specific numbers and names, to count layers per reason."""
    if reason.startswith("matches skip pattern"):
        return "match a skip pattern"
    if "min_weight_numel" in reason:
        return f"have fewer elements than min_weight_numel={reason.rsplit('=', 1)[-1]}"
    return re.sub(r"'[^']*'|\b\d+\b", "…", reason)


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n} B"
