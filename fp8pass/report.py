"""Per-layer conversion report: what was converted, what was not and why, bytes before/after."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from . import distributed
from ._compat.storage import local_tensor
from .plan import Layer

__all__ = [
    "LayerReport",
    "format_report",
    "human_bytes",
    "layer_rows",
    "reason_counts",
    "reason_family",
    "summarize",
    "summary_line",
]

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
        local = local_tensor(w)
        before = local.numel() * local.element_size() if w is not None else 0
        after = before
        if held is not None:
            q, scale, _ = held
            after = sum(local_tensor(t).numel() * t.element_size() for t in (q, scale))
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
            human_bytes(r.bytes_before),
            human_bytes(r.bytes_after),
            "; ".join(x for x in (r.reason, r.note) if x),
        ]
        for r in rows
    ]
    headers = ["layer", "kind", "fp8", "compute", "stored as", "before", "after", "reason / note"]
    return tabulate(table, headers=headers, tablefmt=tablefmt) + "\n" + summary_line(rows)


def summary_line(rows: Iterable[LayerReport]) -> str:
    """Layers converted and bytes; the layers kept in their dtype, counted by why (and the option
    that changes it)."""
    rows = list(rows)
    s = summarize(rows)
    line = (
        f"{s['converted']}/{s['layers']} layers converted; layer weights "
        f"{human_bytes(s['bytes_before'])} -> {human_bytes(s['bytes_after'])} ({s['ratio']:.3f}x)"
    )
    if kept := reason_counts(rows):
        line += ". Kept in their dtype: " + "; ".join(f"{n} {why}" for why, n in kept.items())
    return line


#: reason families (a prefix or a phrase of the reason) -> how the summary counts them
_FAMILIES = (
    ("matches skip pattern", "match a skip pattern (FP8Config.skip)"),
    ("min_weight_numel", "are smaller than min_weight_numel={} (FP8Config.min_weight_numel)"),
    ("input layer", "are input layers (FP8Config.keep_boundary, FP8Config.convert)"),
    ("output layer", "are output layers (FP8Config.keep_boundary, FP8Config.convert)"),
    ("NaN or Inf", "hold NaN or Inf"),
    ("weight dtype", "have a weight that is not bfloat16, float16 or float32"),
    ("weight shared with", "share a weight with a layer that stays unconverted"),
    ("computed in the graph", "use a weight computed in the graph, not a parameter"),
    ("also read by", "have a weight also read outside a layer"),
    ("stored in its dtype by", "were stored in their dtype by the checkpoint they were loaded from"),
)


def reason_counts(rows: Iterable[LayerReport]) -> dict[str, int]:
    """Unconverted layers counted by the family of their reason, most common first: what a
    summary line (and the benchmark's conclusion) says of the layers fp8pass kept."""
    counts = Counter(reason_family(r.reason) for r in rows if not r.converted)
    return dict(counts.most_common())


def reason_family(reason: str) -> str:
    """The family of a reason (see ``_FAMILIES``), or its first clause where it has none."""
    for phrase, family in _FAMILIES:
        if phrase in reason:
            return family.format(reason.rsplit("=", 1)[-1]) if "{}" in family else family
    return reason.split(":")[0].split(" (")[0]


def human_bytes(n: float) -> str:
    """``n`` bytes in the largest unit that keeps it at 1 or more (GiB, MiB, KiB, B)."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n} B"
