"""What Dynamo hands a backend, read through its private structures: the graph's parameters and
their sources, the module paths of calls, autocast regions, the model on the call stack, and the
backend registry. Checked on torch 2.13.0 and 2.11.0 (CPU), CPython 3.11, each helper as it says.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx

from .graph import getattr_path

_ROOT = re.compile(r"""^[LG]\[['"][^'"]*['"]\]\.?""")
_TOKEN = re.compile(r"""\.(\w+)|\[['"]?([^'"\]]+)['"]?\]""")
_CONTAINERS = {"_modules", "_parameters", "_buffers", "__dict__"}

_ROOT = re.compile(r"""^[LG]\[['"][^'"]*['"]\]\.?""")


_TOKEN = re.compile(r"""\.(\w+)|\[['"]?([^'"\]]+)['"]?\]""")


_CONTAINERS = {"_modules", "_parameters", "_buffers", "__dict__"}


#: What Dynamo records in its graph for ``F.linear`` / ``nn.Linear``: the private C binding.
#: Checked on torch 2.13.0 and 2.11.0 (CPU).
LINEAR_CALLS = frozenset({torch._C._nn.linear})


def register_backend_name(name: str, backend: Callable[..., Any]) -> None:
    """Give ``backend`` the name ``name`` for ``torch.compile(backend=name)`` if Dynamo is loaded
    and nobody else will: not when the name is registered already, and not when torch found the
    package's ``torch_dynamo_backends`` entry point (torch then registers it itself while loading
    that entry point, which imports this package: registering here too raised "duplicate name").
    Reads the registry's ``_COMPILER_FNS`` / ``_BACKENDS``; checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    from importlib.metadata import EntryPoint

    registry = sys.modules.get("torch._dynamo.backends.registry")
    if registry is None or name in registry._COMPILER_FNS:
        return
    if isinstance(registry._BACKENDS.get(name), EntryPoint):
        return
    registry.register_backend(backend, name=name)


def graph_parameters(
    gm: fx.GraphModule, example_inputs: Sequence[Any]
) -> dict[fx.Node, tuple[torch.Tensor, Any]]:
    """Placeholders that are module parameters -> (the real parameter, its Dynamo source).

    Relies on Dynamo lifting parameters to graph inputs (``inline_inbuilt_nn_modules``, the
    default) and recording ``node.meta["grapharg"].source``. Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    found = {}
    for node, value in zip(placeholders, example_inputs, strict=True):
        grapharg = node.meta.get("grapharg")
        if isinstance(value, torch.nn.Parameter) and grapharg is not None:
            found[node] = (value, grapharg.source)
    return found


def lifted_parameter_attrs(gm: fx.GraphModule) -> list[str]:
    """get_attr targets that are parameters: what Dynamo emits when it does not lift them to inputs
    (``inline_inbuilt_nn_modules=False``). Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return [
        n.target
        for n in gm.graph.nodes
        if n.op == "get_attr" and isinstance(getattr_path(gm, n.target, None), torch.nn.Parameter)
    ]


def autocast_regions(graph: fx.Graph) -> dict[fx.Node, dict[str, torch.dtype | None]]:
    """For each node, the autocast state in force there: device type -> dtype (None: disabled).

    Dynamo records ``torch.autocast`` blocks as ``_enter_autocast(device, dtype, enabled, ...)`` /
    ``_exit_autocast(enter_node)`` calls. Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    from torch.amp.autocast_mode import _enter_autocast, _exit_autocast

    stack: list[fx.Node] = []
    state: dict[fx.Node, dict[str, torch.dtype | None]] = {}
    for node in graph.nodes:
        if node.op == "call_function" and node.target is _enter_autocast:
            stack.append(node)
        elif node.op == "call_function" and node.target is _exit_autocast and node.args[0] in stack:
            stack.remove(node.args[0])
        active: dict[str, torch.dtype | None] = {}
        for enter in stack:
            device, dtype, enabled = enter.args[:3]
            active[device] = dtype if enabled else None
        state[node] = active
    return state


def source_path(source: Any) -> str:
    """``L['self']._modules['blocks']._modules['0']._parameters['weight']`` -> ``blocks.0.weight``:
    reads the private ``Source.name`` of Dynamo's sources. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return _dotted(source.name)


def module_path(node: fx.Node) -> str:
    """Dotted path of the innermost module that called ``node``, from ``meta["nn_module_stack"]``.

    Checked on torch 2.13 (values are ``(path, type)`` with paths like ``L['self'].blocks.0``).
    """
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return _dotted(path)


def _dotted(name: str) -> str:
    tokens = [a or b for a, b in _TOKEN.findall(_ROOT.sub(".", name, count=1))]
    return ".".join(t for t in tokens if t not in _CONTAINERS)


def root_module(source: Any) -> torch.nn.Module | None:
    """The outermost module on the path of a parameter's Dynamo source (``L['self']`` for a
    compiled module), found by evaluating the source's bases in the frame being compiled.
    None when that is not possible (then the caller keeps the original weight).

    Uses ``InstructionTranslator.current_tx()`` and ``Source.base``; checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    try:
        from torch._dynamo.symbolic_convert import InstructionTranslator

        tx = InstructionTranslator.current_tx()
        scope = {"L": tx.f_locals, "G": tx.f_globals, "__builtins__": __builtins__}
    except Exception:
        return None
    root, src = None, source
    while src is not None:
        try:
            value = eval(src.name, scope)
        except Exception:
            value = None
        if isinstance(value, torch.nn.Module):
            root = value
        src = getattr(src, "base", None)
    return root


def outermost_call(module: torch.nn.Module) -> tuple[torch.nn.Module, tuple[tuple, dict] | None]:
    """The outermost module on the Python call stack that contains ``module``, and the arguments it
    was called with (None if not found).

    When Dynamo compiles a frame below the model's own forward (a graph break in a loop over
    blocks, regional compilation, context-parallel hooks), the frame's ``self`` is one block; the
    model calling it is still on the stack. Reads the locals (``self``, ``args``, ``kwargs``) of
    ``nn.Module.__call__``'s frames only (``_call_impl``, ``_wrapped_call_impl``): reading other
    frames' locals would keep their variables alive. Unwraps ``OptimizedModule`` (``_orig_mod``).
    Checked on torch 2.13.0 and 2.11.0 (CPU) / CPython 3.11.
    """
    from torch._dynamo.eval_frame import OptimizedModule

    best, call = module, None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in _MODULE_CALL_FRAMES:
            local = frame.f_locals
            candidate = local.get("self")
            if isinstance(candidate, OptimizedModule):
                candidate = candidate._orig_mod
            if isinstance(candidate, torch.nn.Module) and (
                candidate is best or any(m is best for m in candidate.modules())
            ):
                best, call = candidate, (tuple(local.get("args", ())), dict(local.get("kwargs", {})))
        frame = frame.f_back
    return best, call


_MODULE_CALL_FRAMES = ("_call_impl", "_wrapped_call_impl")
