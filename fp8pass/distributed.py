"""fp8pass under tensor parallelism: DTensor weights and the sharding rules of fp8pass's linear ops.

Under tensor parallelism (torch's ``parallelize_module``, diffusers' ``TensorParallelConfig``) a
sharded linear's weight is a ``DTensor`` and Dynamo hands the backend those DTensor parameters.
Nothing else in fp8pass needs to know: :func:`fp8pass.quantize.quantize_weight` runs on a DTensor
as on any tensor, so each rank quantizes its own shard, and the FP8 copy and its scale come out as
DTensors laid out like the weight:

- column-wise (``Shard(0)``, output channels split): ``q`` is ``Shard(0)`` and per-channel scales
  are ``Shard(0)``, each rank's the scales of its own rows;
- row-wise (``Shard(1)``, the reduction dimension split): ``q`` is ``Shard(1)`` and the scale is
  ``Replicate``: the ``amax`` over the sharded dimension is a partial max that DTensor all-reduces
  (once, at compile time), so every rank scales with the full row's absmax.

Every rank's FP8 copy is therefore exactly its shard of the single-process FP8 copy. A row-wise
layer's output is a partial sum that the next redistribution adds up; it adds up right because the
op applies the scale to its own partial output and every rank uses the same scale (the bias is
taken as ``Partial``, so it is added once).

AOT autograd runs DTensor's sharding propagation for every op before it decomposes anything, so
the fp8pass ops need rules (:func:`register_sharding_rules`, through torch's public
``register_sharding``); DTensor then runs each op on the local shards. Registered the first time a
graph holds a DTensor parameter: ``import fp8pass`` does not load ``torch.distributed.tensor``.
Convolutions have no rules (diffusers' plans shard linears only): a DTensor convolution weight
stays unconverted, with that reason in its report row.
"""

from __future__ import annotations

from typing import Any

import torch

from ._compat.storage import local_tensor

__all__ = ["is_dtensor", "register_sharding_rules", "shard_note"]

_registered = False


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a DTensor (without importing ``torch.distributed.tensor``)."""
    return local_tensor(t) is not t


def shard_note(t: torch.Tensor) -> str:
    """For a report row: how ``t`` is laid out across ranks, or ``""`` for a plain tensor."""
    if not is_dtensor(t):
        return ""
    placements = ", ".join(str(p) for p in t.placements)
    return f"sharded ({placements}) over {t.device_mesh.size()} ranks: bytes are this rank's"


def register_sharding_rules() -> None:
    """Give DTensor the sharding rules of ``fp8pass::linear`` and ``fp8pass::scaled_linear`` (once
    per process)."""
    global _registered
    if _registered:
        return
    from torch.distributed.tensor.experimental import register_sharding

    register_sharding([torch.ops.fp8pass.linear.default, torch.ops.fp8pass.scaled_linear.default])(
        _linear_rules
    )
    _registered = True


def _linear_rules(x: Any, weight: Any, scale: Any, bias: Any) -> list[tuple[list, list]]:
    """``(output placements, input placements)`` per mesh dimension for ``op(x, q[N, K],
    scale[N] or [], bias[N] or None) -> y[..., N]``: replicated; column-wise; row-wise (partial
    output); activations split along a batch / sequence dimension with the weights replicated."""
    from torch.distributed.tensor import Partial, Replicate, Shard

    out = x.ndim - 1
    replicate = Replicate()

    def per_channel(p: Any) -> Any:  # a 0-d (per-tensor) scale is replicated whatever the weight
        return p if scale.ndim else replicate

    def with_bias(p: Any) -> Any:
        return None if bias is None else p

    rules = [
        ([replicate], [replicate, replicate, replicate, with_bias(replicate)]),
        ([Shard(out)], [replicate, Shard(0), per_channel(Shard(0)), with_bias(Shard(0))]),
        # the scale covers the full row (replicated); the bias is Partial so that it is added once
        ([Partial()], [Shard(out), Shard(1), replicate, with_bias(Partial())]),
    ]
    rules += [([Shard(d)], [Shard(d), replicate, replicate, with_bias(replicate)]) for d in range(out)]
    return rules
