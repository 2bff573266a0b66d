"""Small configurations of diffusers denoiser classes, part B.

Every entry keeps the block structure and flags of the published model (all block kinds present, 1-2 of
each) with widths of 64-128, so that a forward runs well under a second on a 2-core CPU. Inputs follow the
shapes and value ranges the matching pipeline passes to the denoiser.
"""

from __future__ import annotations

import torch

from ..zoo import ZooModel, seeded_randn

# --------------------------------------------------------------------------------------------- helpers


def _t(values, device, dtype=None):
    return torch.tensor(values, device=device, dtype=dtype)


def _ones_mask(n, device, dtype=torch.bool, batch=1):
    return torch.ones(batch, n, device=device, dtype=dtype)


def _flux_ids(h, w, device, modality=0.0, start=0):
    """(h*w, 3) image position ids [modality, row, col] as Flux-like pipelines build them."""
    ids = torch.zeros(h, w, 3)
    ids[..., 0] = modality
    ids[..., 1] = torch.arange(h)[:, None] + start
    ids[..., 2] = torch.arange(w)[None, :] + start
    return ids.reshape(h * w, 3).to(device)


def _text_ids(n, device, modality=0.0, diagonal=False):
    ids = torch.zeros(n, 3)
    ids[:, 0] = modality
    if diagonal:
        ids[:, 1] = torch.arange(n)
        ids[:, 2] = torch.arange(n)
    return ids.to(device)


# --------------------------------------------------------------------------------------------- UNets


