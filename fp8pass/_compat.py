"""Every reliance of fp8pass on private PyTorch behaviour, in one place.

Each helper names the torch versions it was checked on. When a torch upgrade breaks fp8pass,
this is the file to read first.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols, guard_or_false

_ROOT = re.compile(r"""^[LG]\[['"][^'"]*['"]\]\.?""")
_TOKEN = re.compile(r"""\.(\w+)|\[['"]?([^'"\]]+)['"]?\]""")
_CONTAINERS = {"_modules", "_parameters", "_buffers", "__dict__"}

#: What Dynamo records in its graph for ``F.linear`` / ``nn.Linear``: the private C binding.
#: Checked on torch 2.13.0 and 2.11.0 (CPU).
LINEAR_CALLS = frozenset({torch._C._nn.linear})
_MISSING = object()


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
        if n.op == "get_attr" and isinstance(_getattr_path(gm, n.target, None), torch.nn.Parameter)
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


def top_source_name(source: Any) -> str:
    """The name of the outermost base of a Dynamo source (``L['self']``). Uses ``Source.base`` and
    ``Source.name``; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    while getattr(source, "base", None) is not None:
        source = source.base
    return source.name


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


def outermost_module(module: torch.nn.Module) -> torch.nn.Module:
    """The model :func:`outermost_call` finds (checked on torch 2.13.0 and 2.11.0, CPU)."""
    return outermost_call(module)[0]


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
            _set_attr_path(root, node.target, _getattr_path(gm, node.target), node.target in buffers)
    return fx.GraphModule(root, graph, class_name="FP8GraphModule"), env


def _getattr_path(obj: Any, target: str, default: Any = _MISSING) -> Any:
    """``obj.a.b.c`` for ``target="a.b.c"`` (``default`` where a part is missing, if given)."""
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


def fake_mode(gm: fx.GraphModule) -> Any:
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


def local_tensor(t: Any) -> Any:
    """A DTensor's local shard (the tensor that holds this rank's memory); any other value as it is.
    Reads the private ``DTensor._local_tensor`` (``to_local()`` goes through autograd and may hand
    back a view). Looks the class up in ``sys.modules`` only: no DTensor exists unless
    ``torch.distributed.tensor`` was imported, and importing it here would slow ``import fp8pass``.
    Checked on torch 2.13.0 (CPU, gloo); 2.11.0 unchecked (its ``DTensor`` has the same attribute)."""
    module = sys.modules.get("torch.distributed.tensor")
    if module is not None and isinstance(t, module.DTensor):
        return t._local_tensor
    return t


def release_storage(t: torch.Tensor) -> bool:
    """Free ``t``'s memory but keep its shape, dtype, device and identity (so Dynamo's guards
    still pass). Reading it afterwards is undefined; callers must stop every eager read.
    The same mechanism FSDP2 uses. A tensor on storage that cannot be resized (a memory-mapped
    file: ``from_pretrained`` on a CPU maps the safetensors file) is first moved to a fresh
    allocation that is never written, so no page of it becomes resident, and the mapping is
    let go. A DTensor's local shard is what is freed (a DTensor's own storage cannot be resized;
    Dynamo guards its spec and the local tensor's shape, which stay). Checked on torch 2.13.0 and
    2.11.0 (CPU); for DTensors on 2.13.0 only (CPU, gloo), 2.11.0 unchecked."""
    t = local_tensor(t)
    storage = t.untyped_storage()
    if t.storage_offset() != 0 or storage.nbytes() != t.numel() * t.element_size():
        return False
    if not storage.resizable():
        set_tensor_data(t, torch.empty_like(t, memory_format=torch.contiguous_format))
        storage = t.untyped_storage()
    storage.resize_(0)
    return True


def is_released(t: torch.Tensor) -> bool:
    """Whether :func:`release_storage` freed ``t`` (a DTensor: its local shard). Checked on torch
    2.13.0 and 2.11.0 (CPU); for DTensors on 2.13.0 only, 2.11.0 unchecked."""
    t = local_tensor(t)
    return t.numel() > 0 and t.untyped_storage().nbytes() == 0


