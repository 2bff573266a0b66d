"""Checkpoint files in the layouts people download, written from a model, for the loader's tests.

The original (non-diffusers) key names are the published ones: Wan 2.1's as released by Wan-AI
(``blocks.0.self_attn.q.weight``, ``head.head.weight``), SD3's as released by Stability
(``joint_blocks.0.x_block.attn.qkv.weight``, fused q/k/v). Each ``*_original`` function is checked
against diffusers' own conversion function: converting its output gives the diffusers state dict
back, tensor for tensor (``assert_round_trip``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from fp8pass.quantize import quantize_weight

# diffusers key -> Wan's original, applied in order
_WAN = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"\.scale_shift_table$", ".modulation"),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"\.norm2\.", ".norm__x."),
    (r"\.norm3\.", ".norm2."),
    (r"\.norm__x\.", ".norm3."),
]


def wan_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``WanTransformer3DModel`` state dict in Wan 2.1's released key layout."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _WAN:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def sd3_original(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """A diffusers ``SD3Transformer2DModel`` state dict in SD3's released layout: fused q/k/v, and
    the last context block's and the final layer's modulation in (shift, scale) order."""
    s = dict(state)
    out = {
        "pos_embed": s.pop("pos_embed.pos_embed"),
        "x_embedder.proj.weight": s.pop("pos_embed.proj.weight"),
        "x_embedder.proj.bias": s.pop("pos_embed.proj.bias"),
        "context_embedder.weight": s.pop("context_embedder.weight"),
        "context_embedder.bias": s.pop("context_embedder.bias"),
    }
    for src, dst in (("timestep_embedder", "t_embedder"), ("text_embedder", "y_embedder")):
        for a, b in (("linear_1", "0"), ("linear_2", "2")):
            for p in ("weight", "bias"):
                out[f"{dst}.mlp.{b}.{p}"] = s.pop(f"time_text_embed.{src}.{a}.{p}")

    def swap(t: torch.Tensor) -> torch.Tensor:  # diffusers holds (scale, shift); the original (shift, scale)
        scale, shift = t.chunk(2, dim=0)
        return torch.cat([shift, scale])

    for i in range(num_layers):
        b, j = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        last = i == num_layers - 1
        for p in ("weight", "bias"):
            out[f"{j}.x_block.attn.qkv.{p}"] = torch.cat([s.pop(f"{b}.attn.to_{x}.{p}") for x in "qkv"])
            out[f"{j}.context_block.attn.qkv.{p}"] = torch.cat(
                [s.pop(f"{b}.attn.add_{x}_proj.{p}") for x in "qkv"]
            )
            out[f"{j}.x_block.attn.proj.{p}"] = s.pop(f"{b}.attn.to_out.0.{p}")
            if not last:
                out[f"{j}.context_block.attn.proj.{p}"] = s.pop(f"{b}.attn.to_add_out.{p}")
            if f"{b}.attn2.to_q.{p}" in s:
                out[f"{j}.x_block.attn2.qkv.{p}"] = torch.cat([s.pop(f"{b}.attn2.to_{x}.{p}") for x in "qkv"])
                out[f"{j}.x_block.attn2.proj.{p}"] = s.pop(f"{b}.attn2.to_out.0.{p}")
            out[f"{j}.x_block.adaLN_modulation.1.{p}"] = s.pop(f"{b}.norm1.linear.{p}")
            context = s.pop(f"{b}.norm1_context.linear.{p}")
            out[f"{j}.context_block.adaLN_modulation.1.{p}"] = swap(context) if last else context
            out[f"{j}.x_block.mlp.fc1.{p}"] = s.pop(f"{b}.ff.net.0.proj.{p}")
            out[f"{j}.x_block.mlp.fc2.{p}"] = s.pop(f"{b}.ff.net.2.{p}")
            if not last:
                out[f"{j}.context_block.mlp.fc1.{p}"] = s.pop(f"{b}.ff_context.net.0.proj.{p}")
                out[f"{j}.context_block.mlp.fc2.{p}"] = s.pop(f"{b}.ff_context.net.2.{p}")
        for attn, blk in (("attn", "x_block.attn"), ("attn", "context_block.attn")):
            for a, b2 in (("q", "q"), ("k", "k")):
                name = f"{b}.{attn}.norm_{'added_' if 'context' in blk else ''}{a}.weight"
                if name in s:
                    out[f"{j}.{blk}.ln_{b2}.weight"] = s.pop(name)
        for a in "qk":
            if f"{b}.attn2.norm_{a}.weight" in s:
                out[f"{j}.x_block.attn2.ln_{a}.weight"] = s.pop(f"{b}.attn2.norm_{a}.weight")
    for p in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{p}"] = swap(s.pop(f"norm_out.linear.{p}"))
        out[f"final_layer.linear.{p}"] = s.pop(f"proj_out.{p}")
    assert not s, f"sd3_original left keys behind: {sorted(s)[:5]}"
    return out


def assert_round_trip(
    convert, original: dict[str, torch.Tensor], diffusers_state: dict[str, torch.Tensor]
) -> None:
    """diffusers' ``convert`` turns ``original`` back into ``diffusers_state``, tensor for tensor."""
    back = convert(checkpoint=dict(original))
    assert set(back) == set(diffusers_state), sorted(set(back) ^ set(diffusers_state))[:5]
    for key, value in diffusers_state.items():
        assert torch.equal(back[key], value), key


