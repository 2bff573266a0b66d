"""Build LoRA files offline, in the layouts users download, for tiny diffusers models.

Only torch, safetensors, peft and diffusers are needed (no hub, no fp8pass). Checked on torch
2.13.0 (CPU), diffusers 0.42.1, peft 0.21.2, transformers 5.24.0.

Layouts
-------
(i)   diffusers / PEFT, as ``ModelMixin.save_lora_adapter`` writes it (:func:`save_peft_lora`):
      ``<dir>/pytorch_lora_weights.safetensors``; keys ``<module path>.lora_A.weight`` [r, in] and
      ``<module path>.lora_B.weight`` [out, r] with NO component prefix; safetensors metadata
      ``{"format": "pt", "lora_adapter_metadata": json(LoraConfig.to_dict())}`` (r, lora_alpha,
      target_modules, ...). Load with ``model.load_lora_adapter(dir, prefix=None, adapter_name=...)``
      (the default ``prefix="transformer"`` keeps only keys starting with "transformer." and would
      load NOTHING: a warning, no error).
      As the pipelines' ``save_lora_weights`` writes it (:func:`save_pipeline_lora`): the same keys
      prefixed ``transformer.`` (``unet.`` for SD/SDXL) and metadata keys prefixed likewise
      (``"transformer.r"``, ``"transformer.lora_alpha"``, ...). Load with
      ``pipe.load_lora_weights(dir)`` or ``model.load_lora_adapter(dir, prefix="transformer")``
      (``prefix="unet"`` for a UNet).
(ii)  kohya / sd-scripts ``lora_unet_*`` (:func:`kohya_sdxl_state_dict`, :func:`kohya_flux_state_dict`):
      ``lora_unet_<path with _>.lora_down.weight`` [r, in] (conv: [r, in, kh, kw]),
      ``.lora_up.weight`` [out, r] (conv: [out, r, 1, 1]), ``.alpha`` (0-d float tensor); the delta is
      ``up @ down * alpha / r``. SDXL uses the sgm UNet's paths (``input_blocks_4_1_...``); Flux uses
      BFL's (``double_blocks_0_img_attn_qkv``: q, k and v fused). Accepted by
      ``StableDiffusionXLPipeline.load_lora_weights`` / ``FluxPipeline.load_lora_weights`` (not by
      ``model.load_lora_adapter``: the conversion lives in the pipeline mixins' ``lora_state_dict``).
(iii) a LoRA on normalisation / embedder / output linears (:data:`FLUX_EXTRA_TARGETS`), in layout (i).

Each builder was checked against an UNCONVERTED model: every file loads with the diffusers call above,
lands on the expected modules, and changes the output as the same LoRA applied by hand does
(36-46 dB); tests/test_lora.py compares with the same calls on an unconverted model again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

BF16 = torch.bfloat16
WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers.loaders.lora_base.LORA_WEIGHT_NAME_SAFE

# -- tiny models ---------------------------------------------------------------------------------

TINY_FLUX = dict(
    patch_size=1,
    in_channels=16,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    guidance_embeds=False,
    axes_dims_rope=(4, 6, 6),
)
TINY_SD3 = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    num_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    caption_projection_dim=32,
    pooled_projection_dim=32,
    out_channels=4,
    pos_embed_max_size=16,
)
TINY_SDXL = dict(  # the zoo's sdxl-tiny: SDXL's block kinds, text_time conditioning
    block_out_channels=(64, 128),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    transformer_layers_per_block=(1, 2),
    attention_head_dim=(2, 4),
    cross_attention_dim=64,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,
    use_linear_projection=True,
    sample_size=16,
)
TINY_WAN = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    text_dim=32,
    freq_dim=16,
    ffn_dim=64,
    num_layers=1,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
)


def tiny_model(kind: str, dtype: torch.dtype = BF16, seed: int = 0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model, forward kwargs)`` for ``kind`` in flux / sd3 / sdxl / wan: a tiny diffusers denoiser in
    eval mode without grad, its default init under ``torch.manual_seed(seed)``."""
    import diffusers

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    if kind == "flux":
        model = diffusers.FluxTransformer2DModel(**TINY_FLUX)
        n_img, n_txt = 16, 4
        ids = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij"), -1).reshape(-1, 2)
        inputs = dict(
            hidden_states=rnd(1, n_img, 16),
            encoder_hidden_states=rnd(1, n_txt, 32),
            pooled_projections=rnd(1, 32),
            timestep=torch.tensor([0.5], dtype=dtype),
            img_ids=torch.cat([torch.zeros(n_img, 1), ids.float()], 1),
            txt_ids=torch.zeros(n_txt, 3),
            return_dict=False,
        )
    elif kind == "sd3":
        model = diffusers.SD3Transformer2DModel(**TINY_SD3)
        inputs = dict(
            hidden_states=rnd(1, 4, 8, 8),
            encoder_hidden_states=rnd(1, 4, 32),
            pooled_projections=rnd(1, 32),
            timestep=torch.tensor([500.0], dtype=dtype),
            return_dict=False,
        )
    elif kind == "sdxl":
        model = diffusers.UNet2DConditionModel(**TINY_SDXL)
        inputs = dict(
            sample=rnd(1, 4, 16, 16),
            timestep=torch.tensor([500]),
            encoder_hidden_states=rnd(1, 4, 64),
            added_cond_kwargs={
                "text_embeds": rnd(1, 32),
                "time_ids": torch.tensor([[64, 64, 0, 0, 64, 64]], dtype=dtype),
            },
            return_dict=False,
        )
    elif kind == "wan":
        model = diffusers.WanTransformer3DModel(**TINY_WAN)
        inputs = dict(
            hidden_states=rnd(1, 4, 2, 4, 4),
            timestep=torch.tensor([500]),
            encoder_hidden_states=rnd(1, 4, 32),
            return_dict=False,
        )
    else:
        raise ValueError(kind)
    # the zoo's checkpoint-like statistics (per-channel magnitudes, biases and norm gains that
    # matter): every LoRA target matters to the output, and FP8's floor is what a trained model's is
    from fp8pass.bench.zoo import init_weights

    init_weights(model, seed)
    return model.to(dtype).eval().requires_grad_(False), inputs


