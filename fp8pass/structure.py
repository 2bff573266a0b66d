"""Which layers sit on a model's boundary: decided from its structure, not from names.

A denoiser is a stack of repeated blocks (transformer blocks, UNet down / mid / up blocks) between a
few boundary layers: those that read the model's inputs before any block (patch, latent and context
embedders; timestep, guidance and pooled-text embedders and their MLPs) and those that produce its
output after the last block (output projections, the final norm's modulation). Boundary layers hold
about 1% of the bytes and are among the most sensitive to FP8, so fp8pass keeps them in the model's
dtype by default; every kept layer's report row names the rule that kept it.

Two sources of evidence, combined in :func:`classify`:

- the module tree: a layer is *in a block* if its path passes through an element of a
  ``ModuleList`` / ``ModuleDict`` with two or more elements (``transformer_blocks.3``,
  ``down_blocks.0.resnets.1``). Layers in blocks always convert.
- the dataflow of one forward (:func:`trace`): for every layer call, which of the model's inputs
  reach its input and which layers lie upstream. It runs on a copy of the model on the ``meta``
  device (no memory, no compute, no side effects on the model), with the real call's arguments
  moved to ``meta``. A layer outside the blocks that no block reaches is an *input* boundary
  layer; one whose output reaches no block but that some block reaches is an *output* boundary
  layer; the rest (a UNet's mid block outside its lists) convert.

Without a trace (no example inputs, or a forward the ``meta`` device cannot run: data-dependent
Python control flow), the module tree alone decides, by registration order: outside the blocks,
before the first block container is input, after the last one is output, in between converts.
"""

from __future__ import annotations

import copy
import itertools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from ._compat.storage import is_released
from .kinds import kind_of_module

__all__ = ["Boundary", "Dataflow", "Structure", "classify", "split_inputs", "structure_of", "trace"]


@dataclass(frozen=True)
class Boundary:
    """Why a layer is on the model's boundary: ``side`` is ``"input"`` or ``"output"``."""

    side: str
    reason: str


@dataclass
class Structure:
    """Boundary layers of one model by module path, and how they were found. The decision follows
    the layer's weight (a LoRA wrapping a layer later moves its module, not its weight)."""

    boundary: dict[str, Boundary] = field(default_factory=dict)
    blocks: frozenset[str] = frozenset()  # paths of layers inside repeated blocks
    traced: bool = False  # from a forward's dataflow (else from the module tree alone)
    note: str = ""  # why there is no trace, if there is none
    uncalled: frozenset[str] = frozenset()  # layers the traced forward never called
    by_weight: WeakIdKeyDictionary = field(default_factory=WeakIdKeyDictionary)

    def reason(self, weight: torch.Tensor) -> str:
        """Why the layer with this weight is a boundary layer, or ``""``."""
        found = self.by_weight.get(weight)
        return found.reason if found else ""


@dataclass
class _Tag:
    inputs: frozenset[str] = frozenset()  # model inputs that reach this tensor
    layers: frozenset[str] = frozenset()  # layers outside blocks upstream of it
    after_block: bool = False  # some block layer is upstream of it

    def __or__(self, other: _Tag) -> _Tag:
        return _Tag(
            self.inputs | other.inputs, self.layers | other.layers, self.after_block or other.after_block
        )


@dataclass
class Dataflow:
    """Per layer path, the tags of the inputs of each of its calls in one forward."""

    calls: dict[str, list[_Tag]] = field(default_factory=dict)


_SELF_DATA_ONLY = {"type_as", "to", "view_as", "reshape_as", "expand_as"}