def comfy_scaled(
    original: dict[str, torch.Tensor],
    naming: str,
    fp8: torch.dtype = torch.float8_e4m3fn,
    prefix: str = "model.diffusion_model.",
    per_row: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """ComfyUI's "fp8 scaled" file from an original-layout state dict: every 2-D ``.weight`` in FP8
    with a float32 scale beside it, per tensor (0-d) or ``per_row`` ([N], as diffusers' BFL
    quantizer writes it). ``naming="old"``: ``LAYER.scale_weight`` and a ``scaled_fp8`` marker of
    the storage dtype; ``"new"``: ``LAYER.weight_scale`` and a ``LAYER.comfy_quant`` uint8 JSON
    tensor. Also ``scale_input`` / ``input_scale`` (static activation scales, which fp8pass does
    not use) on the first layer. Returns (tensors, safetensors metadata)."""
    out: dict[str, torch.Tensor] = {}
    first = True
    for key, value in original.items():
        if key.endswith(".weight") and value.dim() == 2 and value.is_floating_point():
            q, scale = quantize_weight(value, fp8, "channel" if per_row else "tensor")
            layer = prefix + key.removesuffix(".weight")
            out[prefix + key] = q
            if naming == "old":
                out[layer + ".scale_weight"] = scale
                if first:
                    out[layer + ".scale_input"] = torch.tensor(1.0)
            else:
                out[layer + ".weight_scale"] = scale
                conf = json.dumps({"format": str(fp8).removeprefix("torch.")}).encode()
                out[layer + ".comfy_quant"] = torch.tensor(list(conf), dtype=torch.uint8)
                if first:
                    out[layer + ".input_scale"] = torch.tensor(1.0)
            first = False
        else:
            out[prefix + key] = value
    if naming == "old":
        out[prefix + "scaled_fp8"] = torch.empty(0, dtype=fp8)
    return out, {}


def save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Written by safetensors' own writer, as the files people download were."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def diffusers_folder(model: torch.nn.Module, folder: Path, dtype: torch.dtype, shards: int = 2) -> Path:
    """``model`` saved as diffusers saves it: config.json, ``diffusion_pytorch_model-0000i-of-0000n``
    shards in ``dtype`` and ``diffusion_pytorch_model.safetensors.index.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(dtype) if v.is_floating_point() else v.detach()
        for k, v in model.state_dict().items()
    }
    keys = sorted(state)
    per = -(-len(keys) // shards)
    weight_map = {}
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i * per : (i + 1) * per]}
        save(part, folder / name, {"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {
        "metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
        "weight_map": weight_map,
    }
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps(index, indent=2, sort_keys=True)
    )
    (folder / "config.json").write_text(
        json.dumps({"_class_name": type(model).__name__, **dict(model.config)}, default=list)
    )
    return folder
