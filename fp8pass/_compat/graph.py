"""Building a rewritten copy of Dynamo's graph that AOT autograd accepts: a fresh GraphModule,
fake values for added nodes, Dynamo's metadata carried over. Checked on torch 2.13.0 and 2.11.0 (CPU).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx

_MISSING = object()


def copy_graph_module(gm: fx.GraphModule) -> tuple[fx.GraphModule, dict[fx.Node, fx.Node]]:
    """A fresh GraphModule with a copy of ``gm``'s graph (and the map old node -> new node).

    The copy lives on a plain root module that owns copies of the attributes the graph reads,
    each as the kind it was (buffer, parameter, plain attribute): AOT autograd ties every attribute
    of Dynamo's own GraphModule to a Dynamo source and refuses new ones ("not found in
    param_name_to_source"), and a fresh root avoids that. The graph's ``_codegen`` (Dynamo's
    pytree in/out handling) is private; copied as it is. Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    root = torch.nn.Module()
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, env))
    graph._codegen = copy.deepcopy(gm.graph._codegen)
    buffers = dict(gm.named_buffers())
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            _set_attr_path(root, node.target, getattr_path(gm, node.target), node.target in buffers)
    return fx.GraphModule(root, graph, class_name="FP8GraphModule"), env


def getattr_path(obj: Any, target: str, default: Any = _MISSING) -> Any:
    """``obj.a.b.c`` for ``target="a.b.c"`` (``default`` where a part is missing, if given): how a
    GraphModule's ``get_attr`` targets resolve. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    for part in target.split("."):
        obj = getattr(obj, part) if default is _MISSING else getattr(obj, part, default)
    return obj


def _set_attr_path(root: torch.nn.Module, target: str, value: Any, as_buffer: bool) -> None:
    *path, last = target.split(".")
    for part in path:
        if not hasattr(root, part):
            root.add_module(part, torch.nn.Module())
        root = getattr(root, part)
    if as_buffer:
        root.register_buffer(last, value)
    else:  # parameters stay parameters, plain tensor attributes stay plain attributes
        setattr(root, last, value)


def fake_mode_of(gm: fx.GraphModule) -> Any:
    """The fake-tensor mode of the values Dynamo recorded in ``gm`` (``meta["example_value"]``), so
    that values added next to them live in the same mode. Dynamo hands the backend a fresh fake mode
    in its tracing context, not that one; outside a compile there may be none (then a new mode).
    Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    for node in gm.graph.nodes:
        mode = getattr(node.meta.get("example_value"), "fake_mode", None)
        if mode is not None:
            return mode
    return FakeTensorMode(allow_non_fake_inputs=True)


def fake_empty(mode: Any, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A fake tensor of this shape, dtype and device, in ``mode`` (a private ``FakeTensorMode``).
    Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    with mode:
        return torch.empty(tuple(shape), dtype=dtype, device=device)


def fake_eval(mode: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on fake tensors, in ``mode``: an added node's ``meta["val"]``. Checked on torch
    2.13.0 and 2.11.0 (CPU)."""
    with mode:
        return fn(*args)


def carry_dynamo_metadata(
    old: fx.GraphModule, new: fx.GraphModule, env: dict[fx.Node, fx.Node], added: list[fx.Node]
) -> None:
    """Make AOT autograd treat ``new`` (a rewritten copy of Dynamo's ``old``) as Dynamo's graph.

    AOT autograd reads static inputs (inputs whose address CUDA graphs may keep instead of copying
    in every replay: parameters, and the FP8 weights fp8pass adds) from ``meta["dynamo_compile_id"]``,
    ``_param_name_to_source`` and each placeholder's ``_dynamo_source`` and
    ``meta["tensor_dict"]["_dynamo_static_input_type"]``; without them it marks no input static.
    See ``_try_get_metadata_from_dynamo`` in torch/_functorch/_aot_autograd/frontend_utils.py.
    Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    if "dynamo_compile_id" not in old.meta:
        return
    new.meta.update(old.meta)
    if hasattr(old, "_param_name_to_source"):
        new._param_name_to_source = old._param_name_to_source
    for node in old.graph.find_nodes(op="placeholder"):
        if hasattr(node, "_dynamo_source"):
            env[node]._dynamo_source = node._dynamo_source
    for node in added:
        node._dynamo_source = None
        node.meta["tensor_dict"] = {"_dynamo_static_input_type": "unguarded"}


def static_fakes(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fake copies, with static shapes, in the fake mode Dynamo is tracing with. Graph inputs
    that fp8pass adds have no Dynamo source: left to AOT autograd, they get symbolic sizes whose
    guards Dynamo cannot express. Uses ``TracingContext.fake_mode``; checked on torch 2.13.0 and
    2.11.0 (CPU)."""
    context = torch._guards.TracingContext.try_get()
    if context is None or context.fake_mode is None:
        return tensors
    return [context.fake_mode.from_tensor(t, static_shapes=True) for t in tensors]
