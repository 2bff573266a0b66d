"""The FX rewrite: which linear / conv nodes become fp8pass ops, and why the others do not.

:func:`plan` only decides (it reads the graph, the config and the weights' metadata);
:func:`rewrite` only edits (it swaps the planned nodes for the ops in :mod:`fp8pass.ops`).
"""

from __future__ import annotations

import copy
import operator
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from . import _compat
from . import ops as _ops  # noqa: F401  (importing it registers the torch.ops.fp8pass ops used below)
from .config import FP8Config

__all__ = [
    "Layer",
    "ModuleLayer",
    "ParamRef",
    "plan",
    "plan_modules",
    "projection_groups",
    "rewrite",
    "weight_reason",
]

_LINEAR = {torch._C._nn.linear, F.linear}
_CONV = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_CONV_TRANSPOSE = {torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d}
_FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_CAST_OPS = {"linear": torch.ops.fp8pass.linear.default, "conv": torch.ops.fp8pass.conv.default}
_SCALED_OPS = {
    "linear": torch.ops.fp8pass.scaled_linear.default,
    "conv": torch.ops.fp8pass.scaled_conv.default,
}


@dataclass(frozen=True)
class ParamRef:
    """A graph input that is a module parameter: the tensor and its dotted path."""

    tensor: torch.Tensor
    path: str


@dataclass
class Layer:
    """One linear / conv call in the graph and what the pass decided for it."""

    node: fx.Node
    name: str
    kind: str
    weight: ParamRef | None
    reason: str = ""
    compute: str | None = None
    #: what else happened to the layer (compute fallback, fusion, release), in order
    notes: list[str] = field(default_factory=list)
    conv_args: tuple[list[int], list[int], list[int], int] | None = None
    # the dtype torch.autocast makes this layer compute in, if it differs from the activation's
    compute_dtype: torch.dtype | None = None

    @property
    def converted(self) -> bool:
        return not self.reason

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def plan(
    graph: fx.Graph,
    params: dict[fx.Node, ParamRef],
    config: FP8Config,
    module_path: Any,
    is_quantized: Any = lambda t: False,
    autocast: dict[fx.Node, dict[str, torch.dtype | None]] | None = None,
) -> list[Layer]:
    """Find every linear / conv call and decide whether it is converted, and with which compute.

    ``module_path(node)`` names the module that made the call; ``is_quantized(tensor)`` says
    whether a weight already has an FP8 copy (then its values are not read again);
    ``autocast[node]`` maps device type -> autocast dtype in force at ``node``.
    """
    autocast = autocast or {}
    layers = []
    for node in graph.nodes:
        kind = _layer_kind(node)
        if kind is None:
            continue
        weight_node = _arg(node, 1, "weight")
        weight = params.get(weight_node) if isinstance(weight_node, fx.Node) else None
        name = module_path(node) or (weight.path.rpartition(".")[0] if weight else node.name)
        layer = Layer(node, name, "conv" if kind != "linear" else "linear", weight)
        layer.reason = _layer_reason(layer, kind, config, is_quantized)
        layer.compute_dtype = _autocast_dtype(node, autocast.get(node, {}))
        layers.append(layer)
    _unconvert_shared(layers, params)
    for layer in layers:
        if layer.converted:
            layer.compute, note = _choose_compute(layer, config)
            if note:
                layer.notes.append(note)
    return layers


def _autocast_dtype(node: fx.Node, active: dict[str, torch.dtype | None]) -> torch.dtype | None:
    x = _arg(node, 0, "input")
    val = x.meta.get("example_value") if isinstance(x, fx.Node) else None
    if val is None or not val.is_floating_point():
        return None
    dtype = active.get(val.device.type)
    return dtype if dtype is not None and dtype != val.dtype else None


def _layer_kind(node: fx.Node) -> str | None:
    if node.op != "call_function":
        return None
    if node.target in _LINEAR:
        return "linear"
    if node.target in _CONV:
        return "conv"
    if node.target in _CONV_TRANSPOSE:
        return "conv_transpose"
    return None


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _layer_reason(layer: Layer, kind: str, config: FP8Config, is_quantized: Any) -> str:
    if kind == "conv_transpose":
        return "transposed convolution is not supported"
    if layer.weight is None:
        return "weight is computed in the graph, not a module parameter"
    w = layer.weight.tensor
    if reason := weight_reason(layer.name, w, config, check_values=not is_quantized(w)):
        return reason
    if kind == "conv":
        args, why = _conv_args(layer.node, w)
        if why:
            return why
        layer.conv_args = args
    return ""


