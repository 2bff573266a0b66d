"""Complete diffusers pipelines, text encoders and tokenizers included, built from small configs;
and the published configs of the whole pipelines, for byte counts on ``meta``.

:func:`zoo.build_pipeline` feeds precomputed prompt embeddings to a denoiser and a VAE. FP8 for a
whole pipeline also has to cover its text encoders (a T5-XXL or UMT5-XXL encoder outweighs most
denoisers), and a test of it has to run what users run: ``pipe(prompt=...)``. So here every
component is the real class: transformers text encoders with small configs, tokenizers of the
expected class over tiny in-memory vocabularies (:mod:`.offline_tokenizers`), the pipeline's VAE
class and its published scheduler. Weights come from :func:`zoo.init_weights` (seeded).

    >>> pipe, call = build_tiny_pipeline("flux-dev-tiny")       # doctest: +SKIP
    >>> image = pipe(**call).images                            # doctest: +SKIP

Tiny widths are multiples of 16 and most linear weights hold >= 4096 elements (hidden 64,
intermediate 128), so fp8pass's default ``min_weight_numel=4096`` converts them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from . import offline_tokenizers as tok
from .zoo import MODELS, build_from_config, build_module

__all__ = [
    "FULL_SIZE",
    "PIPELINES",
    "PipelineSpec",
    "build_full_size_component",
    "build_tiny_pipeline",
    "text_encoders",
]

Components = Callable[[torch.device, torch.dtype, int], dict[str, Any]]


@dataclass(frozen=True)
class PipelineSpec:
    """A tiny pipeline: its diffusers class, the zoo denoiser it wraps (with the text-facing widths
    changed where the tiny text encoders need it, see each spec), a maker of the other components
    and the call that runs it."""

    name: str
    pipeline: str
    denoiser: str
    make_components: Components
    call: dict[str, Any]
    denoiser_overrides: dict[str, Any] = field(default_factory=dict)
    denoiser_key: str = "transformer"


# -- tiny text encoders -------------------------------------------------------------------------


def _transformers_model(cls_name: str, config: Any, device, dtype, seed: int) -> torch.nn.Module:
    """A transformers model from a config object, built like :func:`zoo.build_model` (directly in
    ``dtype`` on ``device``, seeded checkpoint-like weights), dtypes as transformers'
    ``from_pretrained`` lays them out (:func:`fp8pass.sources.pretrained_dtype`)."""
    import transformers

    cls = getattr(transformers, cls_name)
    return build_module(lambda: cls(config), device, dtype, seed)


def _clip_config(tokenizer, act: str) -> Any:
    """CLIP-L-like (``quick_gelu``) or OpenCLIP-like (``gelu``) text tower: hidden 64, 2 layers
    (SDXL and SD3 read the penultimate hidden state), 77 positions as published, projection as
    wide as the hidden state (as in both published towers)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _clip(cls_name: str, device, dtype, seed: int, *, pad="<|endoftext|>", act="quick_gelu"):
    """``(text encoder, tokenizer)`` for one CLIP tower."""
    tokenizer = tok.clip_tokenizer(pad_token=pad)
    config = _clip_config(tokenizer, act)
    return _transformers_model(cls_name, config, device, dtype, seed), tokenizer


def _t5(cls_name: str, d_model: int, device, dtype, seed: int):
    """``(encoder, tokenizer)``: a T5 v1.1 / UMT5 encoder (gated GELU, relative position buckets
    as published), 2 layers of ``d_model`` with 4 heads."""
    import transformers

    tokenizer = tok.t5_tokenizer()
    config_cls = transformers.UMT5Config if cls_name.startswith("UMT5") else transformers.T5Config
    config = config_cls(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        use_cache=False,
    )
    return _transformers_model(cls_name, config, device, dtype, seed), tokenizer


def _qwen25_vl(device, dtype, seed: int):
    """``(Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer)``: the text model at hidden 128 with
    grouped-query attention (4 query / 2 key-value heads of 32, as 28 / 4 of 128 in Qwen2.5-VL-7B;
    128 keeps the key / value weights at 64 x 128 >= 4096 elements) and multimodal RoPE sections
    (4, 6, 6) of 16 frequencies, as (16, 24, 24) of 64; a one-block vision tower, which text-only
    prompts never run."""
    from transformers import Qwen2_5_VLConfig

    tokenizer = tok.qwen2_tokenizer()
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
        bos_token_id=tokenizer.pad_token_id,  # <|endoftext|>, as published
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    return _transformers_model("Qwen2_5_VLForConditionalGeneration", config, device, dtype, seed), tokenizer


# -- tiny VAEs and schedulers ---------------------------------------------------------------------


