"""Small configurations of diffusers denoiser classes, part A.

Every entry keeps the block kinds of the published model (double/single stream blocks, refiners,
cross-attention, AdaLN, MoE, ...) at 1-2 blocks each, with hidden sizes of 64-128, text widths of
32-64, and minimal latents (8x8 to 16x16, 1-3 latent frames, 8 text tokens). Inputs use the keyword
names and layouts that the matching diffusers pipeline passes at inference time.

notes keys: "family"; "output" where `model(**inputs, return_dict=False)[0]` is not simply the
prediction; "graph_break" / "fp8pass_error" where torch.compile(fullgraph=True) fails (diffusers
file:line); "build" where the model only runs once cast the way `from_pretrained(torch_dtype=...)`
casts it (bf16 + `_keep_in_fp32_modules` in fp32), which `fp8pass.zoo.build` does not do.
Classes that cannot run here are listed in UNSUPPORTED with the reason.
"""

from __future__ import annotations

import torch

from ..zoo import ZooModel, seeded_randn

# ----------------------------------------------------------------------------------------------
# helpers


def _full(shape, value, device, dtype=torch.float32):
    return torch.full(shape, value, device=device, dtype=dtype)


def _mask(batch, length, valid, device, dtype=torch.long):
    """A padding mask with the first ``valid`` of ``length`` tokens on."""
    m = torch.zeros(batch, length, device=device, dtype=dtype)
    m[:, :valid] = 1
    return m


def _flux_ids(h, w, device, t=0.0):
    """Flux-style (t, h, w) position ids of an ``h x w`` token grid, shape (h*w, 3)."""
    ids = torch.zeros(h, w, 3, device=device)
    ids[..., 0] = t
    ids[..., 1] = torch.arange(h, device=device)[:, None]
    ids[..., 2] = torch.arange(w, device=device)[None, :]
    return ids.reshape(h * w, 3)


