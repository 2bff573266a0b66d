"""Fidelity report: how much each converted layer, and the whole model, lose to FP8.

Runs eagerly, in the model's own dtype, with the same layers and the same FP8 weights as the
compiled path (:func:`fp8pass.plan.plan_modules`, :func:`fp8pass.quantize.quantize_weight`), and
leaves the model's weights as they were.

    >>> rep = analyze(model, inputs, FP8Config())     # doctest: +SKIP
    >>> print(rep.table(10))                          # the 10 most sensitive layers
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import FP8Config
from .kinds import KINDS
from .metrics import sqnr
from .plan import Layer, plan_modules
from .quantize import dequantize_weight, quantize_weight, stored_bytes
from .structure import split_inputs, structure_of

__all__ = ["FidelityReport", "LayerFidelity", "analyze", "weight_bytes"]


@dataclass(frozen=True)
class LayerFidelity:
    """One converted layer.

    ``weight_sqnr``: the FP8 weight against the original. ``output_sqnr``: the layer's output with
    the FP8 weight against its original output, on the same (original-model) input, so that only
    this layer's error counts. ``alone_sqnr``: the model's output when this layer alone is in FP8
    (computed for the layers with the lowest ``output_sqnr``; None elsewhere).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    weight_sqnr: float
    output_sqnr: float
    alone_sqnr: float | None = None


@dataclass
class FidelityReport:
    config: FP8Config
    end_to_end_sqnr: float
    layers: list[LayerFidelity] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def most_sensitive(self, k: int | None = None) -> list[LayerFidelity]:
        """Layers ranked most sensitive first: by ``alone_sqnr`` where measured, then by ``output_sqnr``."""

        def key(row: LayerFidelity) -> tuple[float, float]:
            return (row.alone_sqnr if row.alone_sqnr is not None else math.inf, row.output_sqnr)

        ranked = sorted(self.layers, key=key)
        return ranked[:k] if k else ranked

    def table(self, k: int | None = None, tablefmt: str = "github") -> str:
        from tabulate import tabulate

        def db(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"

        rows = [
            [
                r.name,
                r.kind,
                "x".join(map(str, r.shape)),
                db(r.weight_sqnr),
                db(r.output_sqnr),
                db(r.alone_sqnr),
            ]
            for r in self.most_sensitive(k)
        ]
        headers = [
            "layer (most sensitive first)",
            "kind",
            "weight shape",
            "weight SQNR",
            "layer-output SQNR",
            "model SQNR, alone",
        ]
        return (
            tabulate(rows, headers=headers, tablefmt=tablefmt)
            + f"\nend-to-end output SQNR, every layer in FP8: {self.end_to_end_sqnr:.1f} dB"
            + f" ({len(self.layers)} layers converted, {len(self.skipped)} kept)"
        )


@torch.no_grad()
def analyze(
    model: torch.nn.Module, example_inputs: Any, config: FP8Config | None = None, *, alone: int = 8
) -> FidelityReport:
    """Measure FP8 error per layer and end to end on ``example_inputs`` (a dict of keyword
    arguments, a tuple of positional ones, or one tensor); ``alone`` bounds how many layers get
    the (one forward each) alone-in-FP8 measurement. SQNRs are in dB against the unconverted model."""
    config = config or FP8Config()
    plan = plan_modules(model, config, structure=structure_of(model, *split_inputs(example_inputs)))
    converted = [layer for layer in plan if layer.converted]
    fp8 = {
        id(layer.module.weight): quantize_weight(
            layer.module.weight, config.dtype, config.granularity, KINDS[layer.kind].scale_axis
        )
        for layer in converted
    }

    outputs: dict[str, float] = {}
    with _layer_output_probes(converted, fp8, outputs):
        reference = _output(model, example_inputs)
    with _fp8_weights(converted, fp8):
        end_to_end = sqnr(reference, _output(model, example_inputs))

    rows = {
        layer.name: LayerFidelity(
            layer.name,
            layer.kind,
            tuple(layer.module.weight.shape),
            sqnr(layer.module.weight, _dequantized(layer, fp8)),
            outputs.get(layer.name, math.nan),
        )
        for layer in converted
    }
    for row in sorted(rows.values(), key=lambda r: r.output_sqnr)[:alone]:
        layer = next(la for la in converted if la.name == row.name)
        with _fp8_weights([layer], fp8):
            alone_sqnr = sqnr(reference, _output(model, example_inputs))
        rows[row.name] = LayerFidelity(**{**row.__dict__, "alone_sqnr": alone_sqnr})
    skipped = [(layer.name, layer.reason) for layer in plan if not layer.converted]
    return FidelityReport(config, end_to_end, list(rows.values()), skipped)


def _output(model: torch.nn.Module, inputs: Any) -> torch.Tensor:
    args, kwargs = split_inputs(inputs)
    out = model(*args, **kwargs)
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list):
        return out[0]
    return next(v for v in vars(out).values() if isinstance(v, torch.Tensor))


