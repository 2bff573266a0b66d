"""Per-layer conversion report: what was converted, what was not and why, bytes before/after."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LayerReport", "format_report", "summarize", "summary_line"]


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
