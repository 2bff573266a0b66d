"""Per-layer conversion report: what was converted, what was not and why, bytes before/after."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LayerReport", "format_report", "summarize"]


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
            r.reason or r.note,
        ]
        for r in rows
    ]
    headers = ["layer", "kind", "fp8", "compute", "stored as", "before", "after", "reason / note"]
    s = summarize(rows)
    total = (
        f"{s['converted']}/{s['layers']} layers converted; linear/conv weights "
        f"{_size(s['bytes_before'])} -> {_size(s['bytes_after'])} ({s['ratio']:.3f}x)"
    )
    return tabulate(table, headers=headers, tablefmt=tablefmt) + "\n" + total


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n} B"