def _dequantized(layer: Layer, fp8: dict) -> torch.Tensor:
    q, scale = fp8[id(layer.module.weight)]
    return dequantize_weight(q, scale, layer.module.weight.dtype, KINDS[layer.kind].scale_axis)


@contextlib.contextmanager
def _swapped(weight: torch.nn.Parameter, value: torch.Tensor) -> Iterator[None]:
    original = weight.data
    weight.data = value
    try:
        yield
    finally:
        weight.data = original


@contextlib.contextmanager
def _layer_output_probes(layers: list[Layer], fp8: dict, outputs: dict[str, float]) -> Iterator[None]:
    """During a reference forward, rerun each converted layer on its input with its FP8 weight."""

    def probe(layer: Layer):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            with _swapped(module.weight, _dequantized(layer, fp8)):
                outputs[layer.name] = sqnr(out, module.forward(*args, **kwargs))

        return hook

    handles = [la.module.register_forward_hook(probe(la), with_kwargs=True) for la in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _fp8_weights(layers: list[Layer], fp8: dict) -> Iterator[None]:
    """Forwards in which ``layers`` use their dequantized FP8 weights, one layer's copy at a time."""
    stacks: dict[int, list[torch.Tensor]] = {}

    def pre(layer: Layer):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            stacks.setdefault(id(module), []).append(module.weight.data)
            module.weight.data = _dequantized(layer, fp8)

        return hook

    def post(module: torch.nn.Module, args: tuple, out: Any) -> None:
        module.weight.data = stacks[id(module)].pop()

    handles = []
    for la in layers:
        handles.append(la.module.register_forward_pre_hook(pre(la)))
        handles.append(la.module.register_forward_hook(post, always_call=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def weight_bytes(
    model: torch.nn.Module, config: FP8Config | None = None, example_inputs: Any = None
) -> dict[str, float]:
    """What ``config`` does to ``model``'s weight memory, from shapes alone (works on ``meta``
    models, with ``meta`` example inputs): linear/conv weight bytes before and after, the whole
    model's ratio, layer counts."""
    config = config or FP8Config()
    structure = structure_of(model, *split_inputs(example_inputs)) if example_inputs is not None else None
    layers = plan_modules(model, config, check_values=False, structure=structure)
    seen: set[int] = set()
    before = after = 0
    for layer in layers:
        w = layer.module.weight
        if id(w) in seen:
            continue
        seen.add(id(w))
        size = w.numel() * w.element_size()
        before += size
        axis = KINDS[layer.kind].scale_axis
        after += stored_bytes(w.shape, config.dtype, config.granularity, axis) if layer.converted else size
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() * p.element_size() for p in params)
    return {
        "layers_converted": sum(la.converted for la in layers),
        "layers_total": len(layers),
        "params": sum(p.numel() for p in params),
        "linear_conv_bytes_before": before,
        "linear_conv_bytes_after": after,
        "model_ratio": (total - before + after) / total if total else 1.0,
    }