def tiny_pipeline(kind: str, model: torch.nn.Module):
    """The diffusers pipeline class of ``kind`` around ``model``, every other component ``None``:
    enough for ``load_lora_weights`` / ``fuse_lora`` / ``set_adapters`` / ``unload_lora_weights``."""
    import diffusers

    if kind == "flux":
        return diffusers.FluxPipeline(
            scheduler=None,
            vae=None,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            transformer=model,
        )
    if kind == "sd3":
        return diffusers.StableDiffusion3Pipeline(
            transformer=model,
            scheduler=None,
            vae=None,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            text_encoder_3=None,
            tokenizer_3=None,
        )
    if kind == "sdxl":
        return diffusers.StableDiffusionXLPipeline(
            vae=None,
            text_encoder=None,
            text_encoder_2=None,
            tokenizer=None,
            tokenizer_2=None,
            unet=model,
            scheduler=None,
        )
    if kind == "wan":
        return diffusers.WanPipeline(
            tokenizer=None, text_encoder=None, transformer=model, vae=None, scheduler=None
        )
    raise ValueError(kind)


def run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out[0] if isinstance(out, (tuple, list)) else out


# -- targets -------------------------------------------------------------------------------------

#: attention / MLP linears of each tiny model (peft ``target_modules`` suffixes)
ATTN_TARGETS = {
    "flux": [
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
        "ff.net.0.proj",
        "ff.net.2",
        "ff_context.net.0.proj",
        "ff_context.net.2",
        "proj_mlp",
        "single_transformer_blocks.0.proj_out",
    ],
    "sd3": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"],
    "sdxl": ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"],
    "wan": ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"],
}
#: SDXL convolutions and embedders (kohya "LoCon" / conv_dim LoRAs): resnet convs, time_emb_proj,
#: the samplers, conv_in/out and the time / added-condition embedders
SDXL_CONV_TARGETS = [
    "conv1",
    "conv2",
    "time_emb_proj",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
    "^conv_in",
    "^conv_out",
    "^time_embedding.linear_1",
    "^time_embedding.linear_2",
    "^add_embedding.linear_1",
    "^add_embedding.linear_2",
]
#: LoRA strength per tiny model: the output with the LoRA is 11-26 dB from the output without (measured
#: with the zoo's weights), well below each model's FP8 floor, so that following the LoRA shows
SCALE = {"flux": 0.3, "sd3": 1.2, "sdxl": 1.0, "wan": 0.3}