class _Tracker(TorchFunctionMode):
    """Propagates tags from the tensors a torch function reads to the tensors it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.tags = WeakIdKeyDictionary()

    def tag_of(self, value: Any) -> _Tag:
        tag = _Tag()
        for leaf in _tensors(value):
            if leaf in self.tags:
                tag = tag | self.tags[leaf]
        return tag

    def add(self, value: Any, tag: _Tag) -> None:
        for leaf in _tensors(value):
            self.tags[leaf] = self.tags[leaf] | tag if leaf in self.tags else tag

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name.endswith("_like") or name.startswith("new_"):  # shape and dtype only, no data
            return out
        # ``a.type_as(b)``, ``a.to(b)``, ``a.view_as(b)``: only ``a``'s data flows
        tag = self.tag_of(args[0] if name in _SELF_DATA_ONLY and args else (args, kwargs))
        if tag.inputs or tag.layers or tag.after_block:
            self.add(out, tag)
        return out


def repeated_blocks(model: nn.Module) -> dict[str, str]:
    """Module path -> the path of the block it is in, for every module inside a block. A block is
    an element of an ``nn.ModuleList`` (``transformer_blocks.3``, ``down_blocks.0.resnets.1``, a
    UNet's one mid-block attention), of an ``nn.ModuleDict`` keyed by indices, or a composite
    element (one holding layers, not a layer itself) of an ``nn.Sequential``. A ``ModuleDict``
    keyed by names is a table of alternatives (Z-Image's patch embedders per patch size, Flux 3's
    embedders per mode), and a ``Sequential`` of layers is an MLP (``t_embedder.mlp``): neither
    is a stack of blocks."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        for child, element in module.named_children():
            if not _is_block(module, child, element):
                continue
            block = f"{name}.{child}" if name else child
            for sub, _ in element.named_modules():
                found.setdefault(f"{block}.{sub}" if sub else block, block)
    return found


def _is_block(container: nn.Module, key: str, element: nn.Module) -> bool:
    if isinstance(container, nn.ModuleList):
        return True
    if isinstance(container, nn.ModuleDict):
        return all(k.isdigit() for k in container.keys())
    if isinstance(container, nn.Sequential):
        return kind_of_module(element) is None and any(kind_of_module(m) for m in element.modules())
    return False


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules(remove_duplicate=False) if kind_of_module(m) is not None}


def trace(model: nn.Module, args: tuple, kwargs: dict) -> tuple[Dataflow | None, str]:
    """The dataflow of ``model(*args, **kwargs)``. First on a ``meta`` copy of the model with the
    arguments moved to ``meta`` (no memory, no compute, no side effects); where the forward cannot
    run there (data-dependent Python control flow: ``.item()``, ``.tolist()``, ``bincount``), one
    real forward of the model itself, without grad. Returns ``(dataflow, "")``, or ``(None, why)``
    when neither runs."""
    try:
        meta_model = _meta_copy(model)
    except Exception as e:  # a module that cannot be copied
        meta_model, why = None, f"the model could not be copied to the meta device ({_first_line(e)})"
    if meta_model is not None:
        flow, why = _trace(meta_model, *_to_meta((args, kwargs)))
        if flow is not None:
            return flow, ""
    if any(p.is_meta or is_released(p) for p in model.parameters()):
        return None, f"its forward does not run on the meta device ({why}), and its weights are not loaded"
    flow, real_why = _trace(model, args, kwargs)
    return (flow, "") if flow is not None else (None, f"meta: {why}; real: {real_why}")


def _trace(model: nn.Module, args: tuple, kwargs: dict) -> tuple[Dataflow | None, str]:
    blocks = repeated_blocks(model)
    tracker = _Tracker()
    flow = Dataflow()
    handles = []
    for path, module in _layers(model).items():

        def pre(module: nn.Module, inputs: tuple, path: str = path) -> None:
            flow.calls.setdefault(path, []).append(tracker.tag_of(inputs))

        def post(module: nn.Module, inputs: tuple, output: Any, path: str = path) -> None:
            mark = _Tag(after_block=True) if path in blocks else _Tag(layers=frozenset({path}))
            tracker.add(output, tracker.tag_of(inputs) | mark)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    for name, value in itertools.chain(enumerate(args), kwargs.items()):
        tracker.add(value, _Tag(inputs=frozenset({_input_name(model, name)})))
    try:
        with torch.no_grad(), tracker:
            model(*args, **kwargs)
    except Exception as e:
        return None, _first_line(e)
    finally:
        for h in handles:
            h.remove()
    return flow, ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:120]}" if text else type(e).__name__


