"""Handing the rewritten graph to Inductor or AOT autograd with fp8pass's decompositions, the
key that keeps Inductor's caches from serving kernels of other fp8pass op definitions, and the
direct calls of fp8pass's CPU conversion ops in Inductor's generated code.
Checked on torch 2.13.0 and 2.11.0 (CPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx


def inductor_compiler(
    mode: str | None,
    options: dict[str, Any] | None,
    decompositions: dict[Any, Callable[..., Any]],
    definition: str,
    direct_calls: dict[torch._ops.OpOverload, Any],
) -> Callable[[fx.GraphModule, list[Any]], Any]:
    """Inductor with ``torch.compile``'s ``mode``/``options`` semantics plus fp8pass's decompositions;
    ``definition`` (a hash of what defines the ops' results, :func:`fp8pass.ops.definition_hash`)
    joins the cache key (:func:`cache_key_tag`).

    The decompositions go into Inductor's own table (:func:`_add_to_inductor_decompositions`)
    rather than ``compile_fx(decompositions=...)``: a table passed there becomes part of the FX
    graph cache key, and holds functions the cache cannot pickle, so every compile bypassed the
    FX graph cache and the AOTAutograd cache (a second process compiled from scratch). Our ops
    occur only in our graphs, so adding them to the global table changes nothing else.
    ``compile_fx(..., config_patches=)`` is internal; checked on torch 2.13.0 and 2.11.0 (CPU).
    ``direct_calls`` maps the weight conversion ops to the functions Inductor's generated code
    calls instead (:func:`_call_directly`); a post-grad pass moves each conversion up the graph
    (``_EarlyConversions``), before any pass the user set in ``post_grad_custom_pre_pass``.
    """
    from torch._inductor import config, list_mode_options
    from torch._inductor.compile_fx import compile_fx

    patches = {**(list_mode_options(mode) if mode else {}), **(options or {})}
    _add_to_inductor_decompositions(decompositions)
    for op, function in direct_calls.items():
        _call_directly(op, function)
    user_pass = patches.get("post_grad_custom_pre_pass", config.post_grad_custom_pre_pass)
    patches["post_grad_custom_pre_pass"] = _early_conversions()(frozenset(direct_calls), user_pass)

    def compile_(gm: fx.GraphModule, example_inputs: list[Any]) -> Any:
        with torch.compiler.config.patch(cache_key_tag=cache_key_tag(definition)):
            return compile_fx(gm, example_inputs, config_patches=patches)

    return compile_


def cache_key_tag(definition: str) -> str:
    """``torch.compiler.config.cache_key_tag`` while fp8pass compiles: the user's tag plus
    ``definition``, a hash of what the fp8pass ops compute. The AOTAutograd cache is keyed on the
    graph, in which an fp8pass op is one opaque call; what it computes lives in the
    decompositions, which no cache key covers. Without it, a cache directory filled by an older
    fp8pass handed its kernels to a newer one. The tag is read into the FX graph and AOTAutograd
    cache keys (``FxGraphHashDetails``); checked on torch 2.13.0 and 2.11.0 (CPU)."""
    user = torch.compiler.config.cache_key_tag
    return f"{user};fp8pass={definition}" if user else f"fp8pass={definition}"


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


def _call_directly(op: torch._ops.OpOverload, call: Any) -> None:
    """Has Inductor's Python wrapper call ``op`` without torch's dispatcher: ``call.function``
    ("package.module.name", a Python function taking the op's arguments and returning its output,
    the op's CPU kernel), or, where ``call.into`` offers one for the node's static shapes and
    dtypes, a plain function that writes into an output the wrapper allocates (:class:`_DirectCall`).

    Why: the generated code calls an opaque op as ``torch.ops.ns.op.default(...)``, and a round
    trip through the dispatcher into a Python kernel costs about 5 us (arguments boxed into
    IValues and back; 27 us a layer in all, measured in a compiled model), paid once per converted
    layer and step: on small layers, most of what FP8 storage costs. Inductor calls an op only
    once its inputs are real tensors of the device it compiled for, after autograd and
    functionalization, so the dispatcher would pick that same CPU kernel.

    How: ``CUSTOM_EXTERN_KERNEL_CODEGEN`` (``torch._inductor.codegen.custom_extern_kernel_codegen``),
    Inductor's registry of ops whose fallback call it writes differently, keyed by the op's
    ``python_kernel_name``; the function is imported once at the top of the generated module
    (``PythonWrapperCodegen.add_import_once``), so a module loaded from Inductor's cache in another
    process imports it too; an output is allocated by ``PythonWrapperCodegen.make_allocation``'s
    line, as Inductor allocates its own buffers. The C++ wrapper and the FX wrapper never consult
    the Python entry (they dispatch custom ops at run time), and with intermediate hooks on the
    default call is written. Checked on torch 2.13.0 and 2.11.0 (CPU).
    """
    from torch._inductor.codegen.custom_extern_kernel_codegen import (
        CUSTOM_EXTERN_KERNEL_CODEGEN,
        CustomCodegen,
    )

    name = f"torch.ops.{op.namespace}.{op._opname}.{op._overloadname}"
    current = CUSTOM_EXTERN_KERNEL_CODEGEN.get(name)
    if current is None or getattr(current.python, "call", None) != call:
        CUSTOM_EXTERN_KERNEL_CODEGEN[name] = CustomCodegen(python=_DirectCall(call))


def _import(wrapper: Any, function: str) -> str:
    """Imports ``function`` ("module.name") at the top of the generated module; its local name."""
    module, _, attr = function.rpartition(".")
    alias = "fp8pass_" + attr.lstrip("_")
    wrapper.add_import_once(f"from {module} import {attr} as {alias}")
    return alias


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


class _DirectCall:
    """Writes one fallback node's call, where Inductor's own ``_generate_extern_kernel_alloc_helper``
    writes ``bufN = torch.ops...(args)``: either ``bufN = <function>(args)``, or

        bufN = empty_strided_cpu(shape, strides, dtype)
        <into>(arg.data_ptr(), ..., bufN.data_ptr(), *literals)

    when every tensor input and the output have static shapes, the inputs are contiguous (the
    wrapper asserts its inputs' strides) and ``call.into([(shape, dtype), ...], out_dtype)`` names
    such a function and its literal arguments."""

    def __init__(self, call: Any) -> None:
        self.call = call

    def __call__(self, node: Any, writeline: Callable[[Any], None]) -> None:
        from torch._inductor import config
        from torch._inductor.codegen.wrapper import ExternKernelAllocLine
        from torch._inductor.virtualized import V

        wrapper = V.graph.wrapper_code
        if V.graph.cpp_wrapper or getattr(V.graph, "fx_wrapper", False) or config.generate_intermediate_hooks:
            writeline(ExternKernelAllocLine(wrapper, node))
            return
        if self.call.into is not None and (lines := self._into(node, wrapper)) is not None:
            for line in lines:
                writeline(line)
            return
        args = ", ".join([*node.codegen_args(), *node.codegen_kwargs()])
        writeline(f"{node.get_name()} = {_import(wrapper, self.call.function)}({args})")

    def _into(self, node: Any, wrapper: Any) -> list[str] | None:
        try:
            inputs = [
                (tuple(int(d) for d in i.get_size()), i.get_dtype(), tuple(int(d) for d in i.get_stride()))
                for i in node.inputs
            ]
            (out,) = node.outputs
            shape, dtype = tuple(int(d) for d in out.get_size()), out.get_dtype()
        except (TypeError, ValueError, AttributeError):  # symbolic sizes, or an unexpected node
            return None
        if any(stride != _contiguous(size) for size, _, stride in inputs):
            return None
        found = self.call.into([(size, dt) for size, dt, _ in inputs], dtype)
        if found is None:
            return None
        function, literals = found
        name = node.get_name()
        pointers = [f"{i.codegen_reference()}.data_ptr()" for i in node.inputs] + [f"{name}.data_ptr()"]
        return [
            wrapper.make_allocation(name, torch.device("cpu"), dtype, shape, _contiguous(shape)),
            f"{_import(wrapper, function)}({', '.join(pointers + [str(x) for x in literals])})",
        ]


def _heavy_ops() -> frozenset[Any]:
    """The ops Inductor calls as extern kernels (matmuls, convolutions, attention): the anchors of
    :class:`_EarlyConversions`."""
    aten = torch.ops.aten
    names = (
        "convolution",
        "mm",
        "addmm",
        "bmm",
        "baddbmm",
        "_scaled_mm",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )
    return frozenset(getattr(aten, n).default for n in names if hasattr(aten, n))


@functools.cache
def _early_conversions() -> type:
    """:class:`_EarlyConversions`, defined on first use: its base class lives in Inductor, which
    ``import fp8pass`` does not import."""
    from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

    class _EarlyConversions(CustomGraphPass):
        """A post-grad pass (``torch._inductor.config.post_grad_custom_pre_pass``, a
        ``CustomGraphPass``, whose ``uuid`` joins Inductor's cache key) that moves each FP8 weight
        conversion up to just after the last matmul, convolution or attention before it.

        Why: traced from fp8pass's ops, a conversion sits right before its convolution, after the
        group norm and SiLU that make the convolution's input. Inductor fuses a convolution weight's
        copy to channels-last into the kernel that computes the input (plain Inductor: one kernel for
        the group norm's statistics, its normalization, the SiLU and the weight copy); with the weight
        coming out of an extern call in between, it split that kernel in two: sd15-tiny compiled 45
        C++ kernels where plain Inductor compiles 36, and each is a C++ compile on a cold start. Moved
        up, the conversion is done before the group norm starts and the kernels are plain Inductor's.
        It stops at the previous extern call so that a converted weight never lives across a matmul
        or convolution of another layer: peak memory stays one layer's weight. Checked on torch 2.13.0
        and 2.11.0 (CPU).
        """

        def __init__(self, conversions: frozenset[Any], user_pass: Any) -> None:
            self.conversions = conversions
            self.user_pass = user_pass

        def __call__(self, graph: fx.Graph) -> None:
            move_conversions_up(graph, self.conversions, _heavy_ops())
            if self.user_pass is not None:
                self.user_pass(graph)

        def uuid(self) -> Any:
            mine = get_hash_for_files((__file__,))
            if self.user_pass is None:
                return mine
            theirs = self.user_pass.uuid() if hasattr(self.user_pass, "uuid") else None
            return None if theirs is None else (mine, theirs)  # None: Inductor bypasses its cache

    return _EarlyConversions


def move_conversions_up(graph: fx.Graph, conversions: frozenset[Any], anchors: frozenset[Any]) -> int:
    """Moves every node calling one of ``conversions`` to just after the last node calling one of
    ``anchors`` before it (never among the placeholders, nor before its own inputs); returns how
    many moved. Plain ``torch.fx`` (``Node.append``) on the post-grad ATen graph Inductor hands
    its custom passes; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    last_anchor, moves = (placeholders[-1] if placeholders else None), []
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        if n.target in conversions:
            candidates = [*n.all_input_nodes, *([last_anchor] if last_anchor is not None else [])]
            after = max(candidates, key=order.__getitem__, default=None)
            if after is not None and order[after] < order[n] - 1:
                moves.append((n, after))
        elif n.target in anchors:
            last_anchor = n
    for n, after in reversed(moves):  # conversions after one anchor keep their order
        after.append(n)
    return len(moves)