#: Flux's normalisation (AdaLN modulation), embedder and output linears: what an "all linear" LoRA
#: (ai-toolkit, SimpleTuner's "all+ffs+embedder", kohya's train_blocks=all + img_in/final_layer) also trains
FLUX_EXTRA_TARGETS = [
    "x_embedder",
    "context_embedder",
    "transformer_blocks.0.norm1.linear",
    "transformer_blocks.0.norm1_context.linear",
    "single_transformer_blocks.0.norm.linear",
    "norm_out.linear",
    "^proj_out",
    "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.timestep_embedder.linear_2",
    "time_text_embed.text_embedder.linear_1",
]


def _target_regex(targets: list[str]) -> str:
    """One regex for peft's ``target_modules`` (full-match on the module path) from suffixes, where
    a leading ``^`` anchors at the model root."""
    parts = [re.escape(t[1:]) if t.startswith("^") else r"(.*\.)?" + re.escape(t) for t in targets]
    return "^(" + "|".join(parts) + ")$"


# -- (i) diffusers / PEFT layout ---------------------------------------------------------------------


def add_random_lora(
    model,
    targets: list[str],
    rank: int = 4,
    alpha: float | None = None,
    adapter_name: str = "lora",
    seed: int = 0,
    scale: float = 0.3,
    use_dora: bool = False,
    lora_bias: bool = False,
) -> str:
    """Inject a LoRA into ``model`` with ``model.add_adapter(LoraConfig(...))`` and give BOTH matrices
    random values (``add_adapter`` zero-initialises ``lora_B``, which would make the adapter a no-op):
    ``lora_A ~ N(0, 1/in)``, ``lora_B ~ N(0, scale^2/r)`` so the delta is O(scale) relative to the input.
    Returns the adapter name. The model must still have its weights (unconverted)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

    cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=_target_regex(targets),
        init_lora_weights=True,
        use_dora=use_dora,
        lora_bias=lora_bias,
    )
    model.add_adapter(cfg, adapter_name=adapter_name)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in sorted(model.named_modules()):
            if isinstance(m, BaseTunerLayer) and adapter_name in m.lora_A:
                a, b = m.lora_A[adapter_name].weight, m.lora_B[adapter_name].weight
                a.copy_(torch.randn(a.shape, generator=g) / a[0].numel() ** 0.5)
                b.copy_(torch.randn(b.shape, generator=g) * scale / rank**0.5)
                if lora_bias and m.lora_B[adapter_name].bias is not None:
                    m.lora_B[adapter_name].bias.copy_(torch.randn(b.shape[0], generator=g) * 0.05)
    return adapter_name


def save_peft_lora(model, directory: str | os.PathLike, adapter_name: str = "lora") -> Path:
    """Write ``model``'s adapter with ``model.save_lora_adapter`` (layout (i), no prefix); returns the file."""
    model.save_lora_adapter(str(directory), adapter_name=adapter_name)
    return Path(directory, WEIGHT_NAME)