def weight_reason(name: str, w: torch.Tensor, config: FP8Config, check_values: bool = True) -> str:
    """Why the layer ``name`` with weight ``w`` stays unconverted, or ``""``. The one rule shared
    by the graph pass and the eager hooks, so that both convert exactly the same layers."""
    if skip := config.skip_reason(name):
        return skip
    if w.dtype not in _FLOAT_DTYPES:
        return f"weight dtype {w.dtype} is not bfloat16, float16 or float32"
    if w.numel() < config.min_weight_numel:
        return f"weight has {w.numel()} elements, fewer than min_weight_numel={config.min_weight_numel}"
    if check_values and not w.is_meta and not bool(torch.isfinite(w).all()):
        return "weight contains NaN or Inf"
    return ""


def shared_with_reason(blocker: str, why: str) -> str:
    """The reason a layer stays unconverted because another layer using its weight does."""
    return f"weight shared with '{blocker}', which stays unconverted ({why})"


def same_padding_reason(kernel: Sequence[int], dilation: Sequence[int]) -> str:
    if any(d * (k - 1) % 2 for d, k in zip(dilation, kernel, strict=True)):
        return "padding='same' with an even effective kernel pads asymmetrically"
    return ""


def _conv_args(node: fx.Node, w: torch.Tensor) -> tuple[Any, str]:
    dims = w.dim() - 2

    def expand(v: Any) -> list[int]:
        return list(v) if isinstance(v, (tuple, list)) else [v] * dims

    stride = expand(_arg(node, 3, "stride", 1))
    dilation = expand(_arg(node, 5, "dilation", 1))
    groups = _arg(node, 6, "groups", 1)
    padding = _arg(node, 4, "padding", 0)
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if why := same_padding_reason(w.shape[2:], dilation):
            return None, why
        padding = [d * (k - 1) // 2 for d, k in zip(dilation, w.shape[2:], strict=True)]
    return (stride, expand(padding), dilation, groups), ""


def _unconvert_shared(layers: list[Layer], params: dict[fx.Node, ParamRef]) -> None:
    """A weight is converted only if every use of it in the graph is a convertible layer."""
    by_weight: dict[fx.Node, list[Layer]] = defaultdict(list)
    for layer in layers:
        if layer.weight is not None:
            by_weight[_arg(layer.node, 1, "weight")].append(layer)
    for weight_node, users in by_weight.items():
        layer_nodes = {layer.node for layer in users}
        other = [u for u in weight_node.users if u not in layer_nodes]
        blocker = next((u for u in users if not u.converted), None)
        for layer in users:
            if not layer.converted:
                continue
            if other:
                layer.reason = f"weight is also read by {other[0].target} outside a linear/conv"
            elif blocker is not None:
                layer.reason = shared_with_reason(blocker.name, blocker.reason)


def _choose_compute(layer: Layer, config: FP8Config) -> tuple[str, str]:
    w = layer.weight.tensor
    compute = config.compute
    if compute == "auto":
        compute = "scaled_mm" if _has_fp8_matmul(w.device) else "cast"
    if compute == "cast":
        return "cast", ""
    why = _scaled_mm_obstacle(layer, config)
    return ("cast", f"cast instead of scaled_mm: {why}") if why else ("scaled_mm", "")


def _scaled_mm_obstacle(layer: Layer, config: FP8Config) -> str:
    w = layer.weight.tensor
    out_features, in_features = w.shape[0], w.shape[1]
    if layer.kind == "conv":
        stride, padding, _, groups = layer.conv_args
        if any(k != 1 for k in w.shape[2:]) or any(s != 1 for s in stride) or any(padding) or groups != 1:
            return "only 1x1 convolutions (stride 1, no padding, one group) run as FP8 matmuls"
    if in_features % 16 or out_features % 16:
        return f"FP8 matmul needs in/out features divisible by 16, got {in_features}/{out_features}"
    x = _arg(layer.node, 0, "input")
    x_val = x.meta.get("example_value") if isinstance(x, fx.Node) else None
    dtype = layer.compute_dtype or getattr(x_val, "dtype", None)
    if dtype != torch.bfloat16:
        return f"FP8 matmul output is bfloat16 only; activation is {dtype or 'unknown'}"
    if config.granularity == "channel" and not _compat.rowwise_scaled_mm_supported(w.device):
        return (
            f"torch {torch.__version__}'s _scaled_mm takes no per-row scales on {w.device.type}; "
            "FP8Config(granularity='tensor') runs FP8 matmuls there"
        )
    return ""


def _has_fp8_matmul(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


_LAYER_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_TRANSPOSED_MODULES = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


@dataclass
class ModuleLayer:
    """A linear / conv *module* and the decision for it (the eager counterpart of :class:`Layer`)."""

    name: str
    module: torch.nn.Module
    kind: str
    reason: str

    @property
    def converted(self) -> bool:
        return not self.reason


def plan_modules(model: torch.nn.Module, config: FP8Config, check_values: bool = True) -> list[ModuleLayer]:
    """Decide per linear / conv module of ``model`` with the graph pass's rules, without tracing.

    Used by the eager hooks, the fidelity analysis and static counts (``check_values=False``
    works on ``meta`` models). It sees modules, not calls: a weight read by functional code
    outside its module is the graph pass's to find.
    """
    found = [
        (n, m)
        for n, m in model.named_modules(remove_duplicate=False)
        if isinstance(m, _LAYER_MODULES + _TRANSPOSED_MODULES)
    ]
    layers = []
    for name, m in found:
        kind = "linear" if isinstance(m, torch.nn.Linear) else "conv"
        layers.append(ModuleLayer(name, m, kind, _module_reason(name, m, config, check_values)))
    blockers: dict[int, ModuleLayer] = {}
    for layer in layers:
        if not layer.converted:
            blockers.setdefault(id(layer.module.weight), layer)
    for layer in layers:
        blocker = blockers.get(id(layer.module.weight))
        if layer.converted and blocker is not None:
            layer.reason = shared_with_reason(blocker.name, blocker.reason)
    return layers


def _module_reason(name: str, module: torch.nn.Module, config: FP8Config, check_values: bool) -> str:
    if isinstance(module, _TRANSPOSED_MODULES):
        return "transposed convolution is not supported"
    if reason := weight_reason(name, module.weight, config, check_values):
        return reason
    if not isinstance(module, torch.nn.Linear) and module.padding == "same":
        return same_padding_reason(module.kernel_size, module.dilation)
    return ""


def projection_groups(layers: list[Layer]) -> list[list[Layer]]:
    """Converted linears that can run as one matmul: the same input node, the same compute (and
    autocast dtype), distinct weights, and biases that are all parameters or all absent. Groups
    of two or more, in graph order."""
    by_input: dict[tuple, list[Layer]] = defaultdict(list)
    for layer in layers:
        if not layer.converted or layer.kind != "linear":
            continue
        x, bias = _arg(layer.node, 0, "input"), _arg(layer.node, 2, "bias")
        if not isinstance(x, fx.Node) or not (
            bias is None or (isinstance(bias, fx.Node) and bias.op == "placeholder")
        ):
            continue
        by_input[(x, layer.compute, layer.compute_dtype, bias is None)].append(layer)
    groups = []
    for members in by_input.values():
        distinct = list({id(la.weight.tensor): la for la in members}.values())
        if len(distinct) < len(members) or len(members) < 2:
            continue  # a weight used twice on one input: leave those calls alone
        groups.append(members)
    return groups


def rewrite(
    gm: fx.GraphModule, layers: list[Layer], groups: Sequence[Sequence[Layer]] = ()
) -> tuple[fx.GraphModule, list[tuple[int, ...]]]:
    """A new GraphModule in which each converted layer calls an fp8pass op.

    The FP8 weight and scale of each converted parameter become two new graph inputs, appended
    after Dynamo's; the second return value lists, for each such pair, the position of the
    parameter's own input (a 1-tuple). Each group of ``groups`` (see :func:`projection_groups`)
    instead gets one pair, its concatenated FP8 weight and scales, listed with the positions of
    all its parameters; one op computes the group and its output is split back per layer. They are inputs, not constants, because Dynamo reuses a graph for
    every module instance whose parameters match in shape (another model of the same class, the
    next block after a graph break): the caller feeds the FP8 copies of the parameters actually
    passed. The original graph and module are left untouched.
    """
    root = torch.nn.Module()
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, env))
    graph._codegen = copy.deepcopy(gm.graph._codegen)
    buffers = dict(gm.named_buffers())
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            _set_attr(root, node.target, _get_attr(gm, node.target), node.target in buffers)

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    last = env[placeholders[-1]]
    names = _InputNames(p.target for p in placeholders)
    inputs: dict[fx.Node, tuple[fx.Node, fx.Node]] = {}
    feeds: list[tuple[int, ...]] = []
    added: list[fx.Node] = []

    def add_inputs(stem: str, positions: tuple[int, ...]) -> tuple[fx.Node, fx.Node]:
        nonlocal last
        with graph.inserting_after(last):
            q_node = graph.placeholder(stem)
        with graph.inserting_after(q_node):
            scale_node = graph.placeholder(stem + "_scale")
        last = scale_node
        added.extend((q_node, scale_node))
        feeds.append(positions)
        return q_node, scale_node

    grouped = {id(la) for group in groups for la in group}
    for group in groups:
        positions = tuple(placeholders.index(_arg(la.node, 1, "weight")) for la in group)
        q_node, scale_node = add_inputs(names.make("fp8_fused_" + group[0].weight.path), positions)
        _fuse(graph, env, group, q_node, scale_node)
    for layer in layers:
        if not layer.converted or id(layer) in grouped:
            continue
        weight_node = _arg(layer.node, 1, "weight")
        if weight_node not in inputs:
            stem = names.make("fp8_" + layer.weight.path)
            inputs[weight_node] = add_inputs(stem, (placeholders.index(weight_node),))
        q_node, scale_node = inputs[weight_node]
        old = env[layer.node]
        with graph.inserting_before(old):
            x, bias = _arg(old, 0, "input"), _arg(old, 2, "bias")
            if layer.compute_dtype is not None:  # what autocast would have done to the input
                x = graph.call_method("to", (x, layer.compute_dtype))
            if layer.compute == "scaled_mm":
                new = graph.call_function(_SCALED_OPS[layer.kind], (x, q_node, scale_node, bias))
            elif layer.kind == "conv":
                new = graph.call_function(_CAST_OPS["conv"], (x, q_node, scale_node, bias, *layer.conv_args))
            else:
                new = graph.call_function(_CAST_OPS["linear"], (x, q_node, scale_node, bias))
        new.meta = dict(old.meta)
        old.replace_all_uses_with(new)
        graph.erase_node(old)
    graph.lint()
    new_gm = fx.GraphModule(root, graph, class_name="FP8GraphModule")
    _compat.carry_dynamo_metadata(gm, new_gm, env, added)
    return new_gm, feeds


