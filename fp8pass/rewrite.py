"""The FX rewrite: each converted layer's call becomes an fp8pass op on an FP8 weight and a scale.

:func:`rewrite` copies Dynamo's graph and applies small named replacements to the copy, in the
style of PyTorch's own ``fx_passes``: :func:`_add_fp8_inputs` (two placeholders per converted
weight or fused group), :func:`_replace_call` (one layer's call -> its op) and
:func:`_replace_group` (one op over a group's concatenated weight, split back per layer). Every
node they add carries ``meta["val"]`` (and Dynamo's ``meta["example_value"]``), a fake tensor of
its output. The decisions come from :mod:`fp8pass.plan`; the ops from :mod:`fp8pass.kinds`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx

from ._compat.graph import carry_dynamo_metadata, copy_graph_module, fake_empty, fake_eval, fake_mode_of
from .computes import COMPUTES
from .config import FP8Config
from .kinds import KINDS, arg
from .plan import Layer
from .quantize import scale_shape

__all__ = ["rewrite"]


def rewrite(
    gm: fx.GraphModule, layers: list[Layer], config: FP8Config, groups: Sequence[Sequence[Layer]] = ()
) -> tuple[fx.GraphModule, list[tuple[int, ...]]]:
    """A new GraphModule in which each converted layer of ``layers`` calls an fp8pass op.

    The FP8 weight and scale of each converted parameter become two new graph inputs, appended
    after Dynamo's; the second return value lists, for each such pair, the position of the
    parameter's own input (a 1-tuple). Each group of ``groups`` (see
    :func:`fp8pass.plan.projection_groups`) instead gets one pair, its concatenated FP8 weight and
    scales, listed with the positions of all its parameters. They are inputs, not constants,
    because Dynamo reuses a graph for every module instance whose parameters match in shape
    (another model of the same class, the next block after a graph break): the caller feeds the
    FP8 copies of the parameters actually passed. ``gm`` is left untouched.
    """
    new_gm, env = copy_graph_module(gm)
    graph = new_gm.graph
    fake_mode = fake_mode_of(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    inputs = _FP8Inputs(graph, env[placeholders[-1]], {p.target for p in placeholders}, fake_mode)
    grouped = {id(la) for group in groups for la in group}
    for group in groups:
        positions = tuple(placeholders.index(_weight_node(la)) for la in group)
        rows = sum(la.weight.tensor.shape[0] for la in group)
        shape = (rows, *group[0].weight.tensor.shape[1:])
        q, scale = inputs.add("fp8_fused_" + group[0].weight.path, positions, shape, group[0], config)
        _replace_group(graph, [env[la.node] for la in group], group, q, scale, fake_mode)
    by_weight: dict[fx.Node, tuple[fx.Node, fx.Node]] = {}
    for layer in layers:
        if not layer.converted or id(layer) in grouped:
            continue
        weight_node = _weight_node(layer)
        if weight_node not in by_weight:
            shape = tuple(layer.weight.tensor.shape)
            by_weight[weight_node] = inputs.add(
                "fp8_" + layer.weight.path, (placeholders.index(weight_node),), shape, layer, config
            )
        _replace_call(graph, env[layer.node], layer, *by_weight[weight_node], fake_mode)
    graph.lint()
    new_gm.recompile()
    carry_dynamo_metadata(gm, new_gm, env, inputs.added)
    return new_gm, inputs.feeds


class _FP8Inputs:
    """The placeholders the rewrite adds, after Dynamo's, with Python-identifier names (generated
    code uses a placeholder's name as an argument name; module paths may hold ``-`` or start with
    a digit, e.g. Z-Image's ``all_x_embedder.2-1``) distinct from each other and from Dynamo's."""

    def __init__(self, graph: fx.Graph, last: fx.Node, taken: set[str], fake_mode: Any) -> None:
        self.graph, self.last, self.taken, self.fake_mode = graph, last, set(taken), fake_mode
        self.added: list[fx.Node] = []
        self.feeds: list[tuple[int, ...]] = []

    def add(
        self, stem: str, positions: tuple[int, ...], shape: tuple[int, ...], layer: Layer, config: FP8Config
    ) -> tuple[fx.Node, fx.Node]:
        name = self._name(stem)
        device = layer.weight.tensor.device
        scales = scale_shape(shape, config.granularity, KINDS[layer.kind].scale_axis)
        nodes = []
        for suffix, val_shape, dtype in (("", shape, config.dtype), ("_scale", scales, torch.float32)):
            with self.graph.inserting_after(self.last):
                node = self.graph.placeholder(name + suffix)
            _set_val(node, fake_empty(self.fake_mode, val_shape, dtype, device))
            self.last = node
            nodes.append(node)
        self.added.extend(nodes)
        self.feeds.append(positions)
        return nodes[0], nodes[1]

    def _name(self, stem: str) -> str:
        stem = re.sub(r"\W", "_", stem)
        name, i = stem, 1
        while {name, name + "_scale"} & self.taken:
            name, i = f"{stem}_{i}", i + 1
        self.taken |= {name, name + "_scale"}
        return name


def _replace_call(
    graph: fx.Graph, old: fx.Node, layer: Layer, q: fx.Node, scale: fx.Node, fake_mode: Any
) -> None:
    """``linear(x, w, b)`` / ``conv*(x, w, b, ...)`` / ``embedding(x, w, ...)`` ->
    ``fp8pass.<op>(x, q, scale, b, *call_args)``, the positions from the kind's row."""
    kind = KINDS[layer.kind]
    with graph.inserting_before(old):
        x = _as_compute_dtype(graph, arg(old, kind.input), layer, fake_mode)
        bias = arg(old, kind.bias) if kind.bias is not None else None
        op = COMPUTES[layer.compute].ops[layer.kind]
        new = graph.call_function(op, (x, q, scale, bias, *layer.call_args))
    new.meta = dict(old.meta)
    _set_val(new, old.meta.get("example_value", old.meta.get("val")))
    old.replace_all_uses_with(new)
    graph.erase_node(old)


