"""Tensor and context parallelism for the zoo's denoisers, for ``benchmarks/distributed.py`` and
the distributed tests: how a model is parallelized per mode, and what a CPU run needs.

Modes:

- ``"tp"``: tensor parallelism. A model whose class declares a ``_tp_plan`` (Flux) goes through
  diffusers' ``enable_parallelism(ParallelConfig(tensor_parallel_config=TensorParallelConfig(...)))``;
  one without (Wan) gets :func:`plain_tp_plan` through torch's ``parallelize_module``.
- ``"ulysses"`` / ``"ring"``: diffusers' context parallelism (``ContextParallelConfig``) with the
  model's ``_cp_plan``.

Run inside an initialized process group (torchrun, or ``torch.multiprocessing.spawn``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .. import store
from .._compat.storage import local_tensor

__all__ = ["MODES", "call", "cpu_workarounds", "parallelize", "plain_tp_plan", "rank_weight_bytes"]

MODES = ("tp", "ulysses", "ring")


@contextlib.contextmanager
def cpu_workarounds(device: torch.device | str) -> Iterator[None]:
    """What diffusers' parallel setup needs to run on a CPU (gloo); nothing on an accelerator.

    A harness workaround, not fp8pass's concern, so it lives here and not in the library:
    diffusers 0.42.1 builds its device as ``rank % torch.accelerator.device_count()``, which
    divides by zero on a CPU, and its tensor parallelism refuses meshes on ``"cpu"``. While this
    context is open (around ``enable_parallelism`` only), ``device_count`` answers 1 and ``"cpu"``
    is an accepted TP device; the mesh is then a CPU mesh over gloo.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    from unittest import mock

    import diffusers.hooks.tensor_parallel as tp

    with (
        mock.patch.object(torch.accelerator, "device_count", return_value=1),
        mock.patch.object(tp, "_SUPPORTED_TP_DEVICES", (*tp._SUPPORTED_TP_DEVICES, "cpu")),
    ):
        yield


def plain_tp_plan(model: torch.nn.Module) -> dict[str, object]:
    """A ``parallelize_module`` plan for the attention and feed-forward linears of Wan's blocks
    (diffusers gives Wan no ``_tp_plan``). Wan's attention splits heads with the global head count
    (``unflatten(2, (attn.heads, -1))``) and normalizes q / k across heads, so head-sharded
    activations would be wrong: the attention's q / k / v and output projections are column-wise
    with their outputs gathered (``output_layouts=Replicate()``). The feed-forward is the usual
    column-wise then row-wise pair. Every planned weight is sharded, so each rank holds 1/world
    of them. (A row-wise output projection on the replicated attention output, the other choice,
    rounds two bf16 partial sums per call: measured on tiny Wan, bf16 under it is 52.5 dB from one
    process, under this plan 61.7 dB.)"""
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan: dict[str, object] = {}
    for i, _ in enumerate(model.blocks):
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                plan[f"blocks.{i}.{attn}.{proj}"] = ColwiseParallel(output_layouts=Replicate())
        plan[f"blocks.{i}.ffn.net.0.proj"] = ColwiseParallel()
        plan[f"blocks.{i}.ffn.net.2"] = RowwiseParallel()
    return plan


def parallelize(model: torch.nn.Module, mode: str, world: int, device: torch.device | str = "cpu") -> None:
    """Parallelize ``model`` in place over ``world`` ranks of the current process group."""
    from diffusers import ContextParallelConfig, ParallelConfig, TensorParallelConfig

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "tp" and getattr(model, "_tp_plan", None) is None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import parallelize_module

        if not hasattr(model, "blocks"):
            raise ValueError(f"{type(model).__name__} has no _tp_plan and no plain plan here")
        parallelize_module(model, init_device_mesh(torch.device(device).type, (world,)), plain_tp_plan(model))
        return
    if mode == "tp":
        config = ParallelConfig(tensor_parallel_config=TensorParallelConfig(tp_degree=world))
    else:
        degree = {"ulysses_degree" if mode == "ulysses" else "ring_degree": world}
        config = ParallelConfig(context_parallel_config=ContextParallelConfig(**degree))
    with cpu_workarounds(device):
        model.enable_parallelism(config=config)


def call(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """One forward of a diffusers denoiser without grad: its first output, detached and cloned
    (the clone waits on an output still in flight from a collective)."""
    with torch.no_grad():
        out = model(**inputs, return_dict=False)[0]
    return out.detach().clone()


def rank_weight_bytes(model: torch.nn.Module) -> dict[str, int]:
    """The weight memory this rank really holds for ``model``, from the tensors' storages:

    - ``"held"``: distinct storages of its parameters and buffers; a DTensor counts its local
      shard, a weight fp8pass released counts 0 (its storage is freed);
    - ``"fp8"``: distinct storages of the FP8 copies and scales fp8pass's store keeps for its
      parameters (local shards of sharded copies; a fused group's buffer once);
    - ``"total"``: the two together.
    """

    def add(storages: dict[int, int], t: torch.Tensor) -> None:
        s = local_tensor(t).untyped_storage()
        if s.nbytes():
            storages[s.data_ptr()] = s.nbytes()

    held: dict[int, int] = {}
    fp8: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        add(held, t)
    for p in model.parameters():
        for entry in store.entries(p):
            add(fp8, entry.q)
            add(fp8, entry.scale)
    out = {"held": sum(held.values()), "fp8": sum(fp8.values())}
    return {**out, "total": out["held"] + out["fp8"]}