def _autoencoder_kl(device, dtype, seed: int, latent_channels: int = 4, **factors) -> torch.nn.Module:
    """An ``AutoencoderKL`` with the published latent channels and scaling / shift factors
    (``factors``) but two levels, not four: images 2x the latents, not 8x, so the zoo's tiny
    denoisers (16x16 latents) see 32x32 images."""
    config = dict(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=32,
        latent_channels=latent_channels,
        **factors,
    )
    return build_from_config("AutoencoderKL", config, device, dtype, seed)


def _wan_style_vae(cls_name: str, device, dtype, seed: int) -> torch.nn.Module:
    """``AutoencoderKLWan`` / ``AutoencoderKLQwenImage`` with the published layout (16 latent
    channels, four levels: 8x spatial, 4x temporal, default latents mean / std) at base width 16."""
    config = dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1)
    return build_from_config(cls_name, config, device, dtype, seed)


def _scheduler(cls_name: str, **config) -> Any:
    import diffusers

    return getattr(diffusers, cls_name)(**config)


#: runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0 scheduler_config.json
_SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


# -- the six pipelines ----------------------------------------------------------------------------


def _sd15(device, dtype, seed) -> dict[str, Any]:
    text_encoder, tokenizer = _clip("CLIPTextModel", device, dtype, seed + 1)
    return dict(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        vae=_autoencoder_kl(device, dtype, seed + 2, scaling_factor=0.18215),
        # SD1.5 scheduler_config.json: PNDM, PLMS steps only
        scheduler=_scheduler(
            "PNDMScheduler", **_SD_BETAS, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _sdxl(device, dtype, seed) -> dict[str, Any]:
    text_encoder, tokenizer = _clip("CLIPTextModel", device, dtype, seed + 1)
    text_encoder_2, tokenizer_2 = _clip(
        "CLIPTextModelWithProjection", device, dtype, seed + 2, pad="!", act="gelu"
    )
    return dict(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        vae=_autoencoder_kl(device, dtype, seed + 3, scaling_factor=0.13025),  # SDXL vae/config.json
        scheduler=_scheduler(
            "EulerDiscreteScheduler", **_SD_BETAS, steps_offset=1, timestep_spacing="leading"
        ),
    )


def _flux(device, dtype, seed) -> dict[str, Any]:
    text_encoder, tokenizer = _clip("CLIPTextModel", device, dtype, seed + 1)
    text_encoder_2, tokenizer_2 = _t5("T5EncoderModel", 64, device, dtype, seed + 2)
    # FLUX.1-dev vae/config.json: 16 channels, no quant convs
    vae = _autoencoder_kl(
        device, dtype, seed + 3, 16, scaling_factor=0.3611, shift_factor=0.1159, **_NO_QUANT_CONV
    )
    return dict(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        vae=vae,
        # FLUX.1-dev scheduler/scheduler_config.json
        scheduler=_scheduler(
            "FlowMatchEulerDiscreteScheduler",
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        ),
    )


def _sd3(device, dtype, seed) -> dict[str, Any]:
    text_encoder, tokenizer = _clip("CLIPTextModelWithProjection", device, dtype, seed + 1)
    text_encoder_2, tokenizer_2 = _clip(
        "CLIPTextModelWithProjection", device, dtype, seed + 2, pad="!", act="gelu"
    )
    text_encoder_3, tokenizer_3 = _t5("T5EncoderModel", 128, device, dtype, seed + 3)
    # stable-diffusion-3.5-medium vae/config.json: 16 channels, no quant convs
    vae = _autoencoder_kl(
        device, dtype, seed + 4, 16, scaling_factor=1.5305, shift_factor=0.0609, **_NO_QUANT_CONV
    )
    return dict(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
        vae=vae,
        scheduler=_scheduler("FlowMatchEulerDiscreteScheduler", shift=3.0),  # SD3.5 scheduler_config.json
    )


def _wan(device, dtype, seed) -> dict[str, Any]:
    text_encoder, tokenizer = _t5("UMT5EncoderModel", 64, device, dtype, seed + 1)
    return dict(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        vae=_wan_style_vae("AutoencoderKLWan", device, dtype, seed + 2),
        # Wan2.1-T2V-1.3B-Diffusers scheduler_config.json: UniPC on flow sigmas, shift 3 (480p)
        scheduler=_scheduler(
            "UniPCMultistepScheduler", prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
    )


def _qwen_image(device, dtype, seed) -> dict[str, Any]:
    text_encoder, tokenizer = _qwen25_vl(device, dtype, seed + 1)
    return dict(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        vae=_wan_style_vae("AutoencoderKLQwenImage", device, dtype, seed + 2),
        # Qwen-Image scheduler/scheduler_config.json
        scheduler=_scheduler(
            "FlowMatchEulerDiscreteScheduler",
            shift=1.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=0.9,
            base_image_seq_len=256,
            max_image_seq_len=8192,
            shift_terminal=0.02,
            time_shift_type="exponential",
        ),
    )


_NO_QUANT_CONV = dict(use_quant_conv=False, use_post_quant_conv=False)
_IMAGE = dict(prompt=tok.PROMPT, height=32, width=32, num_inference_steps=2, output_type="pt")

#: A small QwenImageTransformer2DModel: the published layout (patch 2, 64 = 16 latent channels x
#: 2x2 input channels, 16 out, no guidance embedding) at 2 layers of 2 heads x 32, RoPE axes
#: summing to the head width, text width 128 from the tiny Qwen2.5-VL (published: 3584).
QWEN_IMAGE_TINY = dict(
    patch_size=2,
    in_channels=64,
    out_channels=16,
    num_layers=2,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=128,
    guidance_embeds=False,
    axes_dims_rope=(8, 12, 12),
)

PIPELINES: dict[str, PipelineSpec] = {
    s.name: s
    for s in [
        PipelineSpec(
            name="sd15-tiny",
            pipeline="StableDiffusionPipeline",
            denoiser="sd15-tiny",
            denoiser_key="unet",
            make_components=_sd15,
            call={**_IMAGE, "guidance_scale": 7.5},
        ),
        PipelineSpec(
            name="sdxl-tiny",
            pipeline="StableDiffusionXLPipeline",
            denoiser="sdxl-tiny",
            denoiser_key="unet",
            # the two CLIP towers' hidden states side by side (64 + 64, as 768 + 1280 = 2048), and
            # the pooled bigG projection (64) plus six time ids x 8 in the added embedding
            denoiser_overrides=dict(
                cross_attention_dim=128, projection_class_embeddings_input_dim=64 + 6 * 8
            ),
            make_components=_sdxl,
            call={**_IMAGE, "guidance_scale": 5.0},
        ),
        PipelineSpec(
            name="flux-dev-tiny",
            pipeline="FluxPipeline",
            denoiser="flux-dev-tiny",
            # 16 latent channels packed 2x2 (64, as published) and the pooled CLIP width (64)
            denoiser_overrides=dict(in_channels=64, pooled_projection_dim=64),
            make_components=_flux,
            call={**_IMAGE, "guidance_scale": 3.5, "max_sequence_length": 16},
        ),
        PipelineSpec(
            name="sd3-tiny",
            pipeline="StableDiffusion3Pipeline",
            denoiser="sd35-medium-tiny",
            # T5 width 128 = the CLIP towers' 64 + 64 (published: 768 + 1280 zero-padded to 4096),
            # pooled = both projections (64 + 64, as 768 + 1280 = 2048)
            denoiser_overrides=dict(joint_attention_dim=128, pooled_projection_dim=128),
            make_components=_sd3,
            call={**_IMAGE, "guidance_scale": 7.0, "max_sequence_length": 16},
        ),
        PipelineSpec(
            name="wan-tiny",
            pipeline="WanPipeline",
            denoiser="wan21-1.3b-tiny",
            make_components=_wan,
            call={**_IMAGE, "num_frames": 5, "guidance_scale": 5.0, "max_sequence_length": 16},
        ),
        PipelineSpec(
            name="qwen-image-tiny",
            pipeline="QwenImagePipeline",
            denoiser="",  # no zoo entry: QWEN_IMAGE_TINY
            make_components=_qwen_image,
            # Qwen-Image's recommended true CFG with a blank negative prompt
            call={**_IMAGE, "negative_prompt": " ", "true_cfg_scale": 4.0, "max_sequence_length": 16},
        ),
    ]
}


def build_tiny_pipeline(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """``(pipe, call_kwargs)``: the whole pipeline ``name`` on ``device`` in ``dtype`` with seeded
    weights, and keyword arguments that run it from ``prompt="a photo of a cat"`` for two steps at
    32x32 (Wan: 5 frames), ``output_type="pt"``, with a generator seeded ``seed``.

    The generator advances as the pipeline draws its noise: a second call with the same dict gives
    another image. To repeat an image pass ``generator=torch.Generator().manual_seed(seed)``."""
    import diffusers

    spec = _spec(name)
    dev = torch.device(device)
    components = spec.make_components(dev, dtype, seed)
    components[spec.denoiser_key] = _tiny_denoiser(spec, dev, dtype, seed)
    pipe = getattr(diffusers, spec.pipeline)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe, {**spec.call, "generator": torch.Generator(device="cpu").manual_seed(seed)}


def _tiny_denoiser(spec: PipelineSpec, device, dtype, seed: int) -> torch.nn.Module:
    if not spec.denoiser:
        return build_from_config("QwenImageTransformer2DModel", QWEN_IMAGE_TINY, device, dtype, seed)
    entry = MODELS[spec.denoiser]
    return build_from_config(entry.cls, {**entry.config, **spec.denoiser_overrides}, device, dtype, seed)


def text_encoders(pipe: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's text encoders by component name (``text_encoder``, ``text_encoder_2``, ...),
    in order; diffusers names them so in every pipeline."""
    return {
        name: module
        for name, module in sorted(pipe.components.items())
        if name.startswith("text_encoder") and isinstance(module, torch.nn.Module)
    }


def _spec(name: str) -> PipelineSpec:
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name]


# -- full size --------------------------------------------------------------------------------------

#: openai/clip-vit-large-patch14 text_config (= text_encoder/config.json of SD1.5, SDXL, FLUX.1-dev
#: and SD3.5): CLIP ViT-L/14's text tower.
CLIP_L = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
#: stable-diffusion-xl-base-1.0 text_encoder_2/config.json (= SD3.5's text_encoder_2): OpenCLIP
#: ViT-bigG/14's text tower.
CLIP_BIG_G = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
)
#: google/t5-v1_1-xxl (= FLUX.1-dev text_encoder_2/config.json, SD3.5 text_encoder_3): T5 v1.1 XXL.
T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    tie_word_embeddings=False,
)
#: google/umt5-xxl (= Wan2.1-T2V-1.3B-Diffusers text_encoder/config.json): T5-XXL's shape with a
#: 256k multilingual vocabulary and a relative-position bias in every layer.
UMT5_XXL = {**T5_XXL, "vocab_size": 256384}
#: stable-diffusion-xl-base-1.0 vae/config.json; FLUX.1-dev and SD3.5 differ in the latents.
_SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=1024,
)
SDXL_VAE = {**_SD_VAE, "latent_channels": 4, "scaling_factor": 0.13025}
FLUX_VAE = {
    **_SD_VAE,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    **_NO_QUANT_CONV,
}
SD35_VAE = {
    **_SD_VAE,
    "latent_channels": 16,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    **_NO_QUANT_CONV,
}
#: Wan2.1-T2V-1.3B-Diffusers vae/config.json: the class defaults (base 96, 16 latent channels,
#: dims x(1, 2, 4, 4), two residual blocks per level, 4x temporal compression).
WAN_VAE: dict[str, Any] = {}

#: Every weight-holding component of four published pipelines, as ``(class name in diffusers or
#: transformers, config)``: what a whole pipeline weighs, built on ``meta`` without a download.
#: Denoisers are the zoo's full-size configs.
FULL_SIZE: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "flux-dev": {
        "transformer": ("FluxTransformer2DModel", MODELS["flux-dev"].config),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("T5EncoderModel", T5_XXL),
        "vae": ("AutoencoderKL", FLUX_VAE),
    },
    "sdxl": {
        "unet": ("UNet2DConditionModel", MODELS["sdxl"].config),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIG_G),
        "vae": ("AutoencoderKL", SDXL_VAE),
    },
    "sd35-medium": {
        "transformer": ("SD3Transformer2DModel", MODELS["sd35-medium"].config),
        "text_encoder": ("CLIPTextModelWithProjection", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIG_G),
        "text_encoder_3": ("T5EncoderModel", T5_XXL),
        "vae": ("AutoencoderKL", SD35_VAE),
    },
    "wan21-1.3b": {
        "transformer": ("WanTransformer3DModel", MODELS["wan21-1.3b"].config),
        "text_encoder": ("UMT5EncoderModel", UMT5_XXL),
        "vae": ("AutoencoderKLWan", WAN_VAE),
    },
}


def build_full_size_component(
    pipeline: str, component: str, device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16
) -> torch.nn.Module:
    """The published ``component`` of ``pipeline`` (see :data:`FULL_SIZE`); on ``meta`` by default,
    where it has every parameter's shape and dtype and no storage."""
    import diffusers
    import transformers

    if pipeline not in FULL_SIZE or component not in FULL_SIZE[pipeline]:
        known = {p: list(c) for p, c in FULL_SIZE.items()}
        raise ValueError(f"unknown component {pipeline!r} / {component!r}; known: {known}")
    cls_name, config = FULL_SIZE[pipeline][component]
    if hasattr(diffusers, cls_name):
        return build_from_config(cls_name, config, device, dtype)
    config_cls = getattr(transformers, cls_name).config_class
    return _transformers_model(cls_name, config_cls(**config), device, dtype, seed=0)