def save_pipeline_lora(kind: str, model, directory: str | os.PathLike, adapter_name: str = "lora") -> Path:
    """Write ``model``'s adapter as the pipeline's ``save_lora_weights`` does (keys and metadata
    prefixed ``transformer.`` / ``unet.``); returns the file."""
    import diffusers
    from peft.utils import get_peft_model_state_dict

    layers = get_peft_model_state_dict(model, adapter_name=adapter_name)
    meta = model.peft_config[adapter_name].to_dict()
    meta = {k: (list(v) if isinstance(v, set) else v) for k, v in meta.items()}
    cls = {
        "flux": diffusers.FluxPipeline,
        "sd3": diffusers.StableDiffusion3Pipeline,
        "sdxl": diffusers.StableDiffusionXLPipeline,
        "wan": diffusers.WanPipeline,
    }[kind]
    if kind == "sdxl":
        cls.save_lora_weights(str(directory), unet_lora_layers=layers, unet_lora_adapter_metadata=meta)
    else:
        cls.save_lora_weights(
            str(directory), transformer_lora_layers=layers, transformer_lora_adapter_metadata=meta
        )
    return Path(directory, WEIGHT_NAME)


def make_lora_file(
    kind: str,
    targets: list[str],
    directory: str | os.PathLike,
    *,
    layout: str = "peft",
    rank: int = 4,
    alpha: float | None = None,
    seed: int = 0,
    scale: float = 0.3,
    model_seed: int = 0,
    **lora_kwargs,
) -> Path:
    """Build tiny ``kind``'s model (seed ``model_seed``), add a random LoRA, save it in ``layout``
    ("peft": save_lora_adapter; "pipeline": save_lora_weights); the model is thrown away."""
    model, _ = tiny_model(kind, seed=model_seed)
    add_random_lora(model, targets, rank=rank, alpha=alpha, seed=seed, scale=scale, **lora_kwargs)
    if layout == "peft":
        return save_peft_lora(model, directory)
    return save_pipeline_lora(kind, model, directory)


def read_lora(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, safetensors metadata)`` of a LoRA file (or the standard file in a directory)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHT_NAME
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


def peft_delta_weights(
    sd: dict[str, torch.Tensor], meta: dict[str, str] | None = None, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """``{module path: B @ A * alpha/r}`` (float32) from a layout-(i) state dict; alpha from the
    ``lora_adapter_metadata`` (``lora_alpha``, ``alpha_pattern``), else alpha = r."""
    cfg = json.loads(meta["lora_adapter_metadata"]) if meta and "lora_adapter_metadata" in meta else {}
    if prefix and cfg:
        cfg = {k.removeprefix(prefix): v for k, v in cfg.items()}
    out = {}
    for k, a in sd.items():
        if not k.endswith(".lora_A.weight") or not k.startswith(prefix):
            continue
        mod = k[len(prefix) : -len(".lora_A.weight")]
        b = sd[f"{prefix}{mod}.lora_B.weight"].float()
        r = a.shape[0]
        alpha = cfg.get("lora_alpha", r)
        for pat, v in (cfg.get("alpha_pattern") or {}).items():
            if re.fullmatch(rf"(.*\.)?({pat})", mod):
                alpha = v
        out[mod] = (b.flatten(1) @ a.float().flatten(1)).reshape(b.shape[0], *a.shape[1:]) * (alpha / r)
    return out


# -- (ii) kohya layouts ------------------------------------------------------------------------------


def _kohya_pair(
    prefix: str, delta_a: torch.Tensor, delta_b: torch.Tensor, alpha: float, dtype
) -> dict[str, torch.Tensor]:
    """kohya keys for a module with ``lora_A``/``lora_B`` (alpha = rank convention) re-expressed
    with ``alpha``: up * down * alpha/r == B @ A."""
    r = delta_a.shape[0]
    s = (r / alpha) ** 0.5  # split the compensation between the two matrices
    return {
        f"{prefix}.lora_down.weight": (delta_a.float() * s).to(dtype).contiguous(),
        f"{prefix}.lora_up.weight": (delta_b.float() * s).to(dtype).contiguous(),
        f"{prefix}.alpha": torch.tensor(float(alpha)),
    }


def sdxl_diffusers_to_sgm(path: str, layers_per_block: int) -> str:
    """A diffusers UNet2DConditionModel module path -> the sgm (LDM) path kohya uses for SDXL, such that
    diffusers' ``_maybe_map_sgm_blocks_to_diffusers`` + ``_convert_non_diffusers_lora_to_diffusers``
    map it back. Covers down/mid/up blocks' resnets, attentions (transformer blocks, proj_in/out),
    samplers, conv_in/out, time_embedding and add_embedding."""
    L = layers_per_block
    p = path
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", p)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"input_blocks.{1 + b * (L + 1) + j}.{0 if kind == 'resnets' else 1}.{_sgm_inner(rest)}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv$", p)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (L + 1)}.0.op"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", p)
    if m:
        idx = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}[(m[1], int(m[2]))]
        return f"middle_block.{idx}.{_sgm_inner(m[3])}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", p)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"output_blocks.{b * (L + 1) + j}.{0 if kind == 'resnets' else 1}.{_sgm_inner(rest)}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv$", p)
    if m:
        return f"output_blocks.{int(m[1]) * (L + 1) + L}.2.conv"
    fixed = {
        "conv_in": "input_blocks.0.0",
        "conv_out": "out.2",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
    }
    if p in fixed:
        return fixed[p]
    raise ValueError(f"no sgm path known for {p}")


