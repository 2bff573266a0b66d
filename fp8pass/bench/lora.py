"""LoRA hot-swapping on an fp8pass-compiled model, as a scenario a test asserts on and a benchmark
reports (``benchmarks/compile_cost.py``): diffusers' ``enable_lora_hotswap`` +
``load_lora_adapter`` / ``load_lora_weights(hotswap=True)`` on flux-dev-tiny, three swaps."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch

from .. import store
from ..backend import FP8Backend
from ..config import FP8Config
from ..metrics import sqnr as _sqnr
from . import zoo

__all__ = ["SWAP_RANKS", "hotswap", "lora_state_dict"]

#: the ranks of the adapters swapped in, in order, after a first adapter of rank 4; the target
#: rank given to ``enable_lora_hotswap`` is their maximum
SWAP_RANKS = (8, 4, 6)


def lora_state_dict(seed: int, rank: int, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """A diffusers-format LoRA state dict on flux-dev-tiny's attention projections."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for blk in ("transformer_blocks.0", "single_transformer_blocks.0", "single_transformer_blocks.1"):
        for p in ("to_q", "to_k", "to_v"):
            sd[f"transformer.{blk}.attn.{p}.lora_A.weight"] = (torch.randn(rank, 64, generator=g) * 0.15).to(
                dtype
            )
            sd[f"transformer.{blk}.attn.{p}.lora_B.weight"] = (torch.randn(64, rank, generator=g) * 0.15).to(
                dtype
            )
    return sd


def _run(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out[0] if isinstance(out, tuple) else out


def hotswap(
    level: str = "model",
    inner: str = "aot_eager",
    config: FP8Config | None = None,
    sqnr: Callable[[torch.Tensor, torch.Tensor], float] = _sqnr,
) -> dict[str, Any]:
    """Load a rank-4 adapter, compile flux-dev-tiny with fp8pass, call it, then hot-swap three
    adapters (:data:`SWAP_RANKS`) through the model (``level="model"``) or its pipeline
    (``"pipeline"``), calling the compiled model after each. Returns, per swap: the swap's and the
    next call's wall time, the graphs fp8pass has compiled by then, the output's SQNR against the
    bf16 model carrying the same adapter and against the previous adapter's output; and whether the
    base weights are released with an FP8 copy in the store."""
    pipe, _ = zoo.build_pipeline("flux-dev-tiny")
    model, inputs = pipe.transformer, {**zoo.build_inputs("flux-dev-tiny"), "return_dict": False}
    ref = copy.deepcopy(model)
    owner = pipe if level == "pipeline" else model
    owner.enable_lora_hotswap(target_rank=max(SWAP_RANKS))

    def load(sd: dict[str, torch.Tensor], **kw: Any) -> None:
        if level == "pipeline":
            pipe.load_lora_weights(sd, adapter_name="default_0", **kw)
        else:
            model.load_lora_adapter(sd, adapter_name="default_0", **kw)

    load(lora_state_dict(0, 4))
    be = FP8Backend(config, inner=inner)
    cm = torch.compile(model, backend=be)
    t0 = time.perf_counter()
    previous = _run(cm, inputs)
    first_call_s = time.perf_counter() - t0
    swaps = []
    for i, rank in enumerate(SWAP_RANKS):
        graphs_before = be.num_graphs
        t0 = time.perf_counter()
        load(lora_state_dict(i + 1, rank), hotswap=True)
        swap_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = _run(cm, inputs)
        call_s = time.perf_counter() - t0
        expected = copy.deepcopy(ref)
        expected.load_lora_adapter(lora_state_dict(i + 1, rank), adapter_name="default_0")
        swaps.append(
            {
                "rank": rank,
                "graphs_before": graphs_before,
                "graphs_after": be.num_graphs,
                "swap_s": swap_s,
                "call_after_swap_s": call_s,
                "sqnr_vs_bf16_same_adapter_db": sqnr(_run(expected, inputs), out),
                "sqnr_vs_previous_adapter_db": sqnr(previous, out),
            }
        )
        previous = out
    base = model.transformer_blocks[0].attn.to_q.base_layer.weight
    return {
        "level": level,
        "inner": inner,
        "target_rank": max(SWAP_RANKS),
        "first_call_s": first_call_s,
        "swaps": swaps,
        "graphs": be.num_graphs,
        "base_weight_released": base.untyped_storage().nbytes() == 0,
        "base_weight_in_fp8_store": bool(store.entries(base)),
    }