def _replace_group(
    graph: fx.Graph, olds: list[fx.Node], group: Sequence[Layer], q: fx.Node, scale: fx.Node, fake_mode: Any
) -> None:
    """One op over the group's concatenated weight, inserted before its first call; the output split
    along the last dimension and made contiguous (the layers' users may ``view`` it)."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    first = min(olds, key=order.__getitem__)
    linear = KINDS["linear"]
    with graph.inserting_before(first):
        x = _as_compute_dtype(graph, arg(first, linear.input), group[0], fake_mode)
        biases = [arg(old, linear.bias) for old in olds]
        bias = None if biases[0] is None else _call(graph, torch.cat, (biases,), fake_mode)
        op = COMPUTES[group[0].compute].ops["linear"]
        fused = _call(graph, op, (x, q, scale, bias), fake_mode)
        sizes = [la.weight.tensor.shape[0] for la in group]
        parts = _call(graph, torch.split, (fused, sizes, -1), fake_mode)
        for i, old in enumerate(olds):
            part = _call(graph, operator.getitem, (parts, i), fake_mode)
            new = graph.call_method("contiguous", (part,))
            new.meta = dict(old.meta)
            _set_val(new, old.meta.get("example_value", old.meta.get("val")))
            old.replace_all_uses_with(new)
    for old in olds:
        graph.erase_node(old)


def _weight_node(layer: Layer) -> fx.Node:
    return arg(layer.node, KINDS[layer.kind].weight)


def _as_compute_dtype(graph: fx.Graph, x: Any, layer: Layer, fake_mode: Any) -> Any:
    """What autocast would have done to the layer's input (AOT autograd does not see autocast)."""
    if layer.compute_dtype is None:
        return x
    node = graph.call_method("to", (x, layer.compute_dtype))
    _set_val(node, fake_eval(fake_mode, lambda t: t.to(layer.compute_dtype), _val(x)))
    return node


def _call(graph: fx.Graph, target: Any, args: tuple, fake_mode: Any) -> fx.Node:
    node = graph.call_function(target, args)
    vals = fx.node.map_arg(args, _val)
    _set_val(node, fake_eval(fake_mode, lambda *a: target(*a), *vals))
    return node


def _val(node: Any) -> Any:
    return node.meta.get("val", node.meta.get("example_value")) if isinstance(node, fx.Node) else node


def _set_val(node: fx.Node, val: Any) -> None:
    if val is not None:
        node.meta["val"] = node.meta["example_value"] = val