def _sgm_inner(rest: str) -> str:
    rest = rest.replace("conv1", "in_layers.2").replace("conv2", "out_layers.3")
    rest = rest.replace("time_emb_proj", "emb_layers.1").replace("conv_shortcut", "skip_connection")
    return rest


def kohya_sdxl_state_dict(
    peft_sd: dict[str, torch.Tensor],
    layers_per_block: int,
    alpha=None,
    meta: dict[str, str] | None = None,
    dtype=BF16,
) -> dict[str, torch.Tensor]:
    """A kohya SDXL LoRA (``lora_unet_<sgm path>.lora_down/up.weight`` + ``.alpha``) with the same
    deltas as the layout-(i) state dict ``peft_sd`` (keys without prefix). ``alpha``: the alpha
    stored for every module, or a callable ``alpha(module_path, rank)`` (default: the rank; the
    matrices absorb the difference either way). Keep one alpha
    for all modules: diffusers' kohya path builds ``alpha_pattern`` keys that do not match PEFT's
    module names when alphas differ (see REPORT.md)."""
    deltas_alpha = _alpha_of(meta)
    out = {}
    for k, a in peft_sd.items():
        if not k.endswith(".lora_A.weight"):
            continue
        mod = k[: -len(".lora_A.weight")]
        b = peft_sd[f"{mod}.lora_B.weight"]
        r = a.shape[0]
        scale = deltas_alpha(mod, r) / r  # fold the source's alpha/r into B
        name = "lora_unet_" + sdxl_diffusers_to_sgm(mod, layers_per_block).replace(".", "_")
        al = alpha(mod, r) if callable(alpha) else (alpha if alpha is not None else r)
        out.update(_kohya_pair(name, a, b.float() * scale, al, dtype))
    return out


def _alpha_of(meta):
    cfg = json.loads(meta["lora_adapter_metadata"]) if meta and "lora_adapter_metadata" in meta else {}

    def alpha(mod, r):
        a = cfg.get("lora_alpha", r)
        for pat, v in (cfg.get("alpha_pattern") or {}).items():
            if re.fullmatch(rf"(.*\.)?({pat})", mod):
                a = v
        return a

    return alpha