class _InputNames:
    """Names for the inputs the rewrite adds: Python identifiers (generated code uses a
    placeholder's name as an argument name; module paths may hold ``-`` or start with a digit,
    e.g. Z-Image's ``all_x_embedder.2-1``), distinct from each other and from Dynamo's."""

    def __init__(self, taken: Any) -> None:
        self._taken = set(taken)

    def make(self, path: str) -> str:
        stem = re.sub(r"\W", "_", path)
        name, i = stem, 1
        while {name, name + "_scale"} & self._taken:
            name, i = f"{stem}_{i}", i + 1
        self._taken |= {name, name + "_scale"}
        return name


def _fuse(
    graph: fx.Graph, env: dict[fx.Node, fx.Node], group: Sequence[Layer], q: fx.Node, scale: fx.Node
) -> None:
    """One op over the concatenated weight, inserted before the group's first call; its output
    split along the last dimension and made contiguous (the layers' users may ``view`` it)."""
    olds = [env[la.node] for la in group]
    order = {n: i for i, n in enumerate(graph.nodes)}
    first = min(olds, key=order.__getitem__)
    with graph.inserting_before(first):
        x, biases = _arg(first, 0, "input"), [_arg(old, 2, "bias") for old in olds]
        if group[0].compute_dtype is not None:
            x = graph.call_method("to", (x, group[0].compute_dtype))
        bias = None if biases[0] is None else graph.call_function(torch.cat, (biases,))
        op = _SCALED_OPS["linear"] if group[0].compute == "scaled_mm" else _CAST_OPS["linear"]
        fused = graph.call_function(op, (x, q, scale, bias))
        sizes = [la.weight.tensor.shape[0] for la in group]
        parts = graph.call_function(torch.split, (fused, sizes, -1))
        for i, old in enumerate(olds):
            part = graph.call_function(operator.getitem, (parts, i))
            new = graph.call_method("contiguous", (part,))
            new.meta = dict(old.meta)
            old.replace_all_uses_with(new)
    for old in olds:
        graph.erase_node(old)


def _get_attr(mod: torch.nn.Module, target: str) -> Any:
    for part in target.split("."):
        mod = getattr(mod, part)
    return mod


def _set_attr(root: torch.nn.Module, target: str, value: Any, as_buffer: bool) -> None:
    *path, last = target.split(".")
    for part in path:
        if not hasattr(root, part):
            root.add_module(part, torch.nn.Module())
        root = getattr(root, part)
    if as_buffer:
        root.register_buffer(last, value)
    else:  # parameters stay parameters, plain tensor attributes stay plain attributes
        setattr(root, last, value)
