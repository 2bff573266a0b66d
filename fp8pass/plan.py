"""Which layers become FP8, and why the others do not: the one home of fp8pass's decisions.

:func:`plan` decides from the graph torch.compile captured (what the backend uses);
:func:`plan_modules` decides from a model's modules without tracing (what the hook baseline,
``analyze``, checkpoints and static byte counts use). Both apply :func:`weight_reason` and the
kind and compute tables of :mod:`fp8pass.kinds`; a test checks they agree on every zoo model.
Neither changes anything: they return :class:`Layer` records that the rewrite, the store and the
report act on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

from ._compat.storage import is_released
from .computes import AUTO, COMPUTES, resolve_auto
from .config import FP8Config
from .kinds import KINDS, UNSUPPORTED, arg, kind_of_call, kind_of_module
from .structure import Structure, structure_of

__all__ = [
    "NONFINITE",
    "Layer",
    "ParamRef",
    "plan",
    "plan_modules",
    "projection_groups",
    "refuse_unloaded_or_training",
    "shared_with_reason",
    "layer_names",
    "weight_reason",
]

_FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)

#: why a layer whose weight holds NaN or infinity stays in its dtype, on every path
NONFINITE = "weight contains NaN or Inf"


def _no_pin(weight: torch.Tensor) -> str | None:
    return None


@dataclass(frozen=True)
class ParamRef:
    """A module parameter: the tensor and its dotted path."""

    tensor: torch.Tensor
    path: str


@dataclass
class Layer:
    """One linear / conv layer (a call in a graph, or a module) and what was decided for it.

    ``reason`` is empty when the layer converts; ``notes`` collects what else happened to it
    (compute fallback, fusion, release), in order, and reaches its report row.
    """

    name: str
    kind: str
    weight: ParamRef | None
    node: fx.Node | None = None  # the call, in a graph plan
    module: torch.nn.Module | None = None  # the module, in a module plan
    reason: str = ""
    compute: str | None = None
    notes: list[str] = field(default_factory=list)
    call_args: tuple[Any, ...] = ()  # the kind's extra op arguments (a convolution's stride, ...)
    # the dtype torch.autocast makes this layer compute in, if it differs from the activation's
    compute_dtype: torch.dtype | None = None

    @property
    def converted(self) -> bool:
        return not self.reason

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def weight_reason(
    name: str,
    w: torch.Tensor,
    config: FP8Config,
    check_values: bool = True,
    boundary: str = "",
    pinned: Callable[[torch.Tensor], str | None] = _no_pin,
) -> str:
    """Why the layer ``name`` with weight ``w`` stays unconverted, or ``""``. ``boundary`` says why
    the layer is on the model's boundary (:mod:`fp8pass.structure`), if it is. ``pinned(w)`` is
    the decision of the checkpoint the weight was loaded from (:func:`fp8pass.store.pinned`):
    ``""`` converts, a reason keeps, None leaves it to the rules. The rule shared by both
    planners, so that every path converts exactly the same layers."""
    if (pin := pinned(w)) is not None:
        return pin
    if skip := config.skip_reason(name):
        return skip
    if kept := config.boundary_reason(name, boundary):
        return kept
    if w.dtype not in _FLOAT_DTYPES:
        return f"weight dtype {w.dtype} is not bfloat16, float16 or float32"
    if w.numel() < config.min_weight_numel:
        return f"weight has {w.numel()} elements, fewer than min_weight_numel={config.min_weight_numel}"
    if check_values and not w.is_meta and not is_released(w) and not all_finite(w):
        return NONFINITE
    return ""


def all_finite(w: torch.Tensor) -> bool:
    """Whether every element of ``w`` is finite. From its minimum and maximum (one pass, no
    temporary: NaN propagates into both, an infinity is one of them), about 50x faster on a CPU
    than ``torch.isfinite(w).all()``, which writes a boolean copy of the weight (it was most of
    the pass's own time on flux-dev). Tensor subclasses (a DTensor shard) take ``isfinite``."""
    w = w.detach()  # a Parameter's data as a plain Tensor; a DTensor stays one
    if w.numel() == 0:
        return True
    if type(w) is not torch.Tensor:
        return bool(torch.isfinite(w).all())
    return bool(torch.isfinite(torch.stack(torch.aminmax(w))).all())


def shared_with_reason(blocker: str, why: str) -> str:
    """The reason a layer stays unconverted because another layer using its weight does."""
    return f"weight shared with '{blocker}', which stays unconverted ({why})"


# -- from the graph ---------------------------------------------------------------------------------


def plan(
    graph: fx.Graph,
    params: dict[fx.Node, ParamRef],
    config: FP8Config,
    name_of: Callable[[fx.Node, ParamRef | None], str],
    is_released: Callable[[torch.Tensor], bool] = lambda t: False,
    autocast: dict[fx.Node, dict[str, torch.dtype | None]] | None = None,
    structure: Structure | None = None,
    pinned: Callable[[torch.Tensor], str | None] = _no_pin,
) -> list[Layer]:
    """Find every linear / conv call in ``graph`` and decide whether it converts, and with which
    compute path.

    ``params`` maps placeholders that are module parameters to them; ``name_of(node, weight)``
    names the module that made a call (see :func:`layer_names`); ``is_released(tensor)`` says
    whether a weight's original storage is gone (its values are then not checked again);
    ``autocast[node]`` maps device type -> autocast dtype in force at ``node``; ``structure`` says
    which layers are on the model's boundary; ``pinned(weight)`` a checkpoint's decision for it.
    """
    autocast = autocast or {}
    layers = []
    for node in graph.nodes:
        kind = kind_of_call(node)
        if kind is None:
            continue
        layer_kind = KINDS.get(kind, KINDS["conv"])
        weight_node = arg(node, layer_kind.weight)
        weight = params.get(weight_node) if isinstance(weight_node, fx.Node) else None
        layer = Layer(name_of(node, weight), layer_kind.name, weight, node=node)
        boundary = _boundary(structure, layer_kind.name, weight.tensor) if weight is not None else ""
        layer.reason = _call_reason(layer, kind, config, is_released, boundary, pinned)
        layer.compute_dtype = _autocast_dtype(layer, autocast.get(node, {}))
        layers.append(layer)
    _unconvert_shared_uses(layers)
    for layer in layers:
        if layer.converted:
            _choose_compute(layer, config)
    return layers


def _boundary(structure: Structure | None, kind: str, weight: torch.Tensor) -> str:
    """Why the layer is on the model's boundary, where that keeps layers of its kind."""
    if structure is None or not KINDS[kind].keep_at_boundary:
        return ""
    return structure.reason(weight)


def _call_reason(
    layer: Layer,
    kind: str,
    config: FP8Config,
    is_released: Callable[..., bool],
    boundary: str,
    pinned: Callable[[torch.Tensor], str | None],
) -> str:
    if kind in UNSUPPORTED:
        return UNSUPPORTED[kind][2]
    if layer.weight is None:
        return "weight is computed in the graph, not a module parameter"
    w = layer.weight.tensor
    if reason := weight_reason(layer.name, w, config, not is_released(w), boundary, pinned):
        return reason
    layer.call_args, why = KINDS[kind].call_args(layer.node, w)
    return why


def _input(layer: Layer) -> Any:
    return arg(layer.node, KINDS[layer.kind].input)


def _autocast_dtype(layer: Layer, active: dict[str, torch.dtype | None]) -> torch.dtype | None:
    x = _input(layer)
    val = x.meta.get("example_value") if isinstance(x, fx.Node) else None
    if val is None or not val.is_floating_point():
        return None
    dtype = active.get(val.device.type)
    return dtype if dtype is not None and dtype != val.dtype else None


def _activation_dtype(layer: Layer) -> torch.dtype | None:
    x = _input(layer)
    val = x.meta.get("example_value") if isinstance(x, fx.Node) else None
    return layer.compute_dtype or getattr(val, "dtype", None)


def _unconvert_shared_uses(layers: list[Layer]) -> None:
    """A weight converts only if every use of it in the graph is a convertible layer."""
    by_weight: dict[fx.Node, list[Layer]] = defaultdict(list)
    for layer in layers:
        if layer.weight is not None:
            by_weight[arg(layer.node, KINDS[layer.kind].weight)].append(layer)
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


def _rows(layer: Layer) -> int | None:
    """The rows of the layer's GEMM (tokens times batch; a convolution's output positions are not
    counted here) when the graph has them as a plain number. A symbolic size is not read: turning
    it into a number would specialize the user's dynamic graph on it (a recompile per size)."""
    x = _input(layer)
    val = x.meta.get("example_value") if isinstance(x, fx.Node) else None
    if val is None or layer.kind != "linear" or not all(type(d) is int for d in val.shape):
        return None
    return math.prod(val.shape[:-1])


def _choose_compute(layer: Layer, config: FP8Config) -> None:
    w = layer.weight.tensor
    wanted = config.compute
    if wanted == AUTO:
        wanted, because = resolve_auto(layer.kind, w, _rows(layer))
        if because:
            layer.notes.append(because)
    why = COMPUTES[wanted].obstacle(layer.kind, w, layer.call_args, _activation_dtype(layer), config)
    layer.compute = "cast" if why else wanted
    if why:
        layer.notes.append(f"cast instead of {wanted}: {why}")


def layer_names(model: torch.nn.Module | None, relative: Callable[[fx.Node], str]) -> Callable[..., str]:
    """``name_of(node, weight)`` for :func:`plan`: the path, in ``model``, of the module that owns
    the call's weight, so that a layer has one name whatever frame Dynamo compiled (a block under
    regional compilation, a forward wrapped by context-parallel hooks). ``relative(node)`` (the
    path Dynamo recorded, relative to the compiled frame) picks among the owners of a shared
    weight, and names calls whose weight is not a parameter of ``model``."""
    owners: dict[int, list[str]] = defaultdict(list)
    for path, module in model.named_modules(remove_duplicate=False) if model is not None else ():
        for _, p in module.named_parameters(recurse=False, remove_duplicate=False):
            owners[id(p)].append(path)

    def name_of(node: fx.Node, weight: ParamRef | None) -> str:
        rel = relative(node)
        found = owners.get(id(weight.tensor), []) if weight is not None else []
        for path in found:
            if path == rel or path.endswith("." + rel):
                return path
        if found:
            return found[0]
        return rel or (weight.path.rpartition(".")[0] if weight else node.name)

    return name_of


def projection_groups(layers: list[Layer]) -> list[list[Layer]]:
    """Converted linears that can run as one matmul: the same input node, the same compute (and
    autocast dtype), distinct weights, and biases that are all parameters or all absent. Groups
    of two or more, in graph order."""
    by_input: dict[tuple, list[Layer]] = defaultdict(list)
    for layer in layers:
        if not layer.converted or layer.kind != "linear":
            continue
        x, bias = _input(layer), arg(layer.node, KINDS["linear"].bias)
        if not isinstance(x, fx.Node) or not (
            bias is None or (isinstance(bias, fx.Node) and bias.op == "placeholder")
        ):
            continue
        by_input[(x, layer.compute, layer.compute_dtype, bias is None)].append(layer)
    groups = []
    for members in by_input.values():
        distinct = {id(la.weight.tensor) for la in members}
        if len(distinct) == len(members) >= 2:  # a weight used twice on one input: leave those calls
            groups.append(members)
    return groups


# -- from the modules -------------------------------------------------------------------------------


def plan_modules(
    model: torch.nn.Module,
    config: FP8Config,
    check_values: bool = True,
    structure: Structure | None = None,
    pinned: Callable[[torch.Tensor], str | None] = _no_pin,
) -> list[Layer]:
    """Decide per linear / conv module of ``model`` with the graph plan's rules.

    ``structure`` (default: :func:`fp8pass.structure.structure_of`, traced once for the model if
    anything gave it example inputs, else read from the module tree) says which layers are on the
    boundary. ``check_values=False`` skips the NaN/Inf check (for ``meta`` models). It sees
    modules, not calls: a weight read by functional code outside its module is the graph plan's
    to find.
    """
    structure = structure or structure_of(model)
    layers = []
    for name, module in model.named_modules(remove_duplicate=False):
        kind = kind_of_module(module)
        if kind is None:
            continue
        weight = ParamRef(module.weight, f"{name}.weight" if name else "weight")
        layer = Layer(name, kind if kind in KINDS else "conv", weight, module=module)
        if kind in UNSUPPORTED:
            layer.reason = UNSUPPORTED[kind][2]
        else:
            boundary = _boundary(structure, kind, module.weight)
            layer.reason = weight_reason(
                name, module.weight, config, check_values, boundary, pinned
            ) or KINDS[kind].module_reason(module)
        layers.append(layer)
    blockers: dict[int, Layer] = {}
    for layer in layers:
        if not layer.converted:
            blockers.setdefault(id(layer.weight.tensor), layer)
    for layer in layers:
        blocker = blockers.get(id(layer.weight.tensor))
        if layer.converted and blocker is not None:
            layer.reason = shared_with_reason(blocker.name, blocker.reason)
    return layers


def refuse_unloaded_or_training(converted: list[Layer]) -> None:
    """Refuse, before anything changes, a graph whose weights are not loaded (``meta``) or that
    would need gradients through FP8 weights."""
    _refuse_meta(converted)
    _refuse_training(converted)


def _refuse_meta(converted: list[Layer]) -> None:
    meta = [layer.weight.path for layer in converted if layer.weight.tensor.is_meta]
    if meta:
        raise ValueError(
            f"fp8pass: {len(meta)} weights are on the meta device (first: '{meta[0]}'): the model's "
            "weights are not loaded. Load them first (e.g. fp8pass.load_fp8, or model.to_empty(device=...) "
            "then load_state_dict, or from_pretrained), then compile."
        )


def _refuse_training(converted: list[Layer]) -> None:
    if not torch.is_grad_enabled():
        return
    needs_grad = [layer.weight.path for layer in converted if layer.weight.tensor.requires_grad]
    if needs_grad:
        raise RuntimeError(
            f"fp8pass is inference-only, but this graph runs with grad enabled and {len(needs_grad)} "
            f"weights to convert require grad (first: '{needs_grad[0]}'); FP8 weights would give wrong "
            "gradients. Call the model under torch.no_grad() or torch.inference_mode(), or call "
            "model.requires_grad_(False) first."
        )