#: diffusers Flux module (per block) -> BFL name, for modules kohya stores one to one
_FLUX_DOUBLE = {
    "attn.to_out.0": "img_attn_proj",
    "ff.net.0.proj": "img_mlp_0",
    "ff.net.2": "img_mlp_2",
    "norm1.linear": "img_mod_lin",
    "attn.to_add_out": "txt_attn_proj",
    "ff_context.net.0.proj": "txt_mlp_0",
    "ff_context.net.2": "txt_mlp_2",
    "norm1_context.linear": "txt_mod_lin",
}
_FLUX_SINGLE = {"proj_out": "linear2", "norm.linear": "modulation_lin"}
_FLUX_GLOBAL = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in_in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in_out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in_in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in_out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in_in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in_out_layer",
    "proj_out": "final_layer_linear",
    "norm_out.linear": "final_layer_adaLN_modulation_1",
}


def kohya_flux_state_dict(
    peft_sd: dict[str, torch.Tensor],
    alpha: float | None = None,
    meta: dict[str, str] | None = None,
    dtype=BF16,
    include_global: bool = False,
) -> dict[str, torch.Tensor]:
    """A kohya (sd-scripts) Flux LoRA with the deltas of layout-(i) ``peft_sd`` (no prefix), for the
    modules kohya names: per double block ``img/txt_attn_qkv`` (q/k/v fused: ``lora_down`` shared,
    ``lora_up`` = [B_q; B_k; B_v] after putting the three on one ``lora_A`` by stacking ranks),
    ``img/txt_attn_proj``, ``img/txt_mlp_0/2``, ``img/txt_mod_lin``; per single block ``linear2``
    (proj_out) and ``modulation_lin`` (norm.linear). NOT ``single_blocks_N_linear1`` (q/k/v/proj_mlp
    fused): diffusers splits it with Flux-dev's hard-coded widths [3072]*3 + [12288] and fails with an
    AssertionError on any other width. ``include_global`` adds img_in / txt_in / time_in / vector_in /
    final_layer keys: diffusers converts them WITHOUT the ``transformer.`` prefix and
    ``FluxPipeline.load_lora_weights`` then drops them silently (see REPORT.md), so they only test that path."""
    alpha_of = _alpha_of(meta)
    mods = {k[: -len(".lora_A.weight")] for k in peft_sd if k.endswith(".lora_A.weight")}

    def ab(mod):
        a = peft_sd[f"{mod}.lora_A.weight"].float()
        b = peft_sd[f"{mod}.lora_B.weight"].float() * (alpha_of(mod, a.shape[0]) / a.shape[0])
        return a, b

    out = {}
    for mod in sorted(mods):
        m = re.match(r"transformer_blocks\.(\d+)\.(.*)", mod)
        if m and m[2] in _FLUX_DOUBLE:
            a, b = ab(mod)
            out.update(
                _kohya_pair(
                    f"lora_unet_double_blocks_{m[1]}_{_FLUX_DOUBLE[m[2]]}", a, b, alpha or a.shape[0], dtype
                )
            )
            continue
        m = re.match(r"single_transformer_blocks\.(\d+)\.(.*)", mod)
        if m and m[2] in _FLUX_SINGLE:
            a, b = ab(mod)
            out.update(
                _kohya_pair(
                    f"lora_unet_single_blocks_{m[1]}_{_FLUX_SINGLE[m[2]]}", a, b, alpha or a.shape[0], dtype
                )
            )
            continue
        if include_global and mod in _FLUX_GLOBAL:
            a, b = ab(mod)
            if mod == "norm_out.linear":  # BFL's final adaLN is (shift, scale), diffusers' (scale, shift)
                b = torch.cat(b.chunk(2, 0)[::-1], 0)
            out.update(_kohya_pair(f"lora_unet_{_FLUX_GLOBAL[mod]}", a, b, alpha or a.shape[0], dtype))
    # fused q/k/v: one lora_down of rank 3r (A_q; A_k; A_v stacked), lora_up block-diagonal
    blocks = sorted({int(x.split(".")[1]) for x in mods if x.startswith("transformer_blocks.")})
    for i in blocks:
        for side, names in (
            ("img", ("attn.to_q", "attn.to_k", "attn.to_v")),
            ("txt", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
        ):
            full = [f"transformer_blocks.{i}.{n}" for n in names]
            if not all(f in mods for f in full):
                continue
            pairs = [ab(f) for f in full]
            down = torch.cat([a for a, _ in pairs], 0)  # [3r, D]
            r = pairs[0][0].shape[0]
            up = torch.zeros(sum(b.shape[0] for _, b in pairs), 3 * r)
            row = 0
            for j, (_, b) in enumerate(pairs):
                up[row : row + b.shape[0], j * r : (j + 1) * r] = b
                row += b.shape[0]
            out.update(
                _kohya_pair(f"lora_unet_double_blocks_{i}_{side}_attn_qkv", down, up, alpha or 3 * r, dtype)
            )
    return out


def comfy_flux_state_dict(kohya_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ComfyUI spelling of a kohya Flux LoRA: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight``
    (diffusers maps ``diffusion_model.`` back to ``lora_unet_`` and dots to underscores)."""
    out = {}
    for k, v in kohya_sd.items():
        name, _, tail = k.partition(".")
        body = name.removeprefix("lora_unet_")
        body = re.sub(r"^(double_blocks|single_blocks)_(\d+)_", r"\1.\2.", body)
        body = re.sub(r"^(double_blocks\.\d+\.)(img|txt)_(attn|mlp|mod)_", r"\1\2_\3.", body)
        out[f"diffusion_model.{body}.{tail}"] = v
    return out


def save_safetensors(
    sd: dict[str, torch.Tensor],
    directory: str | os.PathLike,
    name: str = WEIGHT_NAME,
    metadata: dict[str, str] | None = None,
) -> Path:
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    path = Path(directory, name)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata or {"format": "pt"})
    return path


def load_converted(
    kind: str, model, path_or_sd, adapter_name: str = "lora", weight_name: str | None = None, **kw
):
    """Load any layout the pipeline accepts (kohya, ComfyUI, diffusers) into ``model`` WITHOUT building a
    pipeline: the pipeline class's ``lora_state_dict`` classmethod converts (kohya -> diffusers keys,
    alphas), then ``model.load_lora_adapter`` with the component prefix loads. What
    ``pipe.load_lora_weights`` does for the denoiser, minus Flux's shape expansion and norm-key handling."""
    import diffusers

    if kind == "sdxl":
        sd, alphas, meta = diffusers.StableDiffusionXLPipeline.lora_state_dict(
            path_or_sd, unet_config=model.config, weight_name=weight_name, return_lora_metadata=True
        )
        return model.load_lora_adapter(
            sd, prefix="unet", network_alphas=alphas, metadata=meta, adapter_name=adapter_name, **kw
        )
    if kind == "flux":
        sd, alphas, meta = diffusers.FluxPipeline.lora_state_dict(
            path_or_sd, return_alphas=True, weight_name=weight_name, return_lora_metadata=True
        )
        return model.load_lora_adapter(
            sd,
            prefix="transformer",
            network_alphas=alphas or None,
            metadata=meta,
            adapter_name=adapter_name,
            **kw,
        )
    cls = {"sd3": diffusers.StableDiffusion3Pipeline, "wan": diffusers.WanPipeline}[kind]
    sd, meta = cls.lora_state_dict(path_or_sd, weight_name=weight_name, return_lora_metadata=True)
    return model.load_lora_adapter(sd, prefix="transformer", metadata=meta, adapter_name=adapter_name, **kw)


# -- checks --------------------------------------------------------------------------------------


def apply_deltas_by_hand(model, deltas: dict[str, torch.Tensor]) -> None:
    """``W += delta`` for each module path (an unconverted model without adapters): the reference
    output a correctly loaded LoRA must reproduce."""
    with torch.no_grad():
        for mod, d in deltas.items():
            w = model.get_submodule(mod).weight
            w.copy_((w.float() + d.reshape(w.shape)).to(w.dtype))


def adapted_modules(model) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}