def classify(model: nn.Module, flow: Dataflow | None, note: str = "") -> Structure:
    """The boundary layers of ``model``: from ``flow`` when given, else from the module tree."""
    layers = _layers(model)
    in_block = repeated_blocks(model)
    blocks = frozenset(p for p in layers if p in in_block)
    outside = [p for p in layers if p not in blocks]
    if flow is None:
        boundary = _by_registration_order(model, outside, in_block)
        return _with_weights(Structure(boundary, blocks, traced=False, note=note), layers)
    called = {p for p in layers if flow.calls.get(p)}
    # without repeated blocks, every layer plays the part of a block (the first and last layers
    # on each path are the boundary)
    stack = blocks if blocks else frozenset(called)
    downstream_of_stack = set()
    for path in stack:
        for tag in flow.calls.get(path, []):
            downstream_of_stack |= tag.layers
    # without repeated blocks, every layer plays a block's part
    unit, units = ("block", "blocks") if blocks else ("other layer", "other layers")
    boundary = {}
    for path in outside:
        tags = flow.calls.get(path)
        if not tags:
            continue
        upstream_block = any(t.after_block for t in tags) or (
            not blocks and any(t.layers - {path} for t in tags)
        )
        if not upstream_block:
            names = sorted(set().union(*(t.inputs for t in tags)))
            what = ", ".join(f"'{n}'" for n in names) if names else "no input (constants only)"
            boundary[path] = Boundary(
                "input", f"input layer: reads only the model's inputs ({what}), no {unit}'s output"
            )
        elif path not in downstream_of_stack:
            boundary[path] = Boundary(
                "output", f"output layer: reads the {units}' output and feeds no {unit}"
            )
    structure = Structure(boundary, blocks, traced=True, uncalled=frozenset(set(layers) - called))
    return _with_weights(structure, layers)


def _with_weights(structure: Structure, layers: dict[str, nn.Module]) -> Structure:
    for path, found in structure.boundary.items():
        structure.by_weight[layers[path].weight] = found
    return structure


def _by_registration_order(
    model: nn.Module, outside: Iterable[str], in_block: dict[str, str]
) -> dict[str, Boundary]:
    """Outside the blocks: layers registered before the first block container are input layers,
    after the last one output layers, in between none."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    containers = [order[b] for b in set(in_block.values())]
    if not containers:
        return {}
    first, last = min(containers), max(containers)
    boundary = {}
    for path in outside:
        if order.get(path, 0) < first:
            boundary[path] = Boundary(
                "input", "input layer: registered before the model's first block (module order; no trace)"
            )
        elif order.get(path, 0) > last:
            boundary[path] = Boundary(
                "output", "output layer: registered after the model's last block (module order; no trace)"
            )
    return boundary


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """Example inputs as ``(args, kwargs)``: a dict is keyword arguments, a tuple or list positional
    ones, anything else the one positional argument."""
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def structure_of(model: nn.Module, args: tuple | None = None, kwargs: dict | None = None) -> Structure:
    """``model``'s structure: traced with ``(args, kwargs)`` the first time they are given and
    kept for the model's lifetime, so every path that asks (compiled, hooks, analyze, checkpoints)
    gets the same answer; from the module tree while no trace exists."""
    found = _CACHE.get(model)
    if found is not None and (found.traced or args is None):
        return found
    if args is None and kwargs is None:
        return classify(model, None, "no example inputs to trace a forward with")
    flow, why = trace(model, tuple(args or ()), dict(kwargs or {}))
    structure = classify(model, flow, why)
    _CACHE[model] = structure
    return structure


def _meta_copy(model: nn.Module) -> nn.Module:
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) not in memo:
            meta = torch.empty_like(t, device="meta")
            memo[id(t)] = nn.Parameter(meta, requires_grad=False) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    return value


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _input_name(model: nn.Module, key: int | str) -> str:
    """A forward argument's name: keyword arguments by name, positional ones by the signature."""
    if isinstance(key, str):
        return key
    import inspect

    try:
        params = [
            p
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return params[key].name
    except (ValueError, TypeError, IndexError):
        return f"argument {key}"
