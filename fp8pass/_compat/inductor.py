"""Handing the rewritten graph to Inductor or AOT autograd with fp8pass's decompositions, and the
key that keeps Inductor's caches from serving kernels of other fp8pass op definitions.
Checked on torch 2.13.0 and 2.11.0 (CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx


def inductor_compiler(
    mode: str | None,
    options: dict[str, Any] | None,
    decompositions: dict[Any, Callable[..., Any]],
    definition: str,
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
    """
    from torch._inductor import list_mode_options
    from torch._inductor.compile_fx import compile_fx

    patches = {**(list_mode_options(mode) if mode else {}), **(options or {})}
    _add_to_inductor_decompositions(decompositions)

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
