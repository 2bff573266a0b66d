"""Ring attention (diffusers' context parallelism, ``ring_degree``) does not run on a CPU: the
reproduction, with no fp8pass involved (torch and diffusers only), on 2 processes over gloo.

    python benchmarks/ring_attention_cpu.py

Ring attention merges the partial attention of each sequence chunk with its log-sum-exp, so it
calls the attention backend with ``return_lse=True``; on a CPU the backend is torch's native SDPA,
which diffusers refuses to run that way. Ulysses (``ulysses_degree``) needs no LSE and runs. The
only workaround below is the CPU one every diffusers parallel run needs here: diffusers builds its
device as ``rank % torch.accelerator.device_count()``, which divides by zero on a CPU.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, port: int, mode: str) -> None:
    from diffusers import ContextParallelConfig, FluxTransformer2DModel, ParallelConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            pooled_projection_dim=32,
            axes_dims_rope=(8, 12, 12),
        ).eval()
        inputs = dict(
            hidden_states=torch.randn(1, 64, 16),
            encoder_hidden_states=torch.randn(1, 8, 64),
            pooled_projections=torch.randn(1, 32),
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(64, 3),
            txt_ids=torch.zeros(8, 3),
        )
        degree = {"ring_degree" if mode == "ring" else "ulysses_degree": world}
        with mock.patch.object(torch.accelerator, "device_count", return_value=1):  # CPU: 0 devices
            model.enable_parallelism(
                config=ParallelConfig(context_parallel_config=ContextParallelConfig(**degree))
            )
        try:
            with torch.no_grad():
                out = model(**inputs, return_dict=False)[0]
            if rank == 0:
                print(f"{mode}: ran, output {tuple(out.shape)}")
        except Exception as e:  # what a user sees, and where it is raised
            if rank == 0:
                where = traceback.extract_tb(e.__traceback__)[-1]
                path = where.filename.split("site-packages/")[-1]
                print(f"{mode}: {type(e).__name__}: {e}\n  raised in {where.name} ({path}:{where.lineno})")
    finally:
        dist.destroy_process_group()


def main() -> None:
    for mode in sys.argv[1:] or ["ring", "ulysses"]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(_worker, args=(2, port, mode), nprocs=2, start_method="spawn")


if __name__ == "__main__":
    main()
