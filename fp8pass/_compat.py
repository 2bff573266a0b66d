"""Every reliance of fp8pass on private PyTorch behaviour, in one place.

Each helper names the torch versions it was checked on. When a torch upgrade breaks fp8pass,
this is the file to read first.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx

_ROOT = re.compile(r"""^[LG]\[['"][^'"]*['"]\]\.?""")
_TOKEN = re.compile(r"""\.(\w+)|\[['"]?([^'"\]]+)['"]?\]""")
_CONTAINERS = {"_modules", "_parameters", "_buffers", "__dict__"}


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
    """get_attr targets that are parameters: what Dynamo emits when it does not lift them to inputs."""
    return [
        n.target
        for n in gm.graph.nodes
        if n.op == "get_attr" and isinstance(_getattr_path(gm, n.target), torch.nn.Parameter)
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
    """``L['self']._modules['blocks']._modules['0']._parameters['weight']`` -> ``blocks.0.weight``."""
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


def top_source_name(source: Any) -> str:
    """The name of the outermost base of a Dynamo source (``L['self']``). Uses ``Source.base`` and
    ``Source.name``; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    while getattr(source, "base", None) is not None:
        source = source.base
    return source.name


def outermost_module(module: torch.nn.Module) -> torch.nn.Module:
    """The outermost module on the Python call stack that contains ``module``.

    When Dynamo compiles a frame below the model's own forward (a graph break in a loop over
    blocks makes it run the outer forward eagerly and compile each block's frame), the frame's
    ``self`` is one block; the model calling it is still on the stack. Reads ``f_locals['self']``
    of the calling frames, and unwraps ``OptimizedModule`` (``_orig_mod``); checked on torch 2.13.0
    and 2.11.0 (CPU) / CPython 3.11.
    """
    from torch._dynamo.eval_frame import OptimizedModule

    best = module
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, OptimizedModule):  # torch.compile's wrapper: name from the model
            candidate = candidate._orig_mod
        if isinstance(candidate, torch.nn.Module) and candidate is not best:
            if any(m is best for m in candidate.modules()):
                best = candidate
        frame = frame.f_back
    return best


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


def release_storage(t: torch.Tensor) -> bool:
    """Free ``t``'s memory but keep its shape, dtype, device and identity (so Dynamo's guards
    still pass). Reading it afterwards is undefined; callers must stop every eager read.
    The same mechanism FSDP2 uses. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    storage = t.untyped_storage()
    if t.storage_offset() != 0 or storage.nbytes() != t.numel() * t.element_size():
        return False
    storage.resize_(0)
    return True


def is_released(t: torch.Tensor) -> bool:
    return t.numel() > 0 and t.untyped_storage().nbytes() == 0


def restore_storage(t: torch.Tensor, value: torch.Tensor) -> None:
    t.untyped_storage().resize_(t.numel() * t.element_size())
    with torch.no_grad():
        t.copy_(value)


def rowwise_scaled_mm_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` takes per-row / per-column scales on ``device``: tried once
    per device on a 16x16 problem. torch 2.11's CPU kernel takes per-tensor scales only (checked:
    2.11.0+cu130 on CPU refuses, 2.13.0+cpu accepts); on CUDA it needs compute capability 8.9+."""
    device = torch.device(device)
    return _rowwise_probe(device.type, device.index)


@functools.cache
def _rowwise_probe(device_type: str, index: int | None) -> bool:
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    try:
        a = torch.ones(16, 16, device=device).to(torch.float8_e4m3fn)
        b = torch.ones(16, 16, device=device).to(torch.float8_e4m3fn).t()
        torch._scaled_mm(
            a,
            b,
            scale_a=torch.ones(16, 1, device=device),
            scale_b=torch.ones(1, 16, device=device),
            out_dtype=torch.bfloat16,
        )
    except (RuntimeError, NotImplementedError):
        return False
    return True


def inductor_compiler(
    mode: str | None, options: dict[str, Any] | None, decompositions: dict[Any, Callable[..., Any]]
) -> Callable[[fx.GraphModule, list[Any]], Any]:
    """Inductor with ``torch.compile``'s ``mode``/``options`` semantics plus extra decompositions.

    ``compile_fx(..., config_patches=, decompositions=)`` and ``select_decomp_table`` are
    internal; checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    from torch._inductor import list_mode_options
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    patches = {**(list_mode_options(mode) if mode else {}), **(options or {})}
    table = {**select_decomp_table(), **decompositions}

    def compile_(gm: fx.GraphModule, example_inputs: list[Any]) -> Any:
        return compile_fx(gm, example_inputs, config_patches=patches, decompositions=table)

    return compile_


def aot_eager_compiler(decompositions: dict[Any, Callable[..., Any]]) -> Callable[..., Any]:
    """AOT autograd with a no-op compiler: the graph Inductor would get, run eagerly."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._dynamo.backends.debugging import boxed_nop

    return aot_autograd(fw_compiler=boxed_nop, decompositions=decompositions)


def _getattr_path(mod: Any, target: str) -> Any:
    for part in target.split("."):
        mod = getattr(mod, part, None)
    return mod