def _pack(x):
    """(B, C, H, W) latents -> (B, H/2 * W/2, 4C) Flux packing."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


# ----------------------------------------------------------------------------------------------
# AceStepTransformer1DModel (ACE-Step 1.5): alternating sliding-window / full self-attention with
# GQA + cross-attention, dual timestep (t, t - r) AdaLN, Conv1d patchify, ConvTranspose1d unpatchify.


def _ace_step_inputs(g, device, dtype):
    b, t = 1, 32  # 32 latent frames -> 16 tokens after patch_size=2 (> sliding_window=8)
    return {
        "hidden_states": seeded_randn((b, t, 64), g, device, dtype),
        "timestep": _full((b,), 0.7, device, dtype),
        "timestep_r": _full((b,), 0.7, device, dtype),  # the pipeline passes r == t
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "context_latents": seeded_randn((b, t, 128), g, device, dtype),  # src latents + chunk mask
    }


# ----------------------------------------------------------------------------------------------
# AllegroTransformer3DModel: PixArt-style blocks (self-attn with 3D RoPE, cross-attn, AdaLN-single).


def _allegro_inputs(g, device, dtype):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro

    b, f, h, w, p, head_dim = 1, 2, 8, 8, 2, 48
    gh, gw = h // p, w // p
    freqs_t, freqs_h, freqs_w, grid_t, grid_h, grid_w = get_3d_rotary_pos_embed_allegro(
        embed_dim=head_dim,
        crops_coords=((0, 0), (gh, gw)),
        grid_size=(gh, gw),
        temporal_size=f,
        interpolation_scale=(2.2, 2.0, 2.0),
        device=device,
    )
    pos = torch.cartesian_prod(grid_t.long(), grid_h.long(), grid_w.long())
    pos = pos.reshape(-1, 3).transpose(0, 1).reshape(3, 1, -1).contiguous()
    return {
        "hidden_states": seeded_randn((b, 4, f, h, w), g, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask": _mask(b, 8, 6, device),
        "timestep": torch.tensor([500], device=device).expand(b),
        "image_rotary_emb": ((freqs_t, freqs_h, freqs_w), tuple(pos)),
    }


# ----------------------------------------------------------------------------------------------
# AnyFlow (Wan-based flow-map model with dual timestep t / r)


def _anyflow_inputs(g, device, dtype):
    b, f = 1, 2
    return {
        "hidden_states": seeded_randn((b, f, 16, 8, 8), g, device, dtype),  # (B, F, C, H, W)
        "timestep": _full((b, f), 750.0, device, dtype),
        "r_timestep": _full((b, f), 500.0, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
    }


_ANYFLOW = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=32,
    in_channels=16,
    out_channels=16,
    text_dim=64,
    freq_dim=256,
    ffn_dim=128,
    num_layers=2,
    cross_attn_norm=True,
    rope_max_seq_len=1024,
    gate_value=0.25,
    deltatime_type="r",
)


def _anyflow_far_inputs(g, device, dtype):
    # The pipeline's denoising step for the 2nd chunk of chunk_partition [1, 1]: the first chunk's
    # keys/values are read from the KV cache (allocated as the pipeline does, then filled).
    b, heads, head_dim, layers, h, w = 1, 2, 32, 2, 8, 8
    chunk_partition = [1, 1]
    full_tok, comp_tok = (h // 2) * (w // 2), (h // 4) * (w // 4)
    full_limit = 3
    kv_cache = {
        i: {
            "full_cache": seeded_randn(
                (2, b, heads, full_limit * max(chunk_partition) * full_tok, head_dim), g, device, dtype
            ),
            "compressed_cache": seeded_randn(
                (
                    2,
                    b,
                    heads,
                    (len(chunk_partition) - full_limit + 1) * max(chunk_partition) * comp_tok,
                    head_dim,
                ),
                g,
                device,
                dtype,
            ),
        }
        for i in range(layers)
    }
    return {
        "hidden_states": seeded_randn((b, 1, 16, h, w), g, device, dtype),
        "timestep": _full((b, 1), 750.0, device, dtype),
        "r_timestep": _full((b, 1), 500.0, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "chunk_partition": chunk_partition,
        "kv_cache": kv_cache,
        "kv_cache_flag": {"num_cached_chunks": 1, "is_cache_step": False},
    }


# ----------------------------------------------------------------------------------------------
# AudioLDM2UNet2DConditionModel: SD-style UNet whose transformer blocks have TWO cross-attentions
# (GPT-2 generated embeddings, then T5/CLAP embeddings with their own mask).


def _audioldm2_inputs(g, device, dtype):
    b = 2  # classifier-free guidance
    return {
        "sample": seeded_randn((b, 8, 16, 16), g, device, dtype),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": seeded_randn((b, 8, 32), g, device, dtype),
        "encoder_hidden_states_1": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask_1": _mask(b, 8, 6, device),
    }


# ----------------------------------------------------------------------------------------------
# AuraFlowTransformer2DModel: MMDiT joint blocks + single DiT blocks, register tokens.


def _auraflow_inputs(g, device, dtype):
    b = 2
    return {
        "hidden_states": seeded_randn((b, 4, 16, 16), g, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "timestep": _full((b,), 0.75, device, dtype),  # the pipeline passes t / 1000
    }


# ----------------------------------------------------------------------------------------------
# Bria family


def _bria_fibo2_inputs(g, device, dtype, edit=False):
    b = 1  # the pipeline runs the negative prompt as a second pass
    out = {
        "hidden_states": seeded_randn((b, 32, 16, 16), g, device, dtype),
        "timestep": _full((b,), 0.75, device, dtype),  # t / 1000
        # (batch, 1 + len(injection_layer_ids), text_len, cap_feat_dim): perceiver bundle, then one per injection block
        "encoder_hidden_states": seeded_randn((b, 2, 8, 64), g, device, dtype),
        "encoder_attention_mask": None,  # the pipeline drops an all-ones mask
    }
    if edit:
        out["context_latents"] = [seeded_randn((b, 32, 16, 16), g, device, dtype)]
    return out


def _bria_fibo2_edit_inputs(g, device, dtype):
    return _bria_fibo2_inputs(g, device, dtype, edit=True)


_BRIA_FIBO2 = dict(
    in_channels=32,
    patch_size=2,
    dim=64,
    n_layers=2,
    n_refiner_layers=1,
    n_heads=2,
    cap_feat_dim=64,
    injection_layer_ids=(1,),  # layer 0: self-attention only, layer 1: + cross-attention to its text bundle
    perceiver_num_layers=1,
    min_num_gist_tokens=8,
    max_num_gist_tokens=16,
    gist_step=8,
    gist_min_text_len=8,
    gist_max_text_len=32,
    rope_theta=256.0,
    axes_dims=(8, 12, 12),
    axes_lens=(64, 32, 32),
)


def _bria_fibo_inputs(g, device, dtype):
    b, L, n_blocks = 2, 8, 3  # CFG batch; one text-encoder layer per block (1 double + 2 single)
    mask = torch.ones(b, L + 64, dtype=torch.bool, device=device)
    mask[0, 5:L] = False  # negative prompt padded
    return {
        "hidden_states": seeded_randn(
            (b, 64, 48), g, device, dtype
        ),  # 8x8 latents of 48 channels, no patching
        "encoder_hidden_states": seeded_randn((b, L, 64), g, device, dtype),
        "text_encoder_layers": [seeded_randn((b, L, 32), g, device, dtype) for _ in range(n_blocks)],
        "timestep": _full((b,), 750.0, device, dtype),
        "img_ids": _flux_ids(8, 8, device),
        "txt_ids": torch.zeros(L, 3, device=device),
        "joint_attention_kwargs": {"attention_mask": mask[:, None, None, :]},
    }


def _bria_inputs(g, device, dtype):
    b, L = 2, 8  # CFG batch
    return {
        "hidden_states": _pack(seeded_randn((b, 16, 16, 16), g, device, dtype)),
        "encoder_hidden_states": seeded_randn((b, L, 64), g, device, dtype),
        "timestep": _full((b,), 750.0, device, dtype),
        "img_ids": _flux_ids(8, 8, device),
        "txt_ids": torch.zeros(L, 3, device=device),
    }


# ----------------------------------------------------------------------------------------------
# ChromaTransformer2DModel: Flux-schnell double + single blocks, modulation from a distilled
# approximator MLP instead of per-block AdaLN linears, attention mask over padded text.


def _chroma_inputs(g, device, dtype):
    b, L = 1, 8
    mask = torch.ones(b, L + 64, dtype=torch.bool, device=device)
    mask[:, 6:L] = False
    return {
        "hidden_states": _pack(seeded_randn((b, 16, 16, 16), g, device, dtype)),
        "encoder_hidden_states": seeded_randn((b, L, 64), g, device, dtype),
        "timestep": _full((b,), 0.75, device, dtype),  # t / 1000
        "img_ids": _flux_ids(8, 8, device),
        "txt_ids": torch.zeros(L, 3, device=device),
        "attention_mask": mask,
    }


# ----------------------------------------------------------------------------------------------
# ChronoEditTransformer3DModel: Wan2.1-I2V-14B blocks (self-attn, cross-attn to text + CLIP image
# tokens via added K/V), 2 latent frames (input image, edited image) with temporal-skip RoPE.


def _chronoedit_inputs(g, device, dtype):
    b = 1
    return {
        "hidden_states": seeded_randn((b, 36, 2, 8, 8), g, device, dtype),  # 16 noise + 4 mask + 16 condition
        "timestep": torch.tensor([750], device=device).expand(b),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_hidden_states_image": seeded_randn((b, 8, 64), g, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# CogVideoX (expert-AdaLN blocks on concatenated text+video tokens, 3D RoPE from the pipeline)


def _cogvideox_rope(head_dim, frames, gh, gw, sample_hw, patch_size_t, device):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    base_h, base_w = sample_hw
    if patch_size_t is None:
        crops = get_resize_crop_region_for_grid((gh, gw), base_w, base_h)
        return get_3d_rotary_pos_embed(
            embed_dim=head_dim, crops_coords=crops, grid_size=(gh, gw), temporal_size=frames, device=device
        )
    return get_3d_rotary_pos_embed(
        embed_dim=head_dim,
        crops_coords=None,
        grid_size=(gh, gw),
        temporal_size=(frames + patch_size_t - 1) // patch_size_t,
        grid_type="slice",
        max_size=(base_h, base_w),
        device=device,
    )


def _cogvideox_inputs(g, device, dtype):
    b, f = 2, 2  # CFG batch, 2 latent frames
    return {
        "hidden_states": seeded_randn((b, f, 16, 8, 8), g, device, dtype),  # (B, F, C, H, W)
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "timestep": torch.tensor([750], device=device).expand(b),
        "image_rotary_emb": _cogvideox_rope(32, f, 4, 4, (4, 4), None, device),
    }


def _cogvideox15_i2v_inputs(g, device, dtype):
    b, f = 2, 2
    return {
        "hidden_states": seeded_randn((b, f, 32, 8, 8), g, device, dtype),  # noise latents + image latents
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "timestep": torch.tensor([750], device=device).expand(b),
        "ofs": torch.full((1,), 2.0, device=device, dtype=dtype),
        "image_rotary_emb": _cogvideox_rope(32, f, 4, 4, (4, 4), 2, device),
    }


# ----------------------------------------------------------------------------------------------
# CogView3Plus / CogView4


def _cogview_inputs(batch):
    def make(g, device, dtype):
        size = torch.tensor([[128.0, 128.0]] * batch, device=device, dtype=dtype)
        return {
            "hidden_states": seeded_randn((batch, 16, 16, 16), g, device, dtype),
            "encoder_hidden_states": seeded_randn((batch, 8, 64), g, device, dtype),
            "timestep": torch.tensor([750], device=device).expand(batch),
            "original_size": size,
            "target_size": size.clone(),
            "crop_coords": torch.zeros(batch, 2, device=device, dtype=dtype),
        }

    return make


# ----------------------------------------------------------------------------------------------
# ConsisIDTransformer3DModel: CogVideoX-5b-I2V blocks + a local facial extractor (perceiver) and
# perceiver cross-attention into the video tokens every `cross_attn_interval` blocks.


def _consisid_inputs(g, device, dtype):
    b, f = 2, 2  # CFG batch; face features stay batch 1 as in the pipeline
    return {
        "hidden_states": seeded_randn((b, f, 32, 8, 8), g, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "timestep": torch.tensor([750], device=device).expand(b),
        "image_rotary_emb": _cogvideox_rope(48, f, 4, 4, (4, 4), None, device),
        "id_vit_hidden": [seeded_randn((1, 8, 64), g, device, dtype) for _ in range(2)],
        "id_cond": seeded_randn((1, 64), g, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# ControlNets (UNet encoder copies): outputs are (down-block residuals tuple, mid-block residual)


def _controlnet_inputs(sdxl):
    def make(g, device, dtype):
        b = 2
        out = {
            "sample": seeded_randn((b, 4, 16, 16), g, device, dtype),
            "timestep": torch.tensor(500, device=device),
            "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
            "controlnet_cond": seeded_randn((b, 3, 128, 128), g, device, dtype),  # pixel-space control image
            "conditioning_scale": 1.0,
        }
        if sdxl:
            out["added_cond_kwargs"] = {
                "text_embeds": seeded_randn((b, 32), g, device, dtype),
                "time_ids": torch.tensor(
                    [[128.0, 128.0, 0.0, 0.0, 128.0, 128.0]] * b, device=device, dtype=dtype
                ),
            }
        return out

    return make


def _controlnet_union_inputs(g, device, dtype):
    out = _controlnet_inputs(True)(g, device, dtype)
    b = out["sample"].shape[0]
    control_modes = [1, 3]  # two control images at once (e.g. depth + canny)
    control_type = torch.zeros(b, 6, device=device, dtype=dtype)
    control_type[:, control_modes] = 1
    out["controlnet_cond"] = [out["controlnet_cond"], seeded_randn((b, 3, 128, 128), g, device, dtype)]
    out["control_type"] = control_type
    out["control_type_idx"] = control_modes
    return out


_CONTROLNET_SD15 = dict(
    in_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=8,
    conditioning_embedding_out_channels=(16, 32, 96, 256),
)

_CONTROLNET_SDXL = dict(
    in_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    transformer_layers_per_block=(1, 2),
    attention_head_dim=(2, 4),
    cross_attention_dim=64,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,
)


# ----------------------------------------------------------------------------------------------
# Cosmos3OmniTransformer: mixture-of-transformers (separate "und" text and "gen" vision weights in
# every layer, joint attention with causal text prefix), GQA, 3D mRoPE, packed (unbatched) tokens.


def _cosmos3_inputs(g, device, dtype):
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import (
        get_3d_mrope_ids_text_tokens,
        get_3d_mrope_ids_vae_tokens,
    )

    und_len, c, t, h, w, p = 8, 48, 2, 8, 8, 2
    text_ids, offset = get_3d_mrope_ids_text_tokens(und_len, 0, use_float_positions=True)
    gt, gh, gw = t, h // p, w // p
    n_vision = gt * gh * gw
    vision_ids, _ = get_3d_mrope_ids_vae_tokens(
        gt,
        gh,
        gw,
        offset + 15000,
        reset_spatial_indices=True,
        fps=24.0,
        base_fps=24.0,
        temporal_compression_factor=4,
    )
    vision_indexes = torch.arange(und_len, und_len + n_vision, device=device)
    return {
        "input_ids": torch.randint(0, 256, (und_len,), generator=g, device=g.device).to(device),
        "text_indexes": torch.arange(und_len, device=device),
        "position_ids": torch.cat([text_ids, vision_ids], dim=1).to(device),
        "und_len": und_len,
        "sequence_length": und_len + n_vision,
        "vision_tokens": [seeded_randn((1, c, t, h, w), g, device, dtype)],
        "vision_token_shapes": [(gt, gh, gw)],
        "vision_sequence_indexes": vision_indexes,
        "vision_mse_loss_indexes": vision_indexes,  # text-to-video: every frame is noisy
        "vision_timesteps": torch.full((n_vision,), 750.0, device=device),
        "vision_noisy_frame_indexes": [torch.arange(t, device=device)],
    }


def _cosmos3_action_inputs(g, device, dtype):
    """Image-conditioned video + action generation (Cosmos3 edge layout): vision frame 0 and action step 0 are
    clean conditions; actions are projected by per-embodiment-domain weights (DomainAwareLinear)."""
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import (
        get_3d_mrope_ids_text_tokens,
        get_3d_mrope_ids_vae_tokens,
    )

    und_len, c, t, h, w, p, action_len, action_dim = 8, 48, 2, 8, 8, 2, 8, 16
    text_ids, offset = get_3d_mrope_ids_text_tokens(und_len, 0, use_float_positions=True)
    start = offset + 15000
    gt, gh, gw = t, h // p, w // p
    n_vision, per_frame = gt * gh * gw, gh * gw
    vision_ids, _ = get_3d_mrope_ids_vae_tokens(gt, gh, gw, start, fps=24.0, temporal_compression_factor=4)
    action_ids, _ = get_3d_mrope_ids_vae_tokens(
        action_len,
        1,
        1,
        start,
        fps=24.0,
        temporal_compression_factor=1,
        base_temporal_compression_factor=4,
        start_frame_offset=1,
    )
    vision_idx = torch.arange(und_len, und_len + n_vision, device=device)
    action_idx = torch.arange(und_len + n_vision, und_len + n_vision + action_len, device=device)
    noisy_actions = torch.arange(1, action_len, device=device)
    return {
        "input_ids": torch.randint(0, 256, (und_len,), generator=g, device=g.device).to(device),
        "text_indexes": torch.arange(und_len, device=device),
        "position_ids": torch.cat([text_ids, vision_ids, action_ids], dim=1).to(device),
        "und_len": und_len,
        "sequence_length": und_len + n_vision + action_len,
        "vision_tokens": [seeded_randn((1, c, t, h, w), g, device, dtype)],
        "vision_token_shapes": [(gt, gh, gw)],
        "vision_sequence_indexes": vision_idx,
        "vision_mse_loss_indexes": vision_idx[per_frame:],  # frame 0 is the conditioning image
        "vision_timesteps": torch.full((n_vision - per_frame,), 750.0, device=device),
        "vision_noisy_frame_indexes": [torch.arange(1, t, device=device)],
        "action_tokens": [seeded_randn((action_len, action_dim), g, device, dtype)],
        "action_token_shapes": [(action_len, 1, 1)],
        "action_sequence_indexes": action_idx,
        "action_mse_loss_indexes": action_idx[noisy_actions],
        "action_timesteps": torch.full((action_len - 1,), 750.0, device=device),
        "action_noisy_frame_indexes": [noisy_actions],
        "action_domain_ids": [torch.tensor(3, device=device)],
    }


# ----------------------------------------------------------------------------------------------
# Cosmos (1.0 / 2.x) transformer: AdaLN-LoRA blocks with self-attn, cross-attn, MLP; 3D RoPE.


def _cosmos1_inputs(g, device, dtype):
    b = 1  # the pipeline runs the negative prompt as a second pass
    return {
        "hidden_states": seeded_randn((b, 16, 2, 8, 8), g, device, dtype),
        "timestep": _full((b,), 0.5, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "fps": 30,
    }


def _cosmos25_inputs(g, device, dtype):
    b, t = 1, 2
    cond_mask = torch.zeros(b, 1, t, 8, 8, device=device, dtype=dtype)
    cond_mask[:, :, 0] = 1  # first latent frame is the conditioning image (image2world)
    timestep = torch.full((b, 1, t, 1, 1), 0.6, device=device, dtype=dtype)
    timestep[:, :, 0] = 0.0
    return {
        "hidden_states": seeded_randn((b, 16, t, 8, 8), g, device, dtype),
        "condition_mask": cond_mask,
        "timestep": timestep,  # per-frame [B, 1, T, 1, 1]
        "encoder_hidden_states": seeded_randn((b, 8, 128), g, device, dtype),  # before crossattn_proj
    }


_COSMOS_BASE = dict(
    out_channels=16,
    num_attention_heads=2,
    attention_head_dim=32,
    num_layers=2,
    mlp_ratio=4.0,
    text_embed_dim=64,
    adaln_lora_dim=64,
    max_size=(16, 32, 32),
    patch_size=(1, 2, 2),
    concat_padding_mask=False,  # published True, but that path needs torchvision (not installed)
)


# ----------------------------------------------------------------------------------------------
# DiT (class-conditional, AdaLN-Zero, learned sigma)


def _dit_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((2, 4, 16, 16), g, device, dtype),
        "timestep": torch.tensor([500, 500], device=device),
        "class_labels": torch.tensor([207, 1000], device=device),  # 1000 = null class (CFG)
    }


# ----------------------------------------------------------------------------------------------
# DreamLite: SDXL-like UNet with depthwise-separable resnets, GQA + RMS qk-norm attention, blocks
# without self-attention, a "time" addition embedding and an RMS-normed text projection.


def _dreamlite_unet_inputs(g, device, dtype):
    b = 2  # CFG; the condition image is concatenated along the width (zeros for text-to-image)
    latents = seeded_randn((b, 4, 16, 16), g, device, dtype)
    return {
        "sample": torch.cat([latents, torch.zeros_like(latents)], dim=3),
        "timestep": _full((b,), 750.0, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask": _mask(b, 8, 6, device),
        "added_cond_kwargs": {"time_ids": torch.tensor([[128.0, 128.0]] * b, device=device, dtype=dtype)},
    }


def _dreamlite_transformer_inputs(g, device, dtype):
    b = 2
    return {
        "hidden_states": seeded_randn((b, 64, 8, 8), g, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask": _mask(b, 8, 6, device),
    }


# ----------------------------------------------------------------------------------------------
# EasyAnimate V5.1: MMDiT-style blocks (separate text / video norms and added K/V) with 3D RoPE.


def _easyanimate_inputs(g, device, dtype):
    b = 2
    return {
        "hidden_states": seeded_randn((b, 16, 2, 8, 8), g, device, dtype),
        "timestep": torch.tensor([750.0] * b, device=device, dtype=dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# ErnieImageTransformer2DModel: single-stream blocks with one shared AdaLN modulation, 3D RoPE,
# text padded per sample (text_lens -> attention mask).


def _ernie_image_inputs(g, device, dtype):
    b = 2  # CFG: [uncond, cond]
    return {
        "hidden_states": seeded_randn((b, 128, 8, 8), g, device, dtype),
        "timestep": _full((b,), 750.0, device, dtype),
        "text_bth": seeded_randn((b, 8, 64), g, device, dtype),
        "text_lens": torch.tensor([3, 8], device=device),
    }


# ----------------------------------------------------------------------------------------------
# Flux family


def _flux_schnell_inputs(g, device, dtype):
    b, L = 1, 8
    return {
        "hidden_states": _pack(seeded_randn((b, 16, 16, 16), g, device, dtype)),
        "encoder_hidden_states": seeded_randn((b, L, 64), g, device, dtype),
        "pooled_projections": seeded_randn((b, 32), g, device, dtype),
        "timestep": _full((b,), 0.75, device, dtype),  # t / 1000
        "img_ids": _flux_ids(8, 8, device),
        "txt_ids": torch.zeros(L, 3, device=device),
    }


def _flux_controlnet_union_inputs(g, device, dtype):
    b = 1
    out = _flux_schnell_inputs(g, device, dtype)
    out["controlnet_cond"] = _pack(
        seeded_randn((b, 16, 16, 16), g, device, dtype)
    )  # VAE-encoded control image
    out["controlnet_mode"] = torch.tensor([[2]], device=device).expand(b, 1)
    out["conditioning_scale"] = 1.0
    out["guidance"] = _full((b,), 3.5, device)
    return out


def _flux2_ids(h, w, t=0, device=None):
    ids = torch.cartesian_prod(torch.tensor([t]), torch.arange(h), torch.arange(w), torch.arange(1))
    return ids.to(device)


def _flux2_inputs(edit):
    def make(g, device, dtype):
        b, L = 1, 8
        latents = seeded_randn(
            (b, 64, 128), g, device, dtype
        )  # 16x16 latents of 32 ch, 2x2-patchified: 8x8 tokens
        img_ids = _flux2_ids(8, 8, 0, device)
        if edit:  # one reference image, appended as tokens with T = 10
            latents = torch.cat([latents, seeded_randn((b, 64, 128), g, device, dtype)], dim=1)
            img_ids = torch.cat([img_ids, _flux2_ids(8, 8, 10, device)], dim=0)
        txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(L)).to(
            device
        )
        out = {
            "hidden_states": latents,
            "timestep": _full((b,), 0.75, device, dtype),  # t / 1000
            "encoder_hidden_states": seeded_randn((b, L, 64), g, device, dtype),
            "txt_ids": txt_ids[None].expand(b, -1, -1),
            "img_ids": img_ids[None].expand(b, -1, -1),
        }
        if not edit:
            out["guidance"] = _full((b,), 4.0, device)
        return out

    return make


def _flux3_ids(h, w, l_coord=0, scale=0.5, device=None):
    ids = torch.cartesian_prod(
        torch.arange(1), torch.arange(h), torch.arange(w), torch.tensor([l_coord])
    ).float()
    ids[:, 1:3] *= scale
    return ids.to(device)


def _flux3_inputs(distilled_edit):
    def make(g, device, dtype):
        b, L = 1, 8
        out = {
            "hidden_states": seeded_randn((b, 64, 128), g, device, dtype),  # 8x8 packed latent tokens
            "encoder_hidden_states": seeded_randn((b, L, 64), g, device, dtype),
            "timestep": _full((b,), 0.75, device, dtype),  # t / 1000
            "img_ids": _flux3_ids(8, 8, device=device),
            "txt_ids": torch.cartesian_prod(
                torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(L)
            )
            .float()
            .to(device),
        }
        if distilled_edit:
            out["image_cond_hidden_states"] = seeded_randn((b, 64, 128), g, device, dtype)
            out["image_cond_ids"] = _flux3_ids(8, 8, l_coord=-1, device=device)
            out["target_timestep"] = _full((b,), 0.5, device, dtype)
        return out

    return make


_FLUX3 = dict(
    in_channels=128,
    cond_in_channels=128,
    num_layers=1,  # per-mode blocks (txt, image, image_cond)
    num_single_layers=2,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=64,
    timestep_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(8, 8, 8, 8),
    rope_theta=10000,
)

_FLUX2 = dict(
    patch_size=1,
    in_channels=128,
    num_layers=1,
    num_single_layers=2,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=64,
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(8, 8, 8, 8),
    rope_theta=2000,
)


# ----------------------------------------------------------------------------------------------
# GlmImageTransformer2DModel: CogView4-style blocks; autoregressive prior tokens (one per latent
# patch) are embedded and added to the image tokens; ByT5 glyph embeddings as text.


def _glm_image_inputs(g, device, dtype):
    from diffusers.models.transformers.transformer_glm_image import GlmImageKVCache

    b, n_tok = 1, 64  # 16x16 latents, patch 2
    return {
        "hidden_states": seeded_randn((b, 16, 16, 16), g, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "prior_token_id": torch.randint(0, 1024, (b, n_tok), generator=g, device=g.device).to(device),
        "prior_token_drop": torch.zeros(b, n_tok, dtype=torch.bool, device=device),
        "timestep": torch.tensor([749.0] * b, device=device),  # t - 1
        "target_size": torch.tensor([[128.0, 128.0]] * b, device=device, dtype=dtype),
        "crop_coords": torch.zeros(b, 2, device=device, dtype=dtype),
        "kv_caches": GlmImageKVCache(num_layers=2),  # text-to-image: no condition images, mode None
    }


# ----------------------------------------------------------------------------------------------
# HeliosTransformer3DModel: Wan-style blocks with multi-term memory (short / mid / long history
# latents patchified at 1x / 2x / 4x), guidance cross-attention.


def _helios_inputs(g, device, dtype):
    b, c, f, h, w = 1, 16, 2, 8, 8
    history_sizes = [16, 2, 1]  # long, mid, 1x (the pipeline's default)
    idx = torch.arange(0, sum([1, *history_sizes, f]))
    prefix, long_i, mid_i, one_i, cur_i = idx.split([1, *history_sizes, f])
    return {
        "hidden_states": seeded_randn((b, c, f, h, w), g, device, dtype),
        "timestep": torch.tensor([750.0] * b, device=device),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "indices_hidden_states": cur_i[None].to(device),
        "indices_latents_history_short": torch.cat([prefix, one_i])[None].to(device),
        "indices_latents_history_mid": mid_i[None].to(device),
        "indices_latents_history_long": long_i[None].to(device),
        "latents_history_short": seeded_randn(
            (b, c, 2, h, w), g, device, dtype
        ),  # zero prefix frame + 1x history
        "latents_history_mid": seeded_randn((b, c, 2, h, w), g, device, dtype),
        "latents_history_long": seeded_randn((b, c, 16, h, w), g, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# HiDreamImageTransformer2DModel: double- and single-stream blocks whose FFNs are MoE (routed top-k
# experts + shared expert); T5 + per-block Llama-3 hidden states as text.


def _hidream_inputs(g, device, dtype):
    b = 2
    return {
        "hidden_states": seeded_randn((b, 16, 16, 16), g, device, dtype),
        "timesteps": torch.tensor([750.0] * b, device=device),
        "encoder_hidden_states_t5": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_hidden_states_llama3": seeded_randn((2, b, 8, 64), g, device, dtype),  # stacked Llama layers
        "pooled_embeds": seeded_randn((b, 64), g, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# HunyuanDiT (CLIP + T5 text with padding embeddings, attention pooling, skip connections)


def _hunyuandit_inputs(g, device, dtype):
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

    b, head_dim = 2, 32
    grid = 16 // 2
    crops = get_resize_crop_region_for_grid((grid, grid), 512 // 8 // 2)
    rope = get_2d_rotary_pos_embed(head_dim, crops, (grid, grid), device=device, output_type="pt")
    return {
        "hidden_states": seeded_randn((b, 4, 16, 16), g, device, dtype),
        "timestep": _full((b,), 750.0, device, dtype),  # the pipeline casts t to the latents' dtype
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "text_embedding_mask": _mask(b, 8, 6, device),
        "encoder_hidden_states_t5": seeded_randn((b, 8, 48), g, device, dtype),
        "text_embedding_mask_t5": _mask(b, 8, 7, device),
        "image_meta_size": torch.tensor(
            [[1024.0, 1024.0, 128.0, 128.0, 0.0, 0.0]] * b, device=device, dtype=dtype
        ),
        "style": torch.zeros(b, dtype=torch.long, device=device),
        "image_rotary_emb": rope,
    }


def _hunyuandit_controlnet_inputs(g, device, dtype):
    out = _hunyuandit_inputs(g, device, dtype)
    out["controlnet_cond"] = seeded_randn((2, 4, 16, 16), g, device, dtype)  # VAE-encoded control image
    out["conditioning_scale"] = 1.0
    return out


_HUNYUANDIT = dict(
    num_attention_heads=2,
    attention_head_dim=32,
    in_channels=4,
    patch_size=2,
    sample_size=16,
    hidden_size=64,
    mlp_ratio=4.0,
    cross_attention_dim=64,
    cross_attention_dim_t5=48,
    pooled_projection_dim=64,
    text_len=8,
    text_len_t5=8,
)


# ----------------------------------------------------------------------------------------------
# HunyuanImageTransformer2DModel (HunyuanImage-2.1): token refiner, double + single stream blocks,
# Qwen2.5-VL text + ByT5 glyph text, 2D RoPE; the distilled model adds guidance + meanflow (t, r).


def _hunyuanimage_inputs(distilled):
    def make(g, device, dtype):
        b = 1
        out = {
            "hidden_states": seeded_randn((b, 64, 8, 8), g, device, dtype),
            "timestep": _full((b,), 750.0, device, dtype),
            "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
            "encoder_attention_mask": _mask(b, 8, 6, device),
            "encoder_hidden_states_2": seeded_randn((b, 8, 32), g, device, dtype),
            "encoder_attention_mask_2": _mask(b, 8, 4, device),
        }
        if distilled:
            out["timestep_r"] = _full((b,), 500.0, device, dtype)
            out["guidance"] = _full((b,), 3250.0, device, dtype)  # distilled_guidance_scale * 1000
        return out

    return make


_HUNYUANIMAGE = dict(
    in_channels=64,
    out_channels=64,
    num_attention_heads=2,
    attention_head_dim=32,
    num_layers=1,
    num_single_layers=2,
    num_refiner_layers=1,
    mlp_ratio=4.0,
    patch_size=(1, 1),
    qk_norm="rms_norm",
    text_embed_dim=64,
    text_embed_2_dim=32,
    rope_theta=256.0,
    rope_axes_dim=(16, 16),
)


# ----------------------------------------------------------------------------------------------
# HunyuanVideo family: token refiner + double-stream + single-stream blocks, 3D RoPE


def _hunyuanvideo15_inputs(g, device, dtype):
    b, f = 1, 2  # image-to-video: first latent frame is the condition, with a mask channel
    latents = seeded_randn((b, 32, f, 8, 8), g, device, dtype)
    cond = torch.zeros(b, 32, f, 8, 8, device=device, dtype=dtype)
    cond[:, :, 0] = seeded_randn((b, 32, 8, 8), g, device, dtype)
    mask = torch.zeros(b, 1, f, 8, 8, device=device, dtype=dtype)
    mask[:, :, 0] = 1
    return {
        "hidden_states": torch.cat([latents, cond, mask], dim=1),
        "timestep": _full((b,), 750.0, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask": _mask(b, 8, 6, device),
        "encoder_hidden_states_2": seeded_randn((b, 8, 32), g, device, dtype),
        "encoder_attention_mask_2": _mask(b, 8, 3, device),
        "image_embeds": seeded_randn((b, 8, 64), g, device, dtype),  # SigLIP tokens of the condition image
    }


def _hunyuanvideo_inputs(i2v):
    def make(g, device, dtype):
        b = 1
        out = {
            "hidden_states": seeded_randn(
                (b, 16, 2, 16, 16), g, device, dtype
            ),  # token_replace: frame 0 = image latents
            "timestep": torch.tensor([750] * b, device=device),
            "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
            "encoder_attention_mask": _mask(b, 8, 6, device),
            "pooled_projections": seeded_randn((b, 32), g, device, dtype),
        }
        if not i2v:
            out["guidance"] = _full((b,), 6000.0, device, dtype)  # guidance_scale * 1000
        return out

    return make


_HUNYUANVIDEO = dict(
    in_channels=16,
    out_channels=16,
    num_attention_heads=2,
    attention_head_dim=32,
    num_layers=1,
    num_single_layers=2,
    num_refiner_layers=1,
    mlp_ratio=4.0,
    patch_size=2,
    patch_size_t=1,
    qk_norm="rms_norm",
    text_embed_dim=64,
    pooled_projection_dim=32,
    rope_theta=256.0,
    rope_axes_dim=(8, 12, 12),
)


def _framepack_inputs(g, device, dtype):
    b, c, h, w, window = 1, 16, 8, 8, 2
    history_sizes = [1, 2, 16]  # inverted anti-drifting sampling (the pipeline default)
    idx = torch.arange(0, sum([1, 0, window, *history_sizes]))
    prefix, _pad, lat, h1, h2, h4 = idx.split([1, 0, window, *history_sizes])
    return {
        "hidden_states": seeded_randn((b, c, window, h, w), g, device, dtype),
        "timestep": torch.tensor([750.0] * b, device=device),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask": _mask(b, 8, 6, device),
        "pooled_projections": seeded_randn((b, 32), g, device, dtype),
        "image_embeds": seeded_randn((b, 8, 64), g, device, dtype),  # SigLIP tokens
        "indices_latents": lat.to(device),
        "guidance": _full((b,), 10000.0, device, dtype),  # guidance_scale (10) * 1000
        "latents_clean": seeded_randn((b, c, 2, h, w), g, device, dtype),  # image latents + 1x history
        "indices_latents_clean": torch.cat([prefix, h1]).to(device),
        "latents_history_2x": seeded_randn((b, c, 2, h, w), g, device, dtype),
        "indices_latents_history_2x": h2.to(device),
        "latents_history_4x": seeded_randn((b, c, 16, h, w), g, device, dtype),
        "indices_latents_history_4x": h4.to(device),
    }


# ----------------------------------------------------------------------------------------------
# I2VGenXLUNet: 3D UNet (spatial + temporal transformers / convs), image-latent and CLIP-image
# conditioning, fps embedding.


def _i2vgenxl_inputs(g, device, dtype):
    b, f = 2, 2
    image_latents = seeded_randn((b, 4, 1, 8, 8), g, device, dtype)
    image_latents = torch.cat([image_latents, torch.ones_like(image_latents)], dim=2)  # + frame position mask
    return {
        "sample": seeded_randn((b, 4, f, 8, 8), g, device, dtype),
        "timestep": torch.tensor(500, device=device),
        "fps": torch.tensor([16] * b, device=device),
        "image_latents": image_latents,
        "image_embeddings": seeded_randn((b, 1, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# Ideogram4Transformer2DModel: one packed sequence [left-padded text | image tokens] with
# block-diagonal segments, 3-axis mRoPE, per-token text/image role indicator.


def _ideogram4_inputs(unconditional):
    def make(g, device, dtype):
        from diffusers.pipelines.ideogram4.pipeline_ideogram4 import Ideogram4Pipeline

        b, max_text, grid, latent_dim, llm_dim = 1, 8, 8, 128, 64
        n_img = grid * grid
        position_ids, segment_ids, indicator = Ideogram4Pipeline._prepare_ids(
            [6], grid, grid, max_text, device
        )
        latents = seeded_randn((b, n_img, latent_dim), g, device, dtype)
        if unconditional:  # image-only slices, zeroed text features
            return {
                "hidden_states": latents,
                "timestep": _full((b,), 0.25, device, dtype),
                "encoder_hidden_states": torch.zeros(b, n_img, llm_dim, device=device, dtype=dtype),
                "position_ids": position_ids[:, max_text:],
                "segment_ids": segment_ids[:, max_text:],
                "indicator": indicator[:, max_text:],
            }
        text = torch.zeros(b, max_text, llm_dim, device=device, dtype=dtype)
        text[:, max_text - 6 :] = seeded_randn((b, 6, llm_dim), g, device, dtype)
        return {
            "hidden_states": torch.cat(
                [torch.zeros(b, max_text, latent_dim, device=device, dtype=dtype), latents], 1
            ),
            "timestep": _full((b,), 0.25, device, dtype),  # model time: 0 = noise, 1 = data
            "encoder_hidden_states": torch.cat(
                [text, torch.zeros(b, n_img, llm_dim, device=device, dtype=dtype)], 1
            ),
            "position_ids": position_ids,
            "segment_ids": segment_ids,
            "indicator": indicator,
        }

    return make


_IDEOGRAM4 = dict(
    in_channels=128,
    num_layers=2,
    attention_head_dim=64,
    num_attention_heads=2,
    intermediate_size=384,
    adaln_dim=64,
    llm_features_dim=64,
    rope_theta=5_000_000,
    mrope_section=(6, 5, 5),
)


# ----------------------------------------------------------------------------------------------
# JoyImage Edit (MMDiT double-stream blocks over [reference image(s) | target] frames) and
# JoyImage Edit Plus (patch tokens of several differently-sized images + shape_list)


def _joyimage_edit_inputs(g, device, dtype):
    b = 1  # CFG runs as two passes
    return {
        "hidden_states": seeded_randn(
            (b, 2, 16, 1, 16, 16), g, device, dtype
        ),  # (B, items=[ref, target], C, T, H, W)
        "timestep": torch.tensor([750.0] * b, device=device),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
    }


def _joyimage_edit_plus_inputs(g, device, dtype):
    b = 2  # CFG: [negative, positive] with padded prompt masks
    n_target, n_ref = 8 * 8, 4 * 4  # 16x16 target latents, one 8x8 reference image, patch 2x2
    return {
        "hidden_states": seeded_randn((b, n_target + n_ref, 16, 1, 2, 2), g, device, dtype),
        "timestep": torch.tensor([750.0] * b, device=device),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_hidden_states_mask": torch.stack([_mask(1, 8, 5, device)[0], _mask(1, 8, 8, device)[0]]),
        "shape_list": [[(1, 8, 8), (1, 4, 4)]] * b,
    }


_JOYIMAGE = dict(
    patch_size=[1, 2, 2],
    in_channels=16,
    hidden_size=64,
    num_attention_heads=2,
    text_dim=64,
    mlp_width_ratio=4.0,
    num_layers=2,
    rope_dim_list=[8, 12, 12],
    theta=256,
)


# ----------------------------------------------------------------------------------------------
# Kandinsky 3 UNet / Kandinsky 5 / Kandinsky 6 (video + audio) / Kandinsky 6 SR (NABLA attention)


def _kandinsky3_inputs(g, device, dtype):
    b = 2
    return {
        "sample": seeded_randn((b, 4, 16, 16), g, device, dtype),
        "timestep": torch.tensor([500] * b, device=device),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "encoder_attention_mask": _mask(b, 8, 6, device),
    }


def _kandinsky5_inputs(g, device, dtype):
    b, t, h, w, c = 1, 2, 16, 16, 16
    latents = seeded_randn((b, t, h, w, c), g, device, dtype)
    cond = torch.zeros(b, t, h, w, c, device=device, dtype=dtype)
    mask = torch.zeros(b, t, h, w, 1, device=device, dtype=dtype)
    return {
        "hidden_states": torch.cat([latents, cond, mask], dim=-1),  # (B, T, H, W, 2C+1), channels last
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "timestep": _full((b,), 750.0, device, dtype),
        "pooled_projections": seeded_randn((b, 32), g, device, dtype),
        "visual_rope_pos": [
            torch.arange(t, device=device),
            torch.arange(h // 2, device=device),
            torch.arange(w // 2, device=device),
        ],
        "text_rope_pos": torch.arange(8, device=device),
        "scale_factor": (1.0, 2.0, 2.0),
        "sparse_params": None,
    }


def _kandinsky6_inputs(g, device, dtype):
    b, t, h, w, c = 1, 2, 8, 8, 16
    # image-to-video+audio: the clean reference frame is appended as a masked tail frame reusing position 0
    latents = seeded_randn((b, t + 1, h, w, c), g, device, dtype)
    cond = torch.zeros_like(latents)
    mask = torch.zeros(b, t + 1, h, w, 1, device=device, dtype=dtype)
    mask[:, -1] = 1
    token_types = torch.zeros(b, t + 1, dtype=torch.long, device=device)
    token_types[:, -1] = 1
    text_mask = torch.ones(b, 8, dtype=torch.bool, device=device)
    text_mask[:, 6:] = False
    return {
        "hidden_states": torch.cat([latents, cond, mask], dim=-1),
        "encoder_hidden_states": seeded_randn((b, 8, 64), g, device, dtype),
        "pooled_projections": seeded_randn((b, 32), g, device, dtype),
        "timestep": _full((b,), 750.0, device, dtype),
        "audio_hidden_states": seeded_randn((b, 16, 20), g, device, dtype),
        "visual_rope_pos": (
            torch.cat([torch.arange(t, device=device), torch.zeros(1, dtype=torch.long, device=device)]),
            torch.arange(h // 2, device=device),
            torch.arange(w // 2, device=device),
        ),
        "encoder_attention_mask": text_mask,
        "visual_token_type_ids": token_types,
    }


def _kandinsky6_sr_inputs(g, device, dtype):
    b, t, h, w, c = 1, 1, 16, 16, 64
    latents = seeded_randn((b, t, h, w, c), g, device, dtype)
    return {
        # [latent | anchor latent | anchor mask]; the released checkpoints are anchor-free (zeros)
        "hidden_states": torch.cat(
            [latents, torch.zeros_like(latents), torch.zeros(b, t, h, w, 1, device=device, dtype=dtype)],
            dim=-1,
        ),
        "timestep": _full((b,), 750.0, device, dtype),
    }


# ----------------------------------------------------------------------------------------------
# Krea2Transformer2DModel: GQA single-stream blocks; text from stacked LLM layers through layerwise
# and refiner text blocks; 3D RoPE over [text at origin | image grid].


def _krea2_inputs(g, device, dtype):
    from diffusers.pipelines.krea2.pipeline_krea2 import Krea2Pipeline

    b, L = 1, 8
    mask = torch.ones(b, L, dtype=torch.bool, device=device)
    mask[:, 6:] = False
    return {
        "hidden_states": _pack(seeded_randn((b, 16, 16, 16), g, device, dtype)),
        "encoder_hidden_states": seeded_randn(
            (b, L, 2, 64), g, device, dtype
        ),  # (B, L, selected LLM layers, dim)
        "timestep": _full((b,), 0.75, device, dtype),  # t / num_train_timesteps
        "position_ids": Krea2Pipeline.prepare_position_ids(L, 8, 8, device),
        "encoder_attention_mask": mask,
    }


# ----------------------------------------------------------------------------------------------
# LTX-2 audio-video transformer: parallel video and audio streams (self-attn, text cross-attn,
# audio<->video cross-attention, FFN) per block; LTX-2.3 adds gated attention, cross-attention
# modulation and perturbed (STG) attention, and takes text already projected by the connectors.


def _ltx2_inputs(video_text_dim, audio_text_dim):
    def make(g, device, dtype):
        b, f, h, w, audio_frames, L = 2, 2, 8, 8, 9, 8  # CFG batch
        return {
            "hidden_states": seeded_randn(
                (b, f * h * w, 128), g, device, dtype
            ),  # packed video latent tokens
            "audio_hidden_states": seeded_randn(
                (b, audio_frames, 128), g, device, dtype
            ),  # 8 ch x 16 mel bins
            "encoder_hidden_states": seeded_randn(
                (b, L, video_text_dim), g, device, dtype
            ),  # connector outputs
            "audio_encoder_hidden_states": seeded_randn((b, L, audio_text_dim), g, device, dtype),
            "timestep": _full((b,), 750.0, device, dtype),
            "sigma": _full(
                (b,), 750.0, device, dtype
            ),  # the pipeline passes sigma=timestep (read by LTX-2.3)
            "encoder_attention_mask": torch.ones(b, L, dtype=torch.long, device=device),
            "audio_encoder_attention_mask": torch.ones(b, L, dtype=torch.long, device=device),
            "num_frames": f,
            "height": h,
            "width": w,
            "fps": 24.0,
            "audio_num_frames": audio_frames,
            "isolate_modalities": False,
            "use_cross_timestep": True,
        }

    return make


_LTX2 = dict(
    in_channels=128,
    out_channels=128,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=2,
    attention_head_dim=64,
    cross_attention_dim=128,
    audio_in_channels=128,
    audio_out_channels=128,
    audio_num_attention_heads=2,
    audio_attention_head_dim=32,
    audio_cross_attention_dim=64,
    num_layers=2,
    qk_norm="rms_norm_across_heads",
    caption_channels=64,
    rope_type="split",
)


# ----------------------------------------------------------------------------------------------
# LTX2VideoDiffusionDecoderModel (LTX-2.5 diffusion VAE decoder): neighborhood-attention (flex
# BlockMask) stages with pixel-shuffle upsampling, then one AdaLN-Zero diffusion stage in pixel space.


def _ltx2_decoder_inputs(g, device, dtype):
    # one latent frame of 3x3 -> one 48x48 RGB frame; noise is drawn inside forward
    return {"z": seeded_randn((1, 128, 1, 3, 3), g, device, dtype)}


ENTRIES = [
    ZooModel(
        "ace-step-tiny",
        "AceStepTransformer1DModel",
        dict(
            hidden_size=64,
            intermediate_size=192,
            num_hidden_layers=2,  # one sliding-window layer, one full-attention layer
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            in_channels=192,
            audio_acoustic_hidden_dim=64,
            patch_size=2,
            rope_theta=1000000.0,
            sliding_window=8,
            is_turbo=True,
        ),
        _ace_step_inputs,
        "32 latent frames x 64 channels (16 tokens), 8 condition tokens, batch 1",
        notes={"family": "dit-audio"},
    ),
    ZooModel(
        "allegro-tiny",
        "AllegroTransformer3DModel",
        dict(
            patch_size=2,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=48,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            cross_attention_dim=96,
            sample_height=8,
            sample_width=8,
            sample_frames=2,
            caption_channels=64,
        ),
        _allegro_inputs,
        "2 latent frames of 8x8 (32 tokens), 8 text tokens, batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "anyflow-tiny",
        "AnyFlowTransformer3DModel",
        _ANYFLOW,
        _anyflow_inputs,
        "2 latent frames of 8x8 (32 tokens), 8 text tokens, batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "anyflow-far-tiny",
        "AnyFlowFARTransformer3DModel",
        dict(_ANYFLOW, compressed_patch_size=(1, 4, 4), full_chunk_limit=3, chunk_partition=(1, 1)),
        _anyflow_far_inputs,
        "one 8x8 latent frame attending to a 1-chunk KV cache (flex attention), batch 1",
        notes={"family": "dit-video", "output": "model(...)[0] is the sample; [1] is the KV cache"},
    ),
    ZooModel(
        "audioldm2-tiny",
        "AudioLDM2UNet2DConditionModel",
        dict(
            sample_size=16,
            in_channels=8,
            out_channels=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(64, 128),
            layers_per_block=1,
            norm_num_groups=32,
            cross_attention_dim=((None, 32, 64), (None, 32, 64)),  # as cvssp/audioldm2: [None, 768, 1024]
            attention_head_dim=8,
        ),
        _audioldm2_inputs,
        "8-channel 16x16 mel latents, 8 GPT-2 + 8 T5 tokens, batch 2",
        notes={"family": "unet"},
    ),
    ZooModel(
        "auraflow-tiny",
        "AuraFlowTransformer2DModel",
        dict(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            num_mmdit_layers=2,
            num_single_dit_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            caption_projection_dim=64,
            out_channels=4,
            pos_embed_max_size=256,
        ),
        _auraflow_inputs,
        "16x16 latents (64 tokens), 8 text tokens, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "bria-fibo2-tiny",
        "BriaFibo2Transformer2DModel",
        _BRIA_FIBO2,
        _bria_fibo2_inputs,
        "16x16 latents of 32 channels (64 tokens) + 8 gist tokens, 8 text tokens, batch 1",
        notes={
            "family": "dit-image",
            "graph_break": 'fresh model only: RopeEmbedder lazily builds its table under `with torch.device("cpu")` (transformer_bria_fibo2.py:166 -> :149, called from :552); Dynamo cannot enter a device context manager. fullgraph=True works once the model has run eagerly once; fullgraph=False: 2 breaks',
            "fp8pass_error": "fullgraph on a fresh model: same device-context-manager error (transformer_bria_fibo2.py:166/149); ok after one eager call (43/44 layers converted)",
        },
    ),
    ZooModel(
        "bria-fibo2-edit-tiny",
        "BriaFibo2Transformer2DModel",
        _BRIA_FIBO2,
        _bria_fibo2_edit_inputs,
        "as bria-fibo2-tiny plus one 16x16 image to edit (clean context tokens, noise-masked AdaLN)",
        notes={
            "family": "dit-image",
            "graph_break": 'as bria-fibo2-tiny: `with torch.device("cpu")` in the lazily built RoPE table (transformer_bria_fibo2.py:166 -> :149); fine after one eager call',
            "fp8pass_error": "fresh model: same error; ok after one eager call (43/44 layers converted)",
        },
    ),
    ZooModel(
        "bria-fibo-tiny",
        "BriaFiboTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=48,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            text_encoder_dim=32,
            pooled_projection_dim=None,
            guidance_embeds=False,
            axes_dims_rope=[8, 12, 12],
        ),
        _bria_fibo_inputs,
        "8x8 latents of 48 channels (64 tokens), 8 text tokens + per-block text layers, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "bria-tiny",
        "BriaTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            pooled_projection_dim=None,
            guidance_embeds=False,
            axes_dims_rope=[8, 12, 12],
        ),
        _bria_inputs,
        "16x16 latents packed to 64 tokens, 8 text tokens, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "chroma-tiny",
        "ChromaTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            axes_dims_rope=(8, 12, 12),
            approximator_num_channels=64,
            approximator_hidden_dim=128,
            approximator_layers=2,
        ),
        _chroma_inputs,
        "16x16 latents packed to 64 tokens, 8 text tokens (2 padded), batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "chronoedit-tiny",
        "ChronoEditTransformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=36,
            out_channels=16,
            text_dim=64,
            freq_dim=256,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            image_dim=64,
            added_kv_proj_dim=64,
            rope_max_seq_len=1024,
            rope_temporal_skip_len=8,
        ),
        _chronoedit_inputs,
        "2 latent frames of 8x8 (32 tokens), 8 text + 8 CLIP image tokens, batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "cogvideox-tiny",
        "CogVideoXTransformer3DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=16,
            out_channels=16,
            time_embed_dim=64,
            text_embed_dim=64,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=5,
            patch_size=2,
            max_text_seq_length=8,
            use_rotary_positional_embeddings=True,  # CogVideoX-5b
        ),
        _cogvideox_inputs,
        "2 latent frames of 8x8 (32 tokens), 8 text tokens, batch 2",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "cogvideox15-i2v-tiny",
        "CogVideoXTransformer3DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=32,
            out_channels=16,
            time_embed_dim=64,
            ofs_embed_dim=64,
            text_embed_dim=64,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=5,
            patch_size=2,
            patch_size_t=2,
            max_text_seq_length=8,
            use_rotary_positional_embeddings=True,
            patch_bias=False,
        ),
        _cogvideox15_i2v_inputs,
        "CogVideoX1.5-I2V layout: 2 latent frames (1 temporal patch) of 8x8, 8 text tokens, batch 2",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "cogview3plus-tiny",
        "CogView3PlusTransformer2DModel",
        dict(
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            out_channels=16,
            text_embed_dim=64,
            time_embed_dim=64,
            condition_dim=256,
            pos_embed_max_size=16,
            sample_size=16,
        ),
        _cogview_inputs(2),
        "16x16 latents (64 tokens), 8 text tokens, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "cogview4-tiny",
        "CogView4Transformer2DModel",
        dict(
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            text_embed_dim=64,
            time_embed_dim=64,
            condition_dim=256,
            pos_embed_max_size=128,
            sample_size=16,
            rope_axes_dim=(256, 256),
        ),
        _cogview_inputs(1),
        "16x16 latents (64 tokens), 8 text tokens, batch 1 (CFG runs as two passes)",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "consisid-tiny",
        "ConsisIDTransformer3DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=48,
            in_channels=32,
            out_channels=16,
            time_embed_dim=64,
            text_embed_dim=64,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=5,
            patch_size=2,
            max_text_seq_length=8,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
            is_train_face=True,
            is_kps=False,
            cross_attn_interval=2,
            cross_attn_dim_head=32,
            cross_attn_num_heads=2,
            LFE_id_dim=64,
            LFE_vit_dim=64,
            LFE_depth=2,
            LFE_dim_head=32,
            LFE_num_heads=2,
            LFE_num_id_token=2,
            LFE_num_querie=8,
            LFE_output_dim=64,  # = inner_dim * 2 / 3, the perceiver cross-attention's K/V width
            LFE_ff_mult=4,
            LFE_num_scale=2,
        ),
        _consisid_inputs,
        "2 latent frames of 8x8 (32 tokens), 8 text tokens, face id + 2 ViT feature scales, batch 2",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "controlnet-tiny",
        "ControlNetModel",
        _CONTROLNET_SD15,
        _controlnet_inputs(False),
        "SD1.5 layout: 16x16 latents, 128x128 control image, 8 text tokens, batch 2",
        notes={
            "family": "controlnet",
            "output": "out[0] is the tuple of down-block residuals, out[1] the mid-block residual",
        },
    ),
    ZooModel(
        "controlnet-sdxl-tiny",
        "ControlNetModel",
        _CONTROLNET_SDXL,
        _controlnet_inputs(True),
        "SDXL layout (text_time embedding): 16x16 latents, 128x128 control image, batch 2",
        notes={
            "family": "controlnet",
            "output": "out[0] is the tuple of down-block residuals, out[1] the mid-block residual",
        },
    ),
    ZooModel(
        "controlnet-union-tiny",
        "ControlNetUnionModel",
        dict(
            _CONTROLNET_SDXL,
            num_control_type=6,
            num_trans_channel=64,
            num_trans_head=2,
            num_trans_layer=1,
            num_proj_channel=64,
        ),
        _controlnet_union_inputs,
        "SDXL union layout: 16x16 latents, two 128x128 control images, batch 2",
        notes={
            "family": "controlnet",
            "output": "out[0] is the tuple of down-block residuals, out[1] the mid-block residual",
        },
    ),
    ZooModel(
        "cosmos3-omni-tiny",
        "Cosmos3OmniTransformer",
        dict(
            head_dim=64,
            hidden_size=128,
            intermediate_size=384,
            latent_channel=48,
            latent_patch_size=2,
            patch_latent_dim=192,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_hidden_layers=2,
            rope_axes_dim=[12, 10, 10],  # published [24, 20, 20] for head_dim 128
            vocab_size=256,
            hidden_act="silu",
            qk_norm_for_text=True,
        ),
        _cosmos3_inputs,
        "8 text tokens + 2 latent frames of 8x8x48 (32 vision tokens), packed, unbatched",
        notes={
            "family": "dit-video",
            "output": "out[0] is a list of per-item vision predictions; out[1]/out[2] sound/action (None)",
        },
    ),
    ZooModel(
        "cosmos3-edge-action-tiny",
        "Cosmos3OmniTransformer",
        dict(
            head_dim=64,
            hidden_size=128,
            intermediate_size=384,
            latent_channel=48,
            latent_patch_size=2,
            patch_latent_dim=192,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_hidden_layers=2,
            rope_axes_dim=[12, 10, 10],
            vocab_size=256,
            hidden_act="relu2",  # Nemotron-style: relu^2 MLP without gate, Nemotron RMSNorm
            qk_norm_for_text=False,
            use_und_k_norm_for_gen=True,
            action_gen=True,
            action_dim=16,
            num_embodiment_domains=32,
        ),
        _cosmos3_action_inputs,
        "8 text + 32 vision (frame 0 clean) + 8 action tokens (step 0 clean), packed, unbatched",
        notes={
            "family": "dit-video",
            "output": "out[0] vision predictions (list), out[2] action predictions (list)",
            "graph_break": "DomainAwareLinear validates ids with `if torch.any((domain_id < 0) | ...)` (transformer_cosmos3.py:217, called from :780); fullgraph=False: 2 graph breaks, 7 graphs",
            "fp8pass_error": "same data-dependent branching error (transformer_cosmos3.py:217); the action projections are nn.Embedding-held weights used via bmm, invisible to fp8pass",
        },
    ),
    ZooModel(
        "cosmos-tiny",
        "CosmosTransformer3DModel",
        dict(_COSMOS_BASE, in_channels=16, rope_scale=(2.0, 1.0, 1.0), extra_pos_embed_type="learnable"),
        _cosmos1_inputs,
        "Cosmos-1.0 Text2World layout: 2 latent frames of 8x8 (32 tokens), 8 text tokens, batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "cosmos25-tiny",
        "CosmosTransformer3DModel",
        dict(
            _COSMOS_BASE,
            in_channels=17,
            rope_scale=(1.0, 3.0, 3.0),
            extra_pos_embed_type=None,
            use_crossattn_projection=True,
            crossattn_proj_in_channels=128,
            encoder_hidden_states_channels=64,
        ),
        _cosmos25_inputs,
        "Cosmos-2.5 Predict layout: 2 latent frames of 8x8, conditioning frame mask, per-frame timesteps",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "dit-tiny",
        "DiTTransformer2DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            sample_size=16,
            patch_size=2,
            num_embeds_ada_norm=1000,
        ),
        _dit_inputs,
        "16x16 latents (64 tokens), class-conditional, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "dreamlite-transformer-tiny",
        "DreamLiteTransformer2DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=64,
            num_layers=1,
            norm_num_groups=32,
            cross_attention_dim=64,
            qk_norm="rms_norm",
            num_kv_heads=None,  # GQA needs DreamLiteAttnProcessor2_0, which only DreamLiteUNetModel installs
            ff_mult=6,
        ),
        _dreamlite_transformer_inputs,
        "a DreamLite UNet's spatial transformer on a 64-channel 8x8 feature map, batch 2",
        notes={"family": "other"},
    ),
    ZooModel(
        "dreamlite-tiny",
        "DreamLiteUNetModel",
        dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(64, 128, 128),
            layers_per_block=1,
            cross_attention_dim=64,
            attention_head_dim=2,  # UNet2DConditionModel naming: the number of heads
            norm_num_groups=32,
            encoder_hid_dim=64,
            encoder_hid_dim_type="text_proj_rms",
            addition_embed_type="time",
            addition_time_embed_dim=16,
            projection_class_embeddings_input_dim=32,
            qk_norm="rms_norm",
            use_sep_conv=True,
            ff_mult=6,
            num_kv_heads=1,
        ),
        _dreamlite_unet_inputs,
        "16x16 latents + 16x16 condition latents side by side (16x32), 8 text tokens, batch 2",
        notes={"family": "unet"},
    ),
    ZooModel(
        "easyanimate-tiny",
        "EasyAnimateTransformer3DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=16,
            out_channels=16,
            patch_size=2,
            sample_width=8,
            sample_height=8,
            num_layers=2,
            mmdit_layers=2,
            time_embed_dim=64,
            text_embed_dim=64,
            time_position_encoding_type="3d_rope",
        ),
        _easyanimate_inputs,
        "2 latent frames of 8x8 (32 tokens), 8 text tokens, batch 2",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "ernie-image-tiny",
        "ErnieImageTransformer2DModel",
        dict(
            hidden_size=128,
            num_attention_heads=2,
            num_layers=2,
            ffn_hidden_size=352,
            in_channels=128,
            out_channels=128,
            patch_size=1,
            text_in_dim=64,
            rope_theta=256,
            rope_axes_dim=(16, 24, 24),
            qk_layernorm=True,
        ),
        _ernie_image_inputs,
        "8x8 latents of 128 channels (64 tokens), 8 text tokens (one prompt padded), batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "flux-schnell-tiny",
        "FluxTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            pooled_projection_dim=32,
            guidance_embeds=False,  # FLUX.1-schnell; the dev layout is fp8pass.zoo's flux-dev-tiny
            axes_dims_rope=(8, 12, 12),
        ),
        _flux_schnell_inputs,
        "16x16 latents packed to 64 tokens, 8 text tokens, batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "flux-controlnet-union-tiny",
        "FluxControlNetModel",
        dict(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=[8, 12, 12],
            num_mode=10,
        ),
        _flux_controlnet_union_inputs,
        "InstantX union layout: 64 latent + 64 control tokens, control mode token, 8 text tokens, batch 1",
        notes={
            "family": "controlnet",
            "output": "out[0] is the tuple of double-block samples, out[1] of single-block samples",
        },
    ),
    ZooModel(
        "flux2-dev-tiny",
        "Flux2Transformer2DModel",
        dict(_FLUX2, guidance_embeds=True),
        _flux2_inputs(False),
        "16x16 latents (32 ch) patchified to 64 tokens of 128, 8 text tokens, batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "flux2-klein-edit-tiny",
        "Flux2Transformer2DModel",
        dict(_FLUX2, guidance_embeds=False),
        _flux2_inputs(True),
        "FLUX.2 klein layout (no guidance embedder): 64 noisy + 64 reference-image tokens, 8 text tokens",
        notes={"family": "dit-image", "output": "the pipeline keeps the first 64 tokens of out[0]"},
    ),
    ZooModel(
        "flux3-tiny",
        "Flux3Transformer2DModel",
        dict(_FLUX3, flow_map=False),
        _flux3_inputs(False),
        "64 image tokens (16x16 latents, 128 ch after packing), 8 text tokens, batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "flux3-distilled-edit-tiny",
        "Flux3Transformer2DModel",
        dict(_FLUX3, flow_map=True),
        _flux3_inputs(True),
        "flow-map (distilled) layout with target timestep, 64 image + 64 reference tokens, 8 text tokens",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "glm-image-tiny",
        "GlmImageTransformer2DModel",
        dict(
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            text_embed_dim=64,
            time_embed_dim=64,
            condition_dim=256,
            prior_vq_quantizer_codebook_size=1024,
        ),
        _glm_image_inputs,
        "16x16 latents (64 tokens) + 64 prior tokens, 8 glyph tokens, batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "helios-tiny",
        "HeliosTransformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=16,
            out_channels=16,
            text_dim=64,
            freq_dim=256,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_dim=(12, 10, 10),
            guidance_cross_attn=True,
            zero_history_timestep=True,
            has_multi_term_memory_patch=True,
            is_amplify_history=False,
        ),
        _helios_inputs,
        "2 latent frames of 8x8 + short/mid/long history (2/2/16 frames), 8 text tokens, batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "hidream-tiny",
        "HiDreamImageTransformer2DModel",
        dict(
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            caption_channels=[64, 64],
            text_emb_dim=64,
            num_routed_experts=4,
            num_activated_experts=2,
            axes_dims_rope=(16, 8, 8),
            max_resolution=(128, 128),
            llama_layers=[0, 1, 1],
        ),
        _hidream_inputs,
        "16x16 latents (64 tokens), 8 T5 + 2x8 Llama tokens, batch 2",
        notes={
            "family": "dit-image",
            "graph_break": "MoE inference routing moe_infer (transformer_hidream_image.py:381-391: bincount().cpu().numpy(), loop over tokens_per_expert), called from :573; fullgraph=False: 8 graph breaks, 19 graphs",
            "fp8pass_error": "same data-dependent error in moe_infer (transformer_hidream_image.py:381/391)",
        },
    ),
    ZooModel(
        "hunyuandit-tiny",
        "HunyuanDiT2DModel",
        dict(_HUNYUANDIT, num_layers=4, learn_sigma=True, use_style_cond_and_image_meta_size=False),  # v1.2
        _hunyuandit_inputs,
        "HunyuanDiT-v1.2 layout: 16x16 latents (64 tokens), 8 CLIP + 8 T5 tokens, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "hunyuandit-v11-tiny",
        "HunyuanDiT2DModel",
        dict(_HUNYUANDIT, num_layers=4, learn_sigma=True, use_style_cond_and_image_meta_size=True),
        _hunyuandit_inputs,
        "HunyuanDiT-v1.1 layout (style + image-size embedding), 16x16 latents, batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "hunyuandit-controlnet-tiny",
        "HunyuanDiT2DControlNetModel",
        dict(
            _HUNYUANDIT,
            conditioning_channels=3,
            transformer_num_layers=6,
            use_style_cond_and_image_meta_size=False,
        ),
        _hunyuandit_controlnet_inputs,
        "HunyuanDiT-v1.2 ControlNet: 16x16 latents + 16x16 control latents, batch 2",
        notes={
            "family": "controlnet",
            "output": "out[0] is the list of block residuals",
            "build": "text_embedding_padding is created with dtype=torch.float32 (controlnet_hunyuan.py:72-73), so "
            "a build under set_default_dtype(bf16) keeps it fp32 and the forward fails ('mat1 and mat2 must have the "
            "same dtype'); needs model.to(bfloat16) after construction, as from_pretrained(torch_dtype=...) does",
        },
    ),
    ZooModel(
        "hunyuanimage21-tiny",
        "HunyuanImageTransformer2DModel",
        dict(_HUNYUANIMAGE, guidance_embeds=False, use_meanflow=False),
        _hunyuanimage_inputs(False),
        "8x8 latents of 64 channels (64 tokens), 8 Qwen + 8 ByT5 tokens (masked), batch 1",
        notes={
            "family": "dit-image",
            "graph_break": "text tokens are reordered with boolean masks (transformer_hunyuanimage.py:826-841), so lengths are data-dependent and the attention at :127 cannot guard on them (UserError); fullgraph=False falls back to eager for that frame (nonzero) - 9 graphs",
            "fp8pass_error": "same data-dependent guard error (attention_dispatch.py:450 via transformer_hunyuanimage.py:127)",
        },
    ),
    ZooModel(
        "hunyuanimage21-distilled-tiny",
        "HunyuanImageTransformer2DModel",
        dict(_HUNYUANIMAGE, guidance_embeds=True, use_meanflow=True),
        _hunyuanimage_inputs(True),
        "distilled layout (guidance embedding + meanflow timestep_r), otherwise as hunyuanimage21-tiny",
        notes={
            "family": "dit-image",
            "graph_break": "as hunyuanimage21-tiny: boolean-mask text reordering (transformer_hunyuanimage.py:826-841) -> data-dependent guard in attention at :127",
            "fp8pass_error": "same data-dependent guard error",
        },
    ),
    ZooModel(
        "hunyuanvideo15-tiny",
        "HunyuanVideo15Transformer3DModel",
        dict(
            in_channels=65,
            out_channels=32,
            num_attention_heads=2,
            attention_head_dim=32,
            num_layers=2,
            num_refiner_layers=1,
            mlp_ratio=4.0,
            patch_size=1,
            patch_size_t=1,
            qk_norm="rms_norm",
            text_embed_dim=64,
            text_embed_2_dim=32,
            image_embed_dim=64,
            rope_theta=256.0,
            rope_axes_dim=(8, 12, 12),
            target_size=640,
            task_type="i2v",
        ),
        _hunyuanvideo15_inputs,
        "image-to-video: 2 latent frames of 8x8x32 + condition + mask (65 ch), 8 Qwen + 8 ByT5 + 8 SigLIP tokens",
        notes={
            "family": "dit-video",
            "graph_break": "`is_t2v = torch.all(image_embeds == 0); if is_t2v:` (transformer_hunyuan_video15.py:701-702) is data-dependent branching, then boolean-mask token reordering; fullgraph=False: 3 graphs",
            "fp8pass_error": "same data-dependent branching error (transformer_hunyuan_video15.py:702)",
        },
    ),
    ZooModel(
        "hunyuanvideo-framepack-tiny",
        "HunyuanVideoFramepackTransformer3DModel",
        dict(
            _HUNYUANVIDEO,
            guidance_embeds=True,
            image_condition_type=None,
            has_image_proj=True,
            image_proj_dim=64,
            has_clean_x_embedder=True,
        ),
        _framepack_inputs,
        "2-frame window of 8x8 + clean/2x/4x history (2/2/16 frames), 8 text + 8 SigLIP tokens, batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "hunyuanvideo-tiny",
        "HunyuanVideoTransformer3DModel",
        dict(_HUNYUANVIDEO, guidance_embeds=True, image_condition_type=None),
        _hunyuanvideo_inputs(False),
        "text-to-video: 2 latent frames of 16x16 (128 tokens), 8 text tokens (masked), batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "hunyuanvideo-i2v-tiny",
        "HunyuanVideoTransformer3DModel",
        dict(_HUNYUANVIDEO, guidance_embeds=False, image_condition_type="token_replace"),
        _hunyuanvideo_inputs(True),
        "HunyuanVideo-I2V token_replace layout (first-frame tokens at t=0), 2 latent frames of 16x16",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "i2vgenxl-tiny",
        "I2VGenXLUNet",
        dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            block_out_channels=(64, 128),
            layers_per_block=1,
            norm_num_groups=32,
            cross_attention_dim=64,
            attention_head_dim=2,  # UNet naming: the number of heads
        ),
        _i2vgenxl_inputs,
        "2 frames of 8x8 latents, image latents + CLIP image embedding, 8 text tokens, batch 2",
        notes={"family": "unet"},
    ),
    ZooModel(
        "ideogram4-tiny",
        "Ideogram4Transformer2DModel",
        _IDEOGRAM4,
        _ideogram4_inputs(False),
        "packed [8 text (6 real) | 64 image] tokens of 128 latent channels, batch 1",
        notes={"family": "dit-image", "output": "the pipeline keeps out[0][:, 8:] (the image tokens)"},
    ),
    ZooModel(
        "ideogram4-uncond-tiny",
        "Ideogram4Transformer2DModel",
        _IDEOGRAM4,
        _ideogram4_inputs(True),
        "the pipeline's unconditional_transformer: 64 image tokens only, zeroed text features",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "joyimage-edit-tiny",
        "JoyImageEditTransformer3DModel",
        _JOYIMAGE,
        _joyimage_edit_inputs,
        "reference + target 16x16 latents (2 x 64 tokens), 8 text tokens, batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "joyimage-edit-plus-tiny",
        "JoyImageEditPlusTransformer3DModel",
        _JOYIMAGE,
        _joyimage_edit_plus_inputs,
        "patch tokens of a 16x16 target + an 8x8 reference (80 tokens), 8 text tokens (masked), batch 2",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "kandinsky3-tiny",
        "Kandinsky3UNet",
        dict(
            in_channels=4,
            time_embedding_dim=256,
            groups=32,
            attention_head_dim=32,
            layers_per_block=2,
            block_out_channels=(64, 128),
            cross_attention_dim=64,
            encoder_hid_dim=64,
        ),
        _kandinsky3_inputs,
        "16x16 latents, 8 text tokens (masked), batch 2",
        notes={"family": "unet"},
    ),
    ZooModel(
        "kandinsky5-tiny",
        "Kandinsky5Transformer3DModel",
        dict(
            in_visual_dim=16,
            in_text_dim=64,
            in_text_dim2=32,
            time_dim=64,
            out_visual_dim=16,
            patch_size=(1, 2, 2),
            model_dim=64,
            ff_dim=256,
            num_text_blocks=1,
            num_visual_blocks=2,
            axes_dims=(8, 12, 12),
            visual_cond=True,
            attention_type="regular",
        ),
        _kandinsky5_inputs,
        "2 latent frames of 16x16 (128 tokens, channels-last with visual-cond channels), 8 text tokens",
        notes={
            "family": "dit-video",
            "build": "needs _keep_in_fp32_modules (time_embeddings, modulation) in float32, as from_pretrained keeps "
            "them: the sinusoidal time embedding is float32 (transformer_kandinsky.py:169-171); an all-bf16 build "
            "fails with 'mat1 and mat2 must have the same dtype'",
        },
    ),
    ZooModel(
        "kandinsky6-tiny",
        "Kandinsky6Transformer3DModel",
        dict(
            in_visual_dim=16,
            out_visual_dim=16,
            in_text_dim=64,
            in_text_dim2=32,
            time_dim=64,
            patch_size=(1, 2, 2),
            model_dim=64,
            ff_dim=256,
            num_text_blocks=1,
            num_visual_blocks=2,
            axes_dims=(8, 12, 12),
            visual_cond=True,
            in_audio_dim=20,
            out_audio_dim=20,
            scale_factor=(1.0, 2.0, 2.0),
            visual_token_type_num_embeddings=2,
        ),
        _kandinsky6_inputs,
        "image-to-video+audio: 2+1 latent frames of 8x8 (48 tokens), 16 audio latents, 8 text tokens",
        notes={"family": "dit-video", "output": "out[0] is the video velocity, out[1] the audio velocity"},
    ),
    ZooModel(
        "kandinsky6-sr-tiny",
        "Kandinsky6SRTransformer3DModel",
        dict(
            in_visual_dim=64,
            out_visual_dim=640,
            time_dim=64,
            patch_size=(1, 1, 1),
            model_dim=64,
            ff_dim=256,
            num_visual_blocks=2,
            axes_dims=(8, 12, 12),
            scale_factor=(1.0, 2.0, 2.0),
            nabla_threshold=0.8,
            nabla_window=(11, 7, 7),
        ),
        _kandinsky6_sr_inputs,
        "one 16x16 latent tile (256 tokens = 4 NABLA blocks of 8x8), batch 1",
        notes={"family": "dit-video"},
    ),
    ZooModel(
        "krea2-tiny",
        "Krea2Transformer2DModel",
        dict(
            in_channels=64,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=4,
            num_key_value_heads=1,
            intermediate_size=352,
            timestep_embed_dim=256,
            text_hidden_dim=64,
            num_text_layers=2,
            text_num_attention_heads=2,
            text_num_key_value_heads=2,
            text_intermediate_size=176,
            num_layerwise_text_blocks=1,
            num_refiner_text_blocks=1,
            axes_dims_rope=(8, 12, 12),
            rope_theta=1000.0,
        ),
        _krea2_inputs,
        "16x16 latents packed to 64 tokens, 8 text tokens x 2 LLM layers (2 padded), batch 1",
        notes={"family": "dit-image"},
    ),
    ZooModel(
        "ltx2-tiny",
        "LTX2VideoTransformer3DModel",
        dict(
            _LTX2,
            gated_attn=False,
            cross_attn_mod=False,
            audio_gated_attn=False,
            audio_cross_attn_mod=False,
            use_prompt_embeddings=True,
            perturbed_attn=False,
        ),
        _ltx2_inputs(64, 64),
        "LTX-2.0 layout: 2 latent frames of 8x8 (128 video tokens) + 9 audio tokens, 8 text tokens, batch 2",
        notes={"family": "dit-video", "output": "out[0] is the video velocity, out[1] the audio velocity"},
    ),
    ZooModel(
        "ltx23-tiny",
        "LTX2VideoTransformer3DModel",
        dict(
            _LTX2,
            gated_attn=True,
            cross_attn_mod=True,
            audio_gated_attn=True,
            audio_cross_attn_mod=True,
            use_prompt_embeddings=False,
            perturbed_attn=True,
        ),
        _ltx2_inputs(128, 64),
        "LTX-2.3 layout (gated attn, cross-attn modulation, STG attention), shapes as ltx2-tiny",
        notes={"family": "dit-video", "output": "out[0] is the video velocity, out[1] the audio velocity"},
    ),
    ZooModel(
        "ltx2-diffusion-decoder-tiny",
        "LTX2VideoDiffusionDecoderModel",
        dict(
            out_channels=3,
            latent_channels=128,
            patch_size=2,  # published 4 (spatial compression 32)
            decoder_head_dim=32,
            decoder_stage_channels=(512, 256, 128, 128, 64),
            decoder_stage_depths=(1, 1, 1, 1, 1),
            # published kernels are (3,7,7)/(3,5,5) and (11,11,11) for stage 5; neighborhood attention needs every
            # stage grid to be at least its kernel, which would need >= 7x7 latents (too big for a CPU test)
            decoder_stage_kernels=((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
            decoder_upsample_strides=((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2)),
            decoder_upsample_channel_reductions=(2, 2, 1, 2),
            decoder_stage5_kernel=(
                1,
                3,
                3,
            ),  # temporal 1: a single decoded frame keeps the CPU forward ~0.3 s
            decoder_t_emb_dim=64,
            spatial_compression_ratio=16,
            temporal_compression_ratio=8,
        ),
        _ltx2_decoder_inputs,
        "one 3x3x128 latent frame -> one 48x48 RGB frame (stage 5: 576 tokens), one x0 denoising step",
        notes={
            "family": "other",
            "output": "out[0] is the decoded video (B, 3, F, H, W); forward draws noise (pass generator= to seed it)",
        },
    ),
]


UNSUPPORTED = {
    "CosmosControlNetModel": (
        "needs torchvision, which is not installed: forward always resizes padding_mask with "
        "torchvision.transforms.functional.resize (controlnet_cosmos.py:201), so it raises "
        "NameError: name 'transforms' is not defined (CosmosTransformer3DModel entries avoid the same call "
        "with concat_padding_mask=False)"
    ),
}