def restore_storage(t: torch.Tensor, value: torch.Tensor) -> None:
    """Give a released ``t`` memory again, holding ``value`` (for a DTensor, a DTensor laid out like
    it: local shard to local shard). Checked on torch 2.13.0 and 2.11.0 (CPU); for DTensors on
    2.13.0 only, 2.11.0 unchecked."""
    t, value = local_tensor(t), local_tensor(value)
    t.untyped_storage().resize_(t.numel() * t.element_size())
    with torch.no_grad():
        t.copy_(value)


# -- eager-use guards (fp8pass.guards) -----------------------------------------------------------------

_TENSOR_DATA = torch.Tensor.data  # the C-level descriptor behind ``tensor.data``


def tensor_data(t: torch.Tensor) -> torch.Tensor:
    """``t.data`` through torch's own descriptor, for a subclass whose ``data`` property wraps it.
    ``Tensor.data`` is a getset descriptor of the C class; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return _TENSOR_DATA.__get__(t)


def set_tensor_data(t: torch.Tensor, value: torch.Tensor) -> None:
    """``t.data = value`` through torch's own descriptor. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    _TENSOR_DATA.__set__(t, value)


def shadow_apply(module: torch.nn.Module, fn: Callable[..., Any]) -> None:
    """Route ``module.to()`` / ``.cuda()`` / ``.float()`` / ``.half()`` (all of which go through the
    private ``Module._apply``, which has no hook) to ``fn``, on this instance only. Checked on torch
    2.13.0 and 2.11.0 (CPU)."""
    module._apply = fn


def unshadow_apply(module: torch.nn.Module) -> None:
    """Undo :func:`shadow_apply`. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    module.__dict__.pop("_apply", None)


def class_apply(module: torch.nn.Module, fn: Callable[..., Any], recurse: bool) -> Any:
    """What ``module._apply(fn, recurse)`` does without the instance's shadow. Checked on torch
    2.13.0 and 2.11.0 (CPU)."""
    return type(module)._apply(module, fn, recurse)


def offloading_hooks(module: torch.nn.Module) -> list[str]:
    """Names of hooks on ``module`` that move its weights between devices, found by the private
    attributes the libraries set, neither imported: diffusers' hook registry ``_diffusers_hook``
    (``.hooks``, names containing "offload": group offloading), accelerate's ``_hf_hook``
    (``CpuOffload``, an offloading ``AlignDevicesHook``, or a ``SequentialHook`` holding one).
    Checked on diffusers 0.42.1 and accelerate 1.15.0."""
    registry = getattr(module, "_diffusers_hook", None)
    found = [str(h) for h in (getattr(registry, "hooks", None) or {}) if "offload" in str(h)]
    hook = getattr(module, "_hf_hook", None)
    if _accelerate_moves_weights(hook):
        found.append(f"accelerate {type(hook).__name__}")
    return found


def _accelerate_moves_weights(hook: Any) -> bool:
    kind = type(hook).__name__
    if kind == "SequentialHook":
        return any(_accelerate_moves_weights(h) for h in hook.hooks)
    return kind == "CpuOffload" or (kind == "AlignDevicesHook" and bool(getattr(hook, "offload", False)))


def rowwise_scaled_mm_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` takes per-row / per-column scales on ``device``: tried once
    per device on a 16x16 problem. torch 2.11's CPU kernel takes per-tensor scales only; on CUDA it
    needs compute capability 8.9+. Checked on torch 2.13.0 (CPU: accepts) and 2.11.0 (CPU: refuses)."""
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


def known_empty(t: torch.Tensor) -> bool:
    """Whether ``t`` is certainly empty; ``False`` where its size is data-dependent and unknown
    while tracing (an unbacked symbol: HunyuanVideo FramePack's masked text tokens), instead of
    the error a plain ``t.numel() == 0`` raises there. ``guard_or_false`` lives in
    ``torch.fx.experimental``; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return guard_or_false(t.numel() == 0)


def data_dependent_rows(t: torch.Tensor) -> bool:
    """Whether ``t``'s first dimension is an unbacked symbol while tracing (a row count that
    depends on data, like HunyuanVideo FramePack's masked text tokens). torch's meta function for
    ``_scaled_mm`` asks whether the per-row activation scale has one element, which cannot be
    decided for such a count. ``free_unbacked_symbols`` lives in ``torch.fx.experimental``;
    checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return t.dim() > 0 and bool(free_unbacked_symbols(t.shape[0]))


def scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``(a * scale_a) @ (b * scale_b) + bias`` in ``out_dtype``, ``a`` row-major and ``b``
    column-major FP8, scales per tensor (0-d) or per row of ``a`` / column of ``b``.

    ``torch._scaled_mm`` is private. The public ``torch.nn.functional.scaled_mm`` exists in 2.11
    and 2.13, but calls ``aten._scaled_mm_v2``, which 2.11's Inductor has no lowering for (2.13's
    has): Inductor's FP8 matmul templates would be out of reach on 2.11. Inductor lowers
    ``aten._scaled_mm`` in both. Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out_dtype)


def inductor_compiler(
    mode: str | None, options: dict[str, Any] | None, decompositions: dict[Any, Callable[..., Any]]
) -> Callable[[fx.GraphModule, list[Any]], Any]:
    """Inductor with ``torch.compile``'s ``mode``/``options`` semantics plus fp8pass's decompositions.

    The decompositions go into Inductor's own table (:func:`_add_to_inductor_decompositions`)
    rather than ``compile_fx(decompositions=...)``: a table passed there becomes part of the FX
    graph cache key, and holds functions the cache cannot pickle, so every compile bypassed the
    FX graph cache and the AOTAutograd cache (a second process compiled from scratch). Our ops
    occur only in our graphs, so adding them to the global table changes nothing else.
    ``compile_fx(..., config_patches=)`` is internal; checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    from torch._inductor import list_mode_options
    from torch._inductor.compile_fx import compile_fx

    patches = {**(list_mode_options(mode) if mode else {}), **(options or {})}
    _add_to_inductor_decompositions(decompositions)

    def compile_(gm: fx.GraphModule, example_inputs: list[Any]) -> Any:
        with torch.compiler.config.patch(cache_key_tag=_cache_key_tag()):
            return compile_fx(gm, example_inputs, config_patches=patches)

    return compile_


def _cache_key_tag() -> str:
    """``torch.compiler.config.cache_key_tag`` while fp8pass compiles: the user's tag plus a hash
    of fp8pass's source. The AOTAutograd cache is keyed on Dynamo's graph, in which an fp8pass op
    is one opaque call; what it computes lives in the decompositions, which no cache key covers.
    Without the hash, a cache directory filled by an older fp8pass handed its kernels to a newer
    one. The tag is read into the FX graph and AOTAutograd cache keys (``FxGraphHashDetails``);
    checked on torch 2.13.0 and 2.11.0 (CPU)."""
    user = torch.compiler.config.cache_key_tag
    return f"{user};fp8pass={_source_hash()}" if user else f"fp8pass={_source_hash()}"


@functools.cache
def _source_hash() -> str:
    import hashlib
    from pathlib import Path

    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _add_to_inductor_decompositions(decompositions: dict[Any, Callable[..., Any]]) -> None:
    """``torch._inductor.decomposition.decompositions`` (the table ``select_decomp_table`` builds
    from) and its cached copy ``fast_random_decomps``. Checked on torch 2.13.0 and 2.11.0."""
    from torch._inductor import decomposition

    missing = {op: fn for op, fn in decompositions.items() if decomposition.decompositions.get(op) is not fn}
    if missing:
        decomposition.decompositions.update(missing)
        decomposition.fast_random_decomps.cache_clear()


def aot_eager_compiler(decompositions: dict[Any, Callable[..., Any]]) -> Callable[..., Any]:
    """AOT autograd with a no-op compiler: the graph Inductor would get, run eagerly. Uses
    ``torch._dynamo.backends``' ``aot_autograd`` / ``boxed_nop``; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._dynamo.backends.debugging import boxed_nop

    return aot_autograd(fw_compiler=boxed_nop, decompositions=decompositions)


@functools.cache
def _glibc_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim(0)``; nothing
    elsewhere). Loading a checkpoint tensor by tensor frees each original after quantizing it, but
    glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in the heap, between
    the FP8 copies made meanwhile: without this, loading SD1.5 from bf16 held 1.62 GiB resident for
    0.80 GiB of FP8 weights. Not torch behaviour but the C library's; checked on glibc 2.36
    (Debian 12) with torch 2.13.0 and 2.11.0 (CPU)."""
    trim = _glibc_malloc_trim()
    if trim is not None:
        trim(0)