def _sd15_inputs(g, device, dtype):
    return {
        "sample": seeded_randn((2, 4, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((2, 8, 64), g, device, dtype),
    }


def _sdxl_inputs(g, device, dtype):
    return {
        "sample": seeded_randn((2, 4, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((2, 8, 64), g, device, dtype),
        "added_cond_kwargs": {
            "text_embeds": seeded_randn((2, 64), g, device, dtype),
            "time_ids": _t([[1024, 1024, 0, 0, 1024, 1024]] * 2, device, dtype),
        },
    }


def _ddpm_inputs(g, device, dtype):
    return {"sample": seeded_randn((1, 3, 16, 16), g, device, dtype), "timestep": _t([500], device)}


def _dance_inputs(g, device, dtype):
    # DanceDiffusionPipeline: (B, 2, samples), timestep a float in (0, 1) (IPNDM / v-diffusion)
    return {"sample": seeded_randn((1, 2, 256), g, device, dtype), "timestep": _t([0.5], device)}


def _hopper_inputs(g, device, dtype):
    # ValueGuidedRLPipeline: (B, horizon, transition_dim) permuted to (B, C, horizon), integer timesteps
    return {"sample": seeded_randn((1, 16, 32), g, device, dtype), "timestep": _t([10], device)}


def _unet3d_inputs(g, device, dtype):
    return {
        "sample": seeded_randn((1, 4, 2, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
    }


def _animatediff_inputs(g, device, dtype):
    # AnimateDiffPipeline repeats the prompt embeddings once per frame
    return {
        "sample": seeded_randn((1, 4, 2, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((2, 8, 64), g, device, dtype),
    }


def _svd_inputs(g, device, dtype):
    # StableVideoDiffusionPipeline: latents (B, F, 4 noisy + 4 image-latent channels, h, w), CLIP image
    # embedding
    # as a 1-token sequence, added_time_ids = [fps - 1, motion_bucket_id, noise_aug_strength]
    return {
        "sample": seeded_randn((1, 2, 8, 16, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 1, 64), g, device, dtype),
        "added_time_ids": _t([[6.0, 127.0, 0.02]], device, dtype),
    }


def _controlnetxs_inputs(g, device, dtype):
    return {
        "sample": seeded_randn((1, 4, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "controlnet_cond": seeded_randn((1, 3, 128, 128), g, device, dtype),
        "conditioning_scale": 1.0,
    }


def _sparsectrl_inputs(g, device, dtype):
    # AnimateDiffSparseControlNetPipeline, RGB variant: the condition is VAE latents of the key frames plus a
    # per-frame validity mask; frame 0 is the key frame.
    cond = torch.zeros(1, 4, 2, 16, 16)
    cond[:, :, 0] = torch.randn((1, 4, 16, 16), generator=g, device=g.device)
    mask = torch.zeros(1, 1, 2, 16, 16)
    mask[:, :, 0] = 1
    return {
        "sample": seeded_randn((1, 4, 2, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((2, 8, 64), g, device, dtype),
        "controlnet_cond": cond.to(device, dtype),
        "conditioning_mask": mask.to(device, dtype),
        "conditioning_scale": 1.0,
    }


def _stable_cascade_prior_inputs(g, device, dtype):
    # StableCascadePriorPipeline: image embeddings (B, 16, 24, 24) for 1024px; here 8x8
    return {
        "sample": seeded_randn((1, 16, 8, 8), g, device, dtype),
        "timestep_ratio": _t([0.5], device, dtype),
        "clip_text_pooled": seeded_randn((1, 1, 64), g, device, dtype),
        "clip_text": seeded_randn((1, 8, 64), g, device, dtype),
        "clip_img": seeded_randn((1, 1, 64), g, device, dtype),
    }


def _stable_cascade_decoder_inputs(g, device, dtype):
    # StableCascadeDecoderPipeline: latents (B, 4, h, w) + the prior's image embeddings as `effnet`
    return {
        "sample": seeded_randn((1, 4, 32, 32), g, device, dtype),
        "timestep_ratio": _t([0.5], device, dtype),
        "clip_text_pooled": seeded_randn((1, 1, 64), g, device, dtype),
        "effnet": seeded_randn((1, 16, 8, 8), g, device, dtype),
    }


def _amused_inputs(g, device, dtype):
    # AmusedPipeline: VQ token ids (B, h, w), text hidden states, pooled text embedding, micro-conditioning
    return {
        "input_ids": torch.randint(0, 64, (1, 8, 8), generator=g, device=g.device).to(device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "pooled_text_emb": seeded_randn((1, 64), g, device, dtype),
        "micro_conds": _t([[512, 512, 0, 0, 6]], device, dtype),
    }


def _unidiffuser_inputs(g, device, dtype):
    # UniDiffuserPipeline, joint mode: VAE latents, CLIP image embedding (1 token), caption-decoder text
    # latents
    return {
        "latent_image_embeds": seeded_randn((1, 4, 16, 16), g, device, dtype),
        "image_embeds": seeded_randn((1, 1, 64), g, device, dtype),
        "prompt_embeds": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep_img": _t([500], device),
        "timestep_text": _t([500], device),
        "data_type": _t([1], device),
    }


# --------------------------------------------------------------------------------------------- image DiTs


def _pixart_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 4, 16, 16), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([500], device),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        "encoder_attention_mask": _ones_mask(8, device, dtype),
    }


def _pixart_alpha_inputs(g, device, dtype):
    out = _pixart_inputs(g, device, dtype)
    out["added_cond_kwargs"] = {
        "resolution": _t([[128.0, 128.0]], device, dtype),
        "aspect_ratio": _t([[1.0]], device, dtype),
    }
    return out


def _dit_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 4, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "class_labels": _t([207], device),
    }


def _temporal_inputs(g, device, dtype):
    # as TransformerTemporalModel is called inside UNet3DConditionModel: (batch * frames, C, H, W)
    return {"hidden_states": seeded_randn((2, 64, 8, 8), g, device, dtype), "num_frames": 2}


def _prior_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 64), g, device, dtype),
        "timestep": _t([500], device),
        "proj_embedding": seeded_randn((1, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "attention_mask": _ones_mask(8, device),
    }


def _sd3_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 16, 16, 16), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "pooled_projections": seeded_randn((1, 64), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
    }


def _sd3_controlnet_inputs(g, device, dtype):
    out = _sd3_inputs(g, device, dtype)
    out["controlnet_cond"] = seeded_randn((1, 16, 16, 16), g, device, dtype)
    out["conditioning_scale"] = 1.0
    return out


def _sana_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 32, 16, 16), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
        "encoder_attention_mask": _ones_mask(8, device, dtype),
    }


def _sana_sprint_inputs(g, device, dtype):
    # SanaSprintPipeline: timestep in [0, 1] (TrigFlow), guidance passed as a tensor
    return {
        "hidden_states": seeded_randn((1, 32, 16, 16), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([0.9], device, dtype),
        "guidance": _t([4.5 * 0.1], device, dtype),  # guidance_scale * guidance_embeds_scale
        "encoder_attention_mask": _ones_mask(8, device, dtype),
    }


def _sana_controlnet_inputs(g, device, dtype):
    out = _sana_inputs(g, device, dtype)
    out["controlnet_cond"] = seeded_randn((1, 32, 16, 16), g, device, dtype)
    out["conditioning_scale"] = 1.0
    return out


def _longcat_image_inputs(g, device, dtype):
    # LongCatImagePipeline: packed 2x2 latents (B, h*w, 64), timestep in [0, 1], 3-axis ids, text first
    return {
        "hidden_states": seeded_randn((1, 64, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "img_ids": _flux_ids(8, 8, device, modality=1.0, start=512),
        "txt_ids": _text_ids(8, device, modality=0.0, diagonal=True),
    }


def _ovis_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 64, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "img_ids": _flux_ids(8, 8, device),
        "txt_ids": _text_ids(8, device),
    }


def _qwen_inputs(g, device, dtype):
    # QwenImagePipeline: packed 2x2 latents (B, h*w, 64), timestep / 1000, img_shapes per sample
    return {
        "hidden_states": seeded_randn((1, 64, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_hidden_states_mask": _ones_mask(8, device, torch.long),
        "timestep": _t([0.5], device, dtype),
        "img_shapes": [[(1, 8, 8)]],
    }


def _qwen_edit_inputs(g, device, dtype):
    # QwenImageEditPlusPipeline: [noisy latents | condition-image latents] along the sequence, one shape per
    # image
    return {
        "hidden_states": seeded_randn((1, 128, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_hidden_states_mask": _ones_mask(8, device, torch.long),
        "timestep": _t([0.5], device, dtype),
        "img_shapes": [[(1, 8, 8), (1, 8, 8)]],
    }


def _qwen_controlnet_inputs(g, device, dtype):
    out = _qwen_inputs(g, device, dtype)
    out["controlnet_cond"] = seeded_randn((1, 64, 64), g, device, dtype)
    out["conditioning_scale"] = 1.0
    return out


def _qwen21_inputs(g, device, dtype):
    # QwenImage21Pipeline, text-to-image: the VLM sequence has no image tokens, then one slot per 2x2 group of
    # target
    # tokens (4 tokens per slot)
    img_mask = torch.cat(
        [torch.zeros(1, 8, dtype=torch.bool), torch.ones(1, 64 // 4, dtype=torch.bool)], dim=1
    )
    return {
        "hidden_states": seeded_randn((1, 64, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_hidden_states_mask": _ones_mask(8, device, torch.long),
        "timestep": _t([0.5], device, dtype),
        "img_shapes": [[(1, 8, 8)]],
        "img_mask": img_mask.to(device),
    }


def _nucleus_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 64, 64), g, device, dtype),
        "img_shapes": [(1, 8, 8)],
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_hidden_states_mask": _ones_mask(8, device, torch.long),
        "timestep": _t([0.5], device, dtype),
    }


def _lumina2_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 16, 16, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_attention_mask": _ones_mask(8, device),
    }


def _lumina_next_inputs(g, device, dtype):
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    return {
        "hidden_states": seeded_randn((1, 4, 16, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_mask": _ones_mask(8, device, torch.long),
        # pipeline: get_2d_rotary_pos_embed_lumina(head_dim, 384, 384, linear_factor, ntk_factor)
        "image_rotary_emb": get_2d_rotary_pos_embed_lumina(
            32, 384, 384, linear_factor=1.0, ntk_factor=1.0
        ).to(device),
        "cross_attention_kwargs": {},
    }


def _omnigen_inputs(g, device, dtype):
    # OmniGenPipeline, text-to-image: [text tokens | time token | image tokens] with a causal text part
    text, img = 8, (16 // 2) * (16 // 2)
    total = text + 1 + img
    mask = torch.tril(torch.ones(total, total))
    mask[text:, text:] = 1  # image tokens (and time token) attend bidirectionally
    return {
        "hidden_states": seeded_randn((1, 4, 16, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "input_ids": torch.randint(1, 1000, (1, text), generator=g, device=g.device).to(device),
        "input_img_latents": [],
        "input_image_sizes": {},
        "attention_mask": mask[None].to(device, dtype),
        "position_ids": torch.arange(total, device=device)[None],
    }


def _prx_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 16, 16, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "attention_mask": _ones_mask(8, device),
    }


def _prx_pixel_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 3, 64, 64), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "attention_mask": _ones_mask(8, device),
    }


def _zimage_inputs(g, device, dtype):
    # ZImagePipeline: lists of per-sample tensors, latents (C, F=1, H, W), t in [0, 1] (1 - sigma)
    return {
        "x": [seeded_randn((16, 1, 16, 16), g, device, dtype)],
        "t": _t([0.5], device, dtype),
        "cap_feats": [seeded_randn((8, 64), g, device, dtype)],
    }


def _zimage_controlnet_inputs(g, device, dtype):
    return {
        "x": [seeded_randn((16, 1, 16, 16), g, device, dtype)],
        "t": _t([0.5], device, dtype),
        "cap_feats": [seeded_randn((8, 64), g, device, dtype)],
        "control_context": [seeded_randn((33, 1, 16, 16), g, device, dtype)],
        "conditioning_scale": 1.0,
    }


# --------------------------------------------------------------------------------------------- video DiTs


def _wan_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 16, 2, 8, 8), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
    }


def _wan_i2v_inputs(g, device, dtype):
    # WanImageToVideoPipeline: 16 noisy + 4 mask + 16 image-latent channels, CLIP image tokens (257 x 1280)
    return {
        "hidden_states": seeded_randn((1, 36, 2, 8, 8), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_hidden_states_image": seeded_randn((1, 17, 64), g, device, dtype),
    }


def _wan_vace_inputs(g, device, dtype):
    # WanVACEPipeline: control = 32 (inactive + reactive video latents) + 64 (8x8 mask) channels
    return {
        "hidden_states": seeded_randn((1, 16, 2, 8, 8), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "control_hidden_states": seeded_randn((1, 96, 2, 8, 8), g, device, dtype),
        "control_hidden_states_scale": torch.ones(1, device=device, dtype=dtype),
    }


def _skyreels_inputs(g, device, dtype):
    # SkyReelsV2DiffusionForcingPipeline: per-frame timesteps (B, F) with diffusion forcing, fps as a tensor
    return {
        "hidden_states": seeded_randn((1, 16, 2, 8, 8), g, device, dtype),
        "timestep": _t([[500, 700]], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "enable_diffusion_forcing": True,
        "fps": [0],  # pipeline: [0 if fps == 16 else 1] per sample
    }


def _wan_animate_inputs(g, device, dtype):
    # WanAnimatePipeline: [noisy (16) | reference/condition latents (16) | mask (4)], pose latents one frame
    # short,
    # face video at the motion encoder size
    return {
        "hidden_states": seeded_randn((1, 36, 2, 8, 8), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_hidden_states_image": seeded_randn((1, 17, 64), g, device, dtype),
        "pose_hidden_states": seeded_randn((1, 16, 1, 8, 8), g, device, dtype),
        "face_pixel_values": seeded_randn((1, 3, 1, 32, 32), g, device, dtype),
    }


def _ltx_inputs(g, device, dtype):
    # LTXPipeline: packed latents (B, F*H*W, 128), rope_interpolation_scale = (temporal / frame_rate, 32, 32)
    return {
        "hidden_states": seeded_randn((1, 2 * 4 * 4, 128), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
        "encoder_attention_mask": _ones_mask(8, device, dtype),
        "num_frames": 2,
        "height": 4,
        "width": 4,
        "rope_interpolation_scale": (8 / 25, 32, 32),
    }


def _latte_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 4, 2, 16, 16), g, device, dtype),
        "timestep": _t([500], device),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "enable_temporal_attentions": True,
    }


def _mochi_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 12, 2, 8, 8), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
        "encoder_attention_mask": _ones_mask(8, device),
    }


def _motif_inputs(g, device, dtype):
    # MotifVideoImageToVideoPipeline: [latents (16) | first-frame condition (16) | mask (1)], SigLIP image
    # tokens
    return {
        "hidden_states": seeded_randn((1, 33, 2, 8, 8), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_attention_mask": _ones_mask(8, device, torch.long),
        "image_embeds": seeded_randn((1, 4, 64), g, device, dtype),
    }


def _sana_video_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 16, 2, 8, 8), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
        "encoder_attention_mask": _ones_mask(8, device, dtype),
    }


def _sana_wm_inputs(g, device, dtype):
    # SanaWMPipeline: per-frame timesteps (B, 1, T) with the first (conditioning) frame at 0, text (B, 1, L,
    # D),
    # camera conditions from `prepare_camera` (raymap (B, T, 20) and chunk Pluecker rays (B, 48, T, h, w)).
    # The UCPE ray matrices / absmap are precomputed here in float32 and passed as `cam_pos_embeds` (the
    # forward's
    # documented cache for them): computing them inside the model in bfloat16 fails on CPU (create_grid
    # refuses
    # bfloat16 there) and float32 matrices would meet bfloat16 queries in an einsum.
    import numpy as np
    from diffusers.models.transformers.transformer_sana_wm import _process_camera_conditions_ucpe
    from diffusers.pipelines.sana_wm.cam_utils import prepare_camera

    frames = 9  # 2 latent frames at the VAE's temporal stride 8
    c2w = np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1))
    c2w[:, 2, 3] = np.linspace(0, 0.5, frames)  # dolly forward
    intr = np.tile(np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), (frames, 1))
    cam = prepare_camera(c2w, intr, target_size=(256, 256), vae_stride=(8, 32, 32))
    raymap = cam["raymap"].unsqueeze(0).float()
    raymats, absmap = _process_camera_conditions_ucpe(raymap, 1, (2, 8, 8), (1, 1, 1))
    return {
        "hidden_states": seeded_randn((1, 128, 2, 8, 8), g, device, dtype),
        "timestep": _t([[[0.0, 700.0]]], device),
        "encoder_hidden_states": seeded_randn((1, 1, 8, 64), g, device, dtype),
        "mask": _ones_mask(8, device, torch.long),
        "data_info": {"img_hw": _t([[256.0, 256.0]], device)},
        "camera_conditions": raymap.to(device, dtype),
        "chunk_plucker": cam["chunk_plucker"].unsqueeze(0).to(device, dtype),
        "cam_pos_embeds": {
            "absmap": absmap.permute(0, 4, 1, 2, 3).to(device, dtype),
            # (B, N, 4, 4): the forward squeezes dim 1 of a >4-D "P" until it is 4-D, which never ends
            # otherwise
            "P": raymats.reshape(1, -1, 4, 4).to(device, dtype),
        },
    }


def _sana_wm_refiner_inputs(g, device, dtype):
    # SanaWMLTX2Refiner: packed latent tokens of the active block, per-token timesteps already scaled by 1000,
    # RoPE from `build_rotary_emb_for_absolute_positions` (computed here with the model's own RoPE module).
    from types import SimpleNamespace

    from diffusers.models.transformers.transformer_sana_wm_refiner import (
        SanaWMLTX2AudioVideoRotaryPosEmbed,
        SanaWMLTX2RefinerTransformer3DModel,
    )

    rope = SanaWMLTX2AudioVideoRotaryPosEmbed(
        dim=64,
        patch_size=1,
        patch_size_t=1,
        base_num_frames=20,
        base_height=2048,
        base_width=2048,
        scale_factors=(8, 32, 32),
        theta=10000.0,
        causal_offset=1,
        modality="video",
        double_precision=True,
        rope_type="interleaved",
        num_attention_heads=2,
    )
    rotary = SanaWMLTX2RefinerTransformer3DModel.build_rotary_emb_for_absolute_positions(
        SimpleNamespace(rope=rope),
        batch_size=1,
        frame_positions=[3, 4],
        height=4,
        width=4,
        device=device,
        fps=24.0,
    )
    return {
        "hidden_states": seeded_randn((1, 2 * 4 * 4, 128), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "timestep": torch.full((1, 32), 0.9 * 1000, device=device),
        "video_rotary_emb": tuple(r.to(device, dtype) for r in rotary),
        "encoder_attention_mask": _ones_mask(8, device, torch.long),
    }


def _minimax_h3_inputs(g, device, dtype):
    # One packed sequence [text | audio | video]; two noise levels (video target, audio target), 2x4x4 video
    # grid
    n_text, n_audio, f, h, w = 8, 8, 2, 4, 4
    n_video = f * h * w
    seq = n_text + n_audio + n_video
    text_idx = torch.arange(n_text)
    audio_idx = torch.arange(n_text, n_text + n_audio)
    video_idx = torch.arange(n_text + n_audio, seq)
    tags = torch.empty(seq, dtype=torch.long)
    tags[text_idx], tags[audio_idx], tags[video_idx] = 1, 2, 0
    t_idx = torch.zeros(seq, dtype=torch.long)
    t_idx[audio_idx] = 1
    pos = torch.zeros(seq, 3)
    pos[: n_text + n_audio, 0] = torch.arange(n_text + n_audio, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    pos[video_idx] = grid.reshape(-1, 3).float() + torch.tensor([float(n_text + n_audio), 0.0, 0.0])
    return {
        "hidden_states": seeded_randn((1, n_video, 24 * 4), g, device, dtype),
        "audio_hidden_states": seeded_randn((1, n_audio, 32), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, n_text, 64), g, device, dtype),
        "timestep": _t([0.7, 0.4], device),
        "timestep_indices": t_idx.to(device),
        "token_tags": tags.to(device),
        "position_ids": pos.to(device),
        "video_indices": video_idx.to(device),
        "audio_indices": audio_idx.to(device),
        "text_indices": text_idx.to(device),
    }


def _wan_animate2_inputs(g, device, dtype):
    # One denoising step (kv_cache_mode="cached") of WanAnimate2: the reference pass's per-layer K/V are stood
    # in by
    # random tensors of the shape it writes (B, ref_tokens, heads, head_dim).
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    ref_frames, gen_frames, h, w = 2, 3, 4, 4
    patches = (h // 2) * (w // 2)
    cache = WanAnimate2KVCache(2)
    for layer in cache.layer_caches:
        layer.store(
            seeded_randn((1, ref_frames * patches, 2, 64), g, device, dtype),
            seeded_randn((1, ref_frames * patches, 2, 64), g, device, dtype),
        )
    return {
        "hidden_states": [seeded_randn((16, gen_frames, h, w), g, device, dtype)],
        "timestep": _t([500.0], device, dtype),
        "encoder_hidden_states": [seeded_randn((8, 64), g, device, dtype)],
        "condition_latents": [seeded_randn((20, gen_frames, h, w), g, device, dtype)],
        "kv_cache": cache,
        "kv_cache_mode": "cached",
        "seq_len": gen_frames * patches,
        "encoder_hidden_states_image": seeded_randn((1, 4, 1280), g, device, dtype),
        "reference_grid_sizes": _t([[ref_frames, h // 2, w // 2]], device, torch.long),
        "origin_len": 9,  # (9 // 4 + 1) = 3 latent frames
        "origin_area": [64, 64],  # 64 * 64 // 256 = 16 = h * w latent positions
    }


# --------------------------------------------------------------------------------------------- audio


def _stable_audio_inputs(g, device, dtype):
    # StableAudioPipeline: (B, 64, T) latents, text (B, L, 768), global = seconds start/end embeddings (B, 1,
    # 1536),
    # rotary embedding from get_1d_rotary_pos_embed(head_dim // 2, T + 1, use_real=True,
    # repeat_interleave_real=False)
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    rot = get_1d_rotary_pos_embed(16, 16 + 1, use_real=True, repeat_interleave_real=False)
    return {
        "hidden_states": seeded_randn((1, 64, 16), g, device, dtype),
        "timestep": _t([500.0], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "global_hidden_states": seeded_randn((1, 1, 128), g, device, dtype),
        "rotary_embedding": tuple(r.to(device) for r in rot),
    }


def _stable_audio3_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 64, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "global_hidden_states": seeded_randn((1, 64), g, device, dtype),
        "encoder_attention_mask": _ones_mask(8, device),
    }


def _longcat_audio_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 16, 64), g, device, dtype),
        "encoder_hidden_states": seeded_randn((1, 8, 64), g, device, dtype),
        "encoder_attention_mask": _ones_mask(8, device),
        "timestep": _t([0.5], device, dtype),
        "attention_mask": _ones_mask(16, device),
        "latent_cond": torch.zeros(1, 16, 64, device=device, dtype=dtype),
    }


def _minimax_music3_inputs(g, device, dtype):
    return {
        "hidden_states": seeded_randn((1, 64, 16), g, device, dtype),
        "timestep": _t([0.5], device, dtype),
        "encoder_hidden_states": seeded_randn((1, 16, 64), g, device, dtype),
    }


# --------------------------------------------------------------------------------------------- other


def _rfd4_inputs(g, device, dtype):
    # Prepared molecular tensors for an unconditional 16-residue protein design (no motif/ligand annotations):
    # every required annotation present and empty.
    n = 16
    z = lambda *s, dt=torch.long: torch.zeros(1, *s, dtype=dt, device=device)  # noqa: E731
    conditioning = {
        "is_in_context_conditioning": z(n, dt=torch.bool),
        "supports_local_latent": torch.ones(1, n, dtype=torch.bool, device=device),
        "condition_hbond_1_atom": z(n, 37),
        "condition_pistack_1_atom": z(n, 37),
        "condition_pication_1_atom": z(n, 37),
        "condition_saltbridge_1_atom": z(n, 37),
        "condition_hydrophobic_1_atom": z(n, 37),
        "condition_metal-coord_1_atom": z(n, 37),
        "condition_index-group_1_token": z(n),
        "token_bond_path_length": (torch.arange(n)[:, None] - torch.arange(n)[None]).abs()[None].to(device),
        "molecule_iid": z(n),
        "molecule_entity_id": z(n),
    }
    atom37 = torch.zeros(1, n, 37, dtype=torch.bool, device=device)
    atom37[..., :4] = True  # backbone N, CA, C, O
    return {
        "bb_ca": seeded_randn((1, n, 3), g, device, dtype) * 0.5,
        "local_latents": seeded_randn((1, n, 32), g, device, dtype),
        "bb_ca_time": _t([0.5], device),
        "local_latents_time": _t([0.5], device),
        "padding_mask": torch.ones(1, n, dtype=torch.bool, device=device),
        "token_type": z(n),
        "atom37_mask": atom37,
        "conditioning": conditioning,
    }


# --------------------------------------------------------------------------------------------- entries

_UNET = {"family": "unet"}
_IMG = {"family": "dit-image"}
_VID = {"family": "dit-video"}
_AUD = {"family": "dit-audio"}
_CN = {"family": "controlnet"}
_OTHER = {"family": "other"}

ENTRIES = [
    # ---------------------------------------------------------------- UNets
    ZooModel(
        "sd15-unet-tiny",
        "UNet2DConditionModel",
        dict(
            sample_size=16,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            cross_attention_dim=64,
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        _sd15_inputs,
        "16x16 latents, batch 2 (CFG), 8 text tokens",
        notes=dict(_UNET),
    ),
    ZooModel(
        "sdxl-unet-tiny",
        "UNet2DConditionModel",
        dict(
            sample_size=16,
            block_out_channels=(64, 128),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            transformer_layers_per_block=(1, 2),
            attention_head_dim=(2, 4),
            cross_attention_dim=64,
            addition_embed_type="text_time",
            addition_time_embed_dim=16,
            projection_class_embeddings_input_dim=64 + 6 * 16,
            use_linear_projection=True,
            norm_num_groups=32,
        ),
        _sdxl_inputs,
        "16x16 latents, batch 2 (CFG), 8 text tokens, text_time added embeddings",
        notes=dict(_UNET),
    ),
    ZooModel(
        "ddpm-tiny",
        "UNet2DModel",
        dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            block_out_channels=(64, 128),
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            attention_head_dim=None,
            norm_num_groups=32,
        ),
        _ddpm_inputs,
        "16x16 pixels, batch 1",
        notes={
            "family": "unet",
            "fp8pass_error": (
                "RuntimeError 'Expected X.is_contiguous(memory_format)' in aten.native_group_norm on the "
                "(non-contiguous) output of the AttnDownBlock2D attention under inner='aot_eager' "
                "(raised through fp8pass/backend.py:434); plain backend='aot_eager' fails the same way, so "
                "it is "
                "an AOT-autograd/CPU bfloat16 group_norm issue, not fp8pass's"
            ),
        },
    ),
    ZooModel(
        "dance-diffusion-tiny",
        "UNet1DModel",
        dict(
            sample_size=256,
            in_channels=2,
            out_channels=2,
            # the original model's 16 Fourier timestep features, concatenated as channels
            extra_in_channels=16,
            time_embedding_type="fourier",
            time_embedding_dim=16,
            flip_sin_to_cos=True,
            use_timestep_embedding=False,
            block_out_channels=(64, 64, 128),
            down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
            up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
            mid_block_type="UNetMidBlock1D",
            act_fn=None,
            norm_num_groups=8,
            layers_per_block=1,
        ),
        _dance_inputs,
        "stereo audio, 256 samples, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "diffuser-hopper-tiny",
        "UNet1DModel",
        dict(
            sample_size=32,
            in_channels=16,
            out_channels=16,
            time_embedding_type="positional",
            use_timestep_embedding=True,
            flip_sin_to_cos=False,
            freq_shift=1,
            block_out_channels=(64, 128),
            down_block_types=("DownResnetBlock1D", "DownResnetBlock1D"),
            up_block_types=("UpResnetBlock1D",),
            mid_block_type="MidResTemporalBlock1D",
            out_block_type="OutConv1DBlock",
            act_fn="mish",
            norm_num_groups=8,
            layers_per_block=1,
        ),
        _hopper_inputs,
        "planning horizon 32, 16 transition dims, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "modelscope-t2v-tiny",
        "UNet3DConditionModel",
        dict(
            sample_size=16,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            layers_per_block=1,
            cross_attention_dim=64,
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        _unet3d_inputs,
        "2 frames of 16x16 latents, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "animatediff-tiny",
        "UNetMotionModel",
        dict(
            sample_size=16,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
            up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"),
            layers_per_block=1,
            cross_attention_dim=64,
            num_attention_heads=2,
            motion_num_attention_heads=2,
            motion_max_seq_length=32,
            use_motion_mid_block=True,
            norm_num_groups=32,
        ),
        _animatediff_inputs,
        "2 frames of 16x16 latents, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "svd-tiny",
        "UNetSpatioTemporalConditionModel",
        dict(
            sample_size=16,
            in_channels=8,
            out_channels=4,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            layers_per_block=1,
            cross_attention_dim=64,
            num_attention_heads=(2, 4),
            addition_time_embed_dim=32,
            projection_class_embeddings_input_dim=3 * 32,
            num_frames=2,
        ),
        _svd_inputs,
        "2 frames of 16x16 latents, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "controlnet-xs-tiny",
        "UNetControlNetXSModel",
        dict(
            sample_size=16,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64,
            num_attention_heads=2,
            norm_num_groups=32,
            upcast_attention=True,
            use_linear_projection=True,
            ctrl_block_out_channels=(16, 32),
            ctrl_num_attention_heads=4,
            ctrl_max_norm_num_groups=16,
            ctrl_conditioning_embedding_out_channels=(16, 32, 48, 64),
        ),
        _controlnetxs_inputs,
        "16x16 latents (128x128 control image), batch 1",
        notes=dict(_CN),
    ),
    ZooModel(
        "sparsectrl-tiny",
        "SparseControlNetModel",
        dict(
            in_channels=4,
            conditioning_channels=4,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
            layers_per_block=1,
            cross_attention_dim=64,
            attention_head_dim=8,
            motion_num_attention_heads=2,
            motion_max_seq_length=32,
            norm_num_groups=32,
            use_simplified_condition_embedding=True,
            concat_conditioning_mask=True,
        ),
        _sparsectrl_inputs,
        "2 frames of 16x16 latents, key frame 0, batch 1",
        notes=dict(_CN),
    ),
    ZooModel(
        "stable-cascade-prior-tiny",
        "StableCascadeUNet",
        dict(
            in_channels=16,
            out_channels=16,
            timestep_ratio_embedding_dim=64,
            patch_size=1,
            conditioning_dim=64,
            block_out_channels=(64, 64),
            num_attention_heads=(2, 2),
            down_num_layers_per_block=(1, 1),
            up_num_layers_per_block=(1, 1),
            down_blocks_repeat_mappers=(1, 1),
            up_blocks_repeat_mappers=(1, 1),
            block_types_per_layer=(
                ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"),
                ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"),
            ),
            clip_text_in_channels=64,
            clip_text_pooled_in_channels=64,
            clip_image_in_channels=64,
            clip_seq=4,
            kernel_size=3,
            dropout=(0.0, 0.0),
            self_attn=True,
            timestep_conditioning_type=("sca", "crp"),
            switch_level=(False,),
        ),
        _stable_cascade_prior_inputs,
        "8x8 image-embedding latents, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "stable-cascade-decoder-tiny",
        "StableCascadeUNet",
        dict(
            in_channels=4,
            out_channels=4,
            timestep_ratio_embedding_dim=64,
            patch_size=4,
            conditioning_dim=64,
            block_out_channels=(64, 128),
            num_attention_heads=(0, 2),
            down_num_layers_per_block=(1, 1),
            up_num_layers_per_block=(1, 1),
            down_blocks_repeat_mappers=(1, 1),
            up_blocks_repeat_mappers=(2, 1),
            block_types_per_layer=(
                ("SDCascadeResBlock", "SDCascadeTimestepBlock"),
                ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"),
            ),
            clip_text_pooled_in_channels=64,
            clip_seq=4,
            effnet_in_channels=16,
            pixel_mapper_in_channels=3,
            kernel_size=3,
            dropout=(0.0, 0.0),
            self_attn=True,
            timestep_conditioning_type=("sca",),
        ),
        _stable_cascade_decoder_inputs,
        "32x32 latents (patch 4) + 8x8 prior embeddings, batch 1",
        notes=dict(_UNET),
    ),
    ZooModel(
        "amused-tiny",
        "UVit2DModel",
        dict(
            hidden_size=128,
            use_bias=False,
            cond_embed_dim=64,
            micro_cond_encode_dim=16,
            micro_cond_embed_dim=5 * 16,
            encoder_hidden_size=64,
            vocab_size=72,
            codebook_size=64,
            in_channels=64,
            block_out_channels=64,
            num_res_blocks=1,
            downsample=True,
            upsample=True,
            block_num_heads=2,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            sample_size=8,
        ),
        _amused_inputs,
        "8x8 VQ tokens, batch 1",
        notes={"family": "unet", "output": "model(**inputs)"},
    ),
    ZooModel(
        "unidiffuser-tiny",
        "UniDiffuserModel",
        dict(
            text_dim=64,
            clip_img_dim=64,
            num_text_tokens=8,
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=4,
            out_channels=4,
            num_layers=3,
            norm_num_groups=32,
            sample_size=16,
            patch_size=2,
            activation_fn="gelu",
            attention_bias=True,
            norm_type="layer_norm",
            block_type="unidiffuser",
            pre_layer_norm=False,
            use_timestep_embedding=False,
            norm_elementwise_affine=True,
            use_patch_pos_embed=False,
            ff_final_dropout=True,
            use_data_type_embedding=True,
        ),
        _unidiffuser_inputs,
        "16x16 latents + 1 CLIP token + 8 text tokens, batch 1",
        notes={"family": "other", "output": "model(**inputs)[0]"},
    ),
    # ---------------------------------------------------------------- image DiTs
    ZooModel(
        "pixart-tiny",
        "PixArtTransformer2DModel",
        dict(
            sample_size=16,
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            cross_attention_dim=64,
            caption_channels=64,
            patch_size=2,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            attention_bias=True,
            interpolation_scale=None,
            use_additional_conditions=False,
        ),
        _pixart_inputs,
        "16x16 latents, 8 text tokens, batch 1 (PixArt-Sigma)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "pixart-alpha-tiny",
        "PixArtTransformer2DModel",
        dict(
            sample_size=16,
            num_attention_heads=3,
            attention_head_dim=32,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            cross_attention_dim=96,
            caption_channels=64,
            patch_size=2,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            attention_bias=True,
            use_additional_conditions=True,
        ),
        _pixart_alpha_inputs,
        "16x16 latents, 8 text tokens, resolution/aspect-ratio conditions, batch 1 (PixArt-Alpha 1024)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "transformer2d-dit-tiny",
        "Transformer2DModel",
        dict(
            sample_size=16,
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            patch_size=2,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_zero",
            norm_elementwise_affine=False,
            attention_bias=True,
        ),
        _dit_inputs,
        "16x16 latents, class-conditional, batch 1 (DiT)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "transformer-temporal-tiny",
        "TransformerTemporalModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=64,
            norm_num_groups=32,
            num_layers=1,
            cross_attention_dim=None,
            double_self_attention=True,
            activation_fn="geglu",
        ),
        _temporal_inputs,
        "2 frames of 8x8x64 features (as inside UNet3DConditionModel)",
        notes=dict(_OTHER),
    ),
    ZooModel(
        "unclip-prior-tiny",
        "PriorTransformer",
        dict(
            num_attention_heads=4,
            attention_head_dim=32,
            num_layers=2,
            embedding_dim=64,
            num_embeddings=8,
            additional_embeddings=4,
            time_embed_act_fn="silu",
            norm_in_type=None,
            embedding_proj_norm_type=None,
            encoder_hid_proj_type="linear",
            added_emb_type="prd",
        ),
        _prior_inputs,
        "64-d CLIP image embedding, 8 text tokens, batch 1 (unCLIP/Karlo prior = class defaults)",
        notes=dict(_OTHER),
    ),
    ZooModel(
        "sd3-tiny",
        "SD3Transformer2DModel",
        dict(
            sample_size=16,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            caption_projection_dim=64,
            pooled_projection_dim=64,
            out_channels=16,
            pos_embed_max_size=32,
        ),
        _sd3_inputs,
        "16x16 latents, 8 text tokens, batch 1 (SD3 medium)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "sd35-tiny",
        "SD3Transformer2DModel",
        dict(
            sample_size=16,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            caption_projection_dim=64,
            pooled_projection_dim=64,
            out_channels=16,
            pos_embed_max_size=32,
            dual_attention_layers=(0,),
            qk_norm="rms_norm",
        ),
        _sd3_inputs,
        "16x16 latents, 8 text tokens, batch 1 (SD3.5 medium: dual attention + RMS qk norm)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "sd3-controlnet-tiny",
        "SD3ControlNetModel",
        dict(
            sample_size=16,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            caption_projection_dim=64,
            pooled_projection_dim=64,
            out_channels=16,
            pos_embed_max_size=32,
            extra_conditioning_channels=0,
        ),
        _sd3_controlnet_inputs,
        "16x16 latents + 16x16 control latents, batch 1 (InstantX SD3 ControlNet)",
        notes=dict(_CN),
    ),
    ZooModel(
        "sana-tiny",
        "SanaTransformer2DModel",
        dict(
            sample_size=16,
            in_channels=32,
            out_channels=32,
            num_attention_heads=2,
            attention_head_dim=32,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=32,
            cross_attention_dim=64,
            caption_channels=64,
            mlp_ratio=2.5,
            patch_size=1,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        ),
        _sana_inputs,
        "16x16 DC-AE latents (32 ch), 8 text tokens, batch 1 (Sana 1.0)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "sana-sprint-tiny",
        "SanaTransformer2DModel",
        dict(
            sample_size=16,
            in_channels=32,
            out_channels=32,
            num_attention_heads=2,
            attention_head_dim=32,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=32,
            cross_attention_dim=64,
            caption_channels=64,
            mlp_ratio=2.5,
            patch_size=1,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            guidance_embeds=True,
            guidance_embeds_scale=0.1,
            qk_norm="rms_norm_across_heads",
        ),
        _sana_sprint_inputs,
        "16x16 DC-AE latents, 8 text tokens, batch 1 (Sana-Sprint: guidance embeds, qk norm)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "sana-controlnet-tiny",
        "SanaControlNetModel",
        dict(
            sample_size=16,
            in_channels=32,
            out_channels=32,
            num_attention_heads=2,
            attention_head_dim=32,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=32,
            cross_attention_dim=64,
            caption_channels=64,
            mlp_ratio=2.5,
            patch_size=1,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        ),
        _sana_controlnet_inputs,
        "16x16 latents + 16x16 control latents, batch 1",
        notes=dict(_CN),
    ),
    ZooModel(
        "longcat-image-tiny",
        "LongCatImageTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            pooled_projection_dim=64,
            axes_dims_rope=(8, 12, 12),
        ),
        _longcat_image_inputs,
        "64 packed image tokens (8x8) + 8 text tokens, batch 1",
        notes=dict(_IMG),
    ),
    ZooModel(
        "ovis-image-tiny",
        "OvisImageTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=64,
            out_channels=64,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            axes_dims_rope=(8, 12, 12),
        ),
        _ovis_inputs,
        "64 packed image tokens (8x8) + 8 text tokens, batch 1",
        notes=dict(_IMG),
    ),
    ZooModel(
        "qwenimage-tiny",
        "QwenImageTransformer2DModel",
        dict(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            guidance_embeds=False,
            axes_dims_rope=(8, 12, 12),
        ),
        _qwen_inputs,
        "64 packed image tokens (8x8) + 8 text tokens, batch 1",
        notes=dict(_IMG),
    ),
    ZooModel(
        "qwenimage-edit-tiny",
        "QwenImageTransformer2DModel",
        dict(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            guidance_embeds=False,
            axes_dims_rope=(8, 12, 12),
            zero_cond_t=True,
        ),
        _qwen_edit_inputs,
        "64 target + 64 condition-image tokens (8x8 each) + 8 text tokens, batch 1 (Edit-2511: zero_cond_t)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "qwenimage-controlnet-tiny",
        "QwenImageControlNetModel",
        dict(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            axes_dims_rope=(8, 12, 12),
            extra_condition_channels=0,
        ),
        _qwen_controlnet_inputs,
        "64 packed image tokens + 64 control tokens + 8 text tokens, batch 1 (ControlNet-Union)",
        notes=dict(_CN),
    ),
    ZooModel(
        "qwenimage21-tiny",
        "QwenImage21Transformer2DModel",
        dict(
            patch_size=1,
            in_channels=64,
            out_channels=64,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            context_in_dim=64,
            mlp_ratio=3,
            axes_dims_rope=(8, 12, 12),
            causal_condition=True,
        ),
        _qwen21_inputs,
        "64 packed image tokens (8x8) + 8 text tokens, batch 1",
        notes={
            "family": "dit-image",
            "graph_break": (
                "Tensor.tolist() on the bool image-pad mask in build_token_metadata "
                "(diffusers/models/transformers/transformer_qwenimage21.py:689); also data-dependent "
                "repeat_interleave/nonzero on img_mask in forward; fullgraph=False works with 11 breaks"
            ),
        },
    ),
    ZooModel(
        "nucleus-moe-tiny",
        "NucleusMoEImageTransformer2DModel",
        dict(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=5,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=64,
            axes_dims_rope=(8, 12, 12),
            mlp_ratio=4.0,
            moe_enabled=True,
            dense_moe_strategy="leave_first_three_and_last_block_dense",
            num_experts=8,
            moe_intermediate_dim=64,
            capacity_factors=2.0,
        ),
        _nucleus_inputs,
        "64 packed image tokens (8x8) + 8 text tokens, batch 1 (3 dense + 1 MoE + 1 dense blocks)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "lumina2-tiny",
        "Lumina2Transformer2DModel",
        dict(
            sample_size=16,
            patch_size=2,
            in_channels=16,
            hidden_size=128,
            num_layers=2,
            num_refiner_layers=1,
            num_attention_heads=4,
            num_kv_heads=2,
            multiple_of=32,
            norm_eps=1e-5,
            axes_dim_rope=(8, 12, 12),
            axes_lens=(300, 512, 512),
            cap_feat_dim=64,
        ),
        _lumina2_inputs,
        "16x16 latents, 8 text tokens, batch 1",
        notes={
            "family": "dit-image",
            "graph_break": (
                "per-sample sequence lengths come from encoder_attention_mask as Python ints, then "
                "max(seq_lengths) (diffusers/models/transformers/transformer_lumina2.py:519, data-dependent "
                "u0 + 64); fullgraph=False works with 2 breaks"
            ),
        },
    ),
    ZooModel(
        "lumina-next-tiny",
        "LuminaNextDiT2DModel",
        dict(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            hidden_size=128,
            num_layers=2,
            num_attention_heads=4,
            num_kv_heads=1,
            multiple_of=32,
            norm_eps=1e-5,
            learn_sigma=True,
            qk_norm=True,
            cross_attention_dim=64,
        ),
        _lumina_next_inputs,
        "16x16 latents, 8 text tokens, batch 1",
        notes=dict(_IMG),
    ),
    ZooModel(
        "omnigen-tiny",
        "OmniGenTransformer2DModel",
        dict(
            in_channels=4,
            patch_size=2,
            hidden_size=64,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=128,
            num_layers=2,
            pad_token_id=0,
            vocab_size=1024,
            max_position_embeddings=1024,
            original_max_position_embeddings=256,
            rope_scaling={"long_factor": [1.0] * 16, "short_factor": [1.0] * 16, "type": "su"},
            pos_embed_max_size=32,
            time_step_dim=64,
        ),
        _omnigen_inputs,
        "16x16 latents + 8 text tokens, batch 1",
        notes={
            "family": "dit-image",
            "cast_buffers": True,
            "zoo_issue": (
                "patch_embedding.pos_embed is a persistent buffer computed in float32 by __init__ (a "
                "checkpoint "
                "loads it in bfloat16); zoo.build leaves it float32, the image tokens become float32 and "
                "time_token's bfloat16 Linear fails ('mat1 and mat2 must have the same dtype'). Needs "
                "persistent "
                "float buffers cast to the model dtype after construction."
            ),
            "graph_break": (
                "data-dependent branch `if torch.max(position_ids) + 1 > original_max_position_embeddings` "
                "in "
                "OmniGenSuScaledRotaryEmbedding (diffusers/models/transformers/transformer_omnigen.py:155); "
                "fullgraph=False works with 1 break"
            ),
        },
    ),
    ZooModel(
        "prx-tiny",
        "PRXTransformer2DModel",
        dict(
            in_channels=16,
            patch_size=2,
            context_in_dim=64,
            hidden_size=64,
            mlp_ratio=3.5,
            num_heads=2,
            depth=2,
            axes_dim=[16, 16],
        ),
        _prx_inputs,
        "16x16 latents, 8 text tokens, batch 1",
        notes=dict(_IMG),
    ),
    ZooModel(
        "prx-pixel-tiny",
        "PRXTransformer2DModel",
        dict(
            in_channels=3,
            patch_size=16,
            context_in_dim=64,
            hidden_size=64,
            mlp_ratio=3.5,
            num_heads=2,
            depth=2,
            axes_dim=[16, 16],
            bottleneck_size=64,
            resolution_embeds=True,
        ),
        _prx_pixel_inputs,
        "64x64 RGB pixels (patch 16), 8 text tokens, batch 1 (PRXPixel: bottleneck img_in, resolution "
        "embeds)",
        notes=dict(_IMG),
    ),
    ZooModel(
        "zimage-tiny",
        "ZImageTransformer2DModel",
        dict(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=64,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            qk_norm=True,
            cap_feat_dim=64,
            axes_dims=[8, 12, 12],
            axes_lens=[256, 64, 64],
        ),
        _zimage_inputs,
        "16x16 latents, 8 text tokens, batch 1",
        notes={
            "family": "dit-image",
            "fp8pass_error": (
                "on a never-run model: Dynamo 'Unsupported context manager' (torch.device) at "
                "diffusers/models/transformers/transformer_z_image.py:330; after one eager call fp8pass "
                "converts "
                "37/37 (the ModuleDict key '2-1' no longer fails)"
            ),
            "compile_note": (
                "the first call must be eager: RopeEmbedder builds its freqs_cis cache lazily under "
                "`with torch.device('cpu')` (diffusers/models/transformers/transformer_z_image.py:330), "
                "which Dynamo "
                "cannot enter, so compiling a never-run model fails (fullgraph or not)"
            ),
        },
    ),
    # ---------------------------------------------------------------- video DiTs
    ZooModel(
        "wan21-t2v-tiny",
        "WanTransformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=16,
            out_channels=16,
            text_dim=64,
            freq_dim=64,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
        ),
        _wan_inputs,
        "2 latent frames of 8x8, 8 text tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "wan21-i2v-tiny",
        "WanTransformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=36,
            out_channels=16,
            text_dim=64,
            freq_dim=64,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            image_dim=64,
            added_kv_proj_dim=64,
        ),
        _wan_i2v_inputs,
        "2 latent frames of 8x8 (36 ch), 8 text + 17 CLIP image tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "wan-vace-tiny",
        "WanVACETransformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=16,
            out_channels=16,
            text_dim=64,
            freq_dim=64,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            vace_layers=[0],
            vace_in_channels=96,
        ),
        _wan_vace_inputs,
        "2 latent frames of 8x8 + 96-channel control, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "skyreels-v2-tiny",
        "SkyReelsV2Transformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=16,
            out_channels=16,
            text_dim=64,
            freq_dim=64,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            inject_sample_info=True,
            num_frame_per_block=1,
        ),
        _skyreels_inputs,
        "2 latent frames of 8x8, per-frame timesteps (diffusion forcing), batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "wan-animate-tiny",
        "WanAnimateTransformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=36,
            latent_channels=16,
            out_channels=16,
            text_dim=64,
            freq_dim=64,
            ffn_dim=128,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            image_dim=64,
            motion_encoder_channel_sizes={"4": 64, "8": 64, "16": 64, "32": 64},
            motion_encoder_size=32,
            motion_style_dim=64,
            motion_dim=16,
            motion_encoder_dim=64,
            face_encoder_hidden_dim=64,
            face_encoder_num_heads=2,
            inject_face_latents_blocks=1,
            motion_encoder_batch_size=8,
        ),
        _wan_animate_inputs,
        "2 latent frames of 8x8 (36 ch), pose latents, 32x32 face video, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "wan-animate2-tiny",
        "WanAnimate2Transformer3DModel",
        dict(
            patch_size=(1, 2, 2),
            text_len=16,
            in_dim=36,
            dim=128,
            ffn_dim=256,
            freq_dim=64,
            text_dim=64,
            out_dim=16,
            num_heads=2,
            num_layers=2,
            cross_attn_norm=True,
            use_img_emb=True,
        ),
        _wan_animate2_inputs,
        "one cached denoising step: 3 latent frames of 4x4, 2 cached reference frames, batch 1",
        notes={
            "family": "dit-video",
            "output": "model(**inputs, return_dict=False)[0][0]",
            "graph_break": (
                "reference_grid[0][axis].item() (refer_offset_w=-1) becomes a key of rope_freqs_cache "
                "(diffusers/models/transformers/transformer_wan_animate_2.py:706, data-dependent u0); "
                "further "
                "grid_sizes.tolist() breaks in the attention processor and unpatchify; fullgraph=False works "
                "with 10 breaks"
            ),
        },
    ),
    ZooModel(
        "ltx-video-tiny",
        "LTXVideoTransformer3DModel",
        dict(
            in_channels=128,
            out_channels=128,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=32,
            cross_attention_dim=64,
            num_layers=2,
            activation_fn="gelu-approximate",
            qk_norm="rms_norm_across_heads",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            caption_channels=64,
            attention_bias=True,
            attention_out_bias=True,
        ),
        _ltx_inputs,
        "2 latent frames of 4x4 (128 ch), 8 text tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "latte-tiny",
        "LatteTransformer3DModel",
        dict(
            sample_size=16,
            num_attention_heads=2,
            attention_head_dim=32,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            patch_size=2,
            cross_attention_dim=64,
            caption_channels=64,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            video_length=2,
        ),
        _latte_inputs,
        "2 frames of 16x16 latents, 8 text tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "mochi-tiny",
        "MochiTransformer3DModel",
        dict(
            patch_size=2,
            num_attention_heads=4,
            attention_head_dim=32,
            num_layers=2,
            pooled_projection_dim=64,
            in_channels=12,
            qk_norm="rms_norm",
            text_embed_dim=64,
            time_embed_dim=64,
            activation_fn="swiglu",
            max_sequence_length=256,
        ),
        _mochi_inputs,
        "2 latent frames of 8x8 (12 ch), 8 text tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "motif-video-tiny",
        "MotifVideoTransformer3DModel",
        dict(
            in_channels=33,
            out_channels=16,
            num_attention_heads=2,
            attention_head_dim=32,
            num_layers=1,
            num_single_layers=3,
            num_decoder_layers=1,
            mlp_ratio=4.0,
            patch_size=2,
            patch_size_t=1,
            qk_norm="rms_norm",
            norm_type="layer_norm",
            text_embed_dim=64,
            image_embed_dim=64,
            rope_theta=256.0,
            rope_axes_dim=(8, 12, 12),
            enable_text_cross_attention_dual=True,
            enable_text_cross_attention_single=True,
        ),
        _motif_inputs,
        "2 latent frames of 8x8 (33 ch), 8 text + 4 image tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "sana-video-tiny",
        "SanaVideoTransformer3DModel",
        dict(
            sample_size=8,
            in_channels=16,
            out_channels=16,
            num_attention_heads=2,
            attention_head_dim=32,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=32,
            cross_attention_dim=64,
            caption_channels=64,
            mlp_ratio=2.5,
            patch_size=(1, 2, 2),
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            qk_norm="rms_norm_across_heads",
        ),
        _sana_video_inputs,
        "2 latent frames of 8x8, 8 text tokens, batch 1",
        notes=dict(_VID),
    ),
    ZooModel(
        "sana-wm-tiny",
        "SanaWMTransformer3DModel",
        dict(
            in_channels=128,
            num_layers=2,
            hidden_size=64,
            num_attention_heads=2,
            patch_size=(1, 1, 1),
            softmax_every_n=2,
            linear_head_dim=32,
            ffn_type="GLUMBConvTemp",
            t_kernel_size=3,
            conv_kernel_size=4,
            k_conv_only=True,
            pos_embed_type="wan_rope",
            qk_norm=True,
            cross_norm=True,
            y_norm=True,
            cam_attn_compress=1,
            use_chunk_plucker_post_attn=True,
            chunk_plucker_channels=48,
            chunk_plucker_post_attn_blocks=20,
            fp32_attention=True,
            image_size=256,
            caption_channels=64,
            mlp_ratio=3.0,
        ),
        _sana_wm_inputs,
        "2 latent frames of 8x8 (128 ch), camera trajectory, 8 text tokens, batch 1 (1 GDN + 1 softmax "
        "block)",
        notes=dict(_VID),
    ),
    ZooModel(
        "sana-wm-refiner-tiny",
        "SanaWMLTX2RefinerTransformer3DModel",
        dict(
            in_channels=128,
            out_channels=128,
            num_attention_heads=2,
            attention_head_dim=32,
            cross_attention_dim=64,
            audio_in_channels=64,
            audio_out_channels=64,
            audio_num_attention_heads=2,
            audio_attention_head_dim=32,
            audio_cross_attention_dim=64,
            num_layers=2,
            caption_channels=64,
        ),
        _sana_wm_refiner_inputs,
        "one AR block: 2 latent frames of 4x4 (128 ch), 8 text tokens, batch 1, no KV cache",
        notes=dict(_VID),
    ),
    ZooModel(
        "minimax-h3-tiny",
        "MiniMaxH3Transformer3DModel",
        dict(
            num_attention_heads=3,
            attention_head_dim=64,
            hidden_size=128,
            num_layers=2,
            num_refiner_layers=1,
            ffn_dim=336,
            in_channels=24,
            audio_in_channels=32,
            patch_size=(1, 2, 2),
            text_dim=64,
            freq_dim=64,
            time_embed_hidden_dim=128,
            time_embed_dim=64,
            rope_freq_dim=8,
        ),
        _minimax_h3_inputs,
        "packed sequence: 8 text + 8 audio + 32 video tokens (2x4x4), batch 1",
        notes={"family": "dit-video"},  # returns (video, audio); [0] is the video velocity
    ),
    # ---------------------------------------------------------------- audio
    ZooModel(
        "stable-audio-tiny",
        "StableAudioDiTModel",
        dict(
            sample_size=16,
            in_channels=64,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=4,
            num_key_value_attention_heads=2,
            out_channels=64,
            cross_attention_dim=64,
            time_proj_dim=64,
            global_states_input_dim=128,
            cross_attention_input_dim=64,
        ),
        _stable_audio_inputs,
        "16 latent frames of 64 ch, 8 text tokens, batch 1",
        notes=dict(_AUD),
    ),
    ZooModel(
        "stable-audio3-tiny",
        "StableAudio3DiTModel",
        dict(
            io_channels=64,
            patch_size=1,
            embed_dim=64,
            depth=2,
            num_heads=2,
            cond_token_dim=64,
            global_cond_dim=64,
            local_add_cond_dim=65,
            timestep_features_dim=64,
            ff_mult=4.0,
            num_memory_tokens=4,
            use_differential_attention=True,
        ),
        _stable_audio3_inputs,
        "16 latent frames of 64 ch, 8 text tokens, batch 1",
        notes=dict(_AUD),
    ),
    ZooModel(
        "longcat-audio-tiny",
        "LongCatAudioDiTTransformer",
        dict(
            dit_dim=64,
            dit_depth=2,
            dit_heads=2,
            dit_text_dim=64,
            latent_dim=64,
            adaln_type="global",
            adaln_use_text_cond=True,
            long_skip=True,
            text_conv=True,
            qk_norm=True,
            cross_attn=True,
            cross_attn_norm=False,
            use_latent_condition=True,
            ff_mult=4.0,
        ),
        _longcat_audio_inputs,
        "16 latent frames of 64 ch, 8 text tokens, batch 1",
        notes=dict(_AUD),
    ),
    ZooModel(
        "minimax-music3-tiny",
        "MiniMaxMusic3Transformer1DModel",
        dict(
            in_channels=64,
            condition_dim=64,
            num_layers=2,
            num_attention_heads=2,
            attention_head_dim=32,
            ff_inner_dim=256,
            rotary_dim=16,
            fourier_embedding_dim=64,
        ),
        _minimax_music3_inputs,
        "16 latent frames of 64 ch with frame-aligned conditioning, batch 1",
        notes=dict(_AUD),
    ),
    # ---------------------------------------------------------------- other
    ZooModel(
        "rfd4-proteina-tiny",
        "RFD4ProteinaTransformer",
        dict(
            nlayers=2,
            token_dim=64,
            nheads=2,
            dim_cond=64,
            pair_repr_dim=64,
            tri_mult_c=64,
            update_pair_repr_every_n=2,
        ),
        _rfd4_inputs,
        "16-token protein, unconditional, batch 1",
        notes={"family": "other"},  # returns (backbone, local_latents, sequence_logits, insertion_logits)
    ),
]

UNSUPPORTED: dict[str, str] = {
    "ZImageControlNetModel": (
        "not runnable from its config alone: __init__ leaves the patch/timestep/caption embedders, rope and "
        "noise/context refiners as None (they are shared with the base model through "
        "ZImageControlNetModel.from_transformer(controlnet, transformer)); forward then raises "
        "ValueError('Required modules are `None`, use `from_transformer` to share required modules from "
        "`transformer`.')"
    ),
}
