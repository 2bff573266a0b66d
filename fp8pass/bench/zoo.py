"""Diffusion denoisers built from their published configs, with random weights and real-shape inputs.

No model hub is needed: speed, memory and numerical fidelity depend on the architecture and the
weight statistics, not on trained values. Every model has a ``-tiny`` twin of the same class (same
block and layer kinds, small widths and depths) that runs on a CPU in seconds.

    >>> model, inputs = build("sd15-tiny")          # doctest: +SKIP
    >>> out = model(**inputs).sample                # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..sources import pretrained_dtype

__all__ = [
    "DEFAULT_MODELS",
    "MODELS",
    "ZooModel",
    "build",
    "build_entry",
    "build_from_config",
    "build_inputs",
    "build_module",
    "build_model",
    "entry_inputs",
    "build_pipeline",
    "default_model",
    "init_weights",
    "match_pretrained_dtypes",
    "seeded_randn",
    "tiny_twin",
]


@dataclass(frozen=True)
class ZooModel:
    """A denoiser: its diffusers class, config and a maker of example inputs."""

    name: str
    cls: str
    config: dict[str, Any]
    inputs: Callable[..., dict[str, Any]]
    shape_note: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def _unet_inputs(
    batch: int, latent: int, text_len: int, text_dim: int, text_time: tuple[int, int] | None = None
):
    def make(g: torch.Generator, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        out = {
            "sample": seeded_randn((batch, 4, latent, latent), g, device, dtype),
            "timestep": torch.full((batch,), 500, device=device),
            "encoder_hidden_states": seeded_randn((batch, text_len, text_dim), g, device, dtype),
        }
        if text_time:
            pooled, n_time = text_time
            out["added_cond_kwargs"] = {
                "text_embeds": seeded_randn((batch, pooled), g, device, dtype),
                "time_ids": torch.tensor(
                    [[1024, 1024, 0, 0, 1024, 1024][:n_time]] * batch, device=device, dtype=dtype
                ),
            }
        return out

    return make


def _flux_inputs(image_tokens: int, text_tokens: int, channels: int, text_dim: int, pooled: int):
    def make(g: torch.Generator, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        side = int(math.isqrt(image_tokens))
        ids = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(
            -1, 2
        )
        img_ids = torch.cat([torch.zeros(image_tokens, 1), ids.float()], dim=1).to(device)
        return {
            "hidden_states": seeded_randn((1, image_tokens, channels), g, device, dtype),
            "encoder_hidden_states": seeded_randn((1, text_tokens, text_dim), g, device, dtype),
            "pooled_projections": seeded_randn((1, pooled), g, device, dtype),
            "timestep": torch.tensor([0.5], device=device, dtype=dtype),
            "img_ids": img_ids,
            "txt_ids": torch.zeros(text_tokens, 3, device=device),
            # 4.0, not flux-dev's 3.5: the model computes guidance * 1000 in the model's dtype, and
            # 3500 is not a bf16 number: eager rounds it to 3504, Inductor keeps 3500 inside a
            # fused kernel. On seeded weights that input difference alone put compiled bf16 7.5 dB
            # from eager bf16, so every SQNR measured it and not FP8; 4000 is exact in bf16.
            "guidance": torch.tensor([4.0], device=device, dtype=dtype),
        }

    return make


def _sd3_inputs(latent: int, text_tokens: int, text_dim: int, pooled: int):
    def make(g: torch.Generator, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        return {
            "hidden_states": seeded_randn((1, 16, latent, latent), g, device, dtype),
            "encoder_hidden_states": seeded_randn((1, text_tokens, text_dim), g, device, dtype),
            "pooled_projections": seeded_randn((1, pooled), g, device, dtype),
            "timestep": torch.tensor([500.0], device=device, dtype=dtype),
        }

    return make


def _wan_inputs(frames: int, height: int, width: int, text_tokens: int, text_dim: int):
    def make(g: torch.Generator, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        return {
            "hidden_states": seeded_randn((1, 16, frames, height, width), g, device, dtype),
            "timestep": torch.tensor([500], device=device),
            "encoder_hidden_states": seeded_randn((1, text_tokens, text_dim), g, device, dtype),
        }

    return make


def seeded_randn(
    shape: tuple[int, ...], g: torch.Generator, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``torch.randn`` drawn from ``g`` (on its own device), then moved to ``device`` in ``dtype``:
    the same values whatever the target device."""
    return torch.randn(shape, generator=g, device=g.device).to(device, dtype)


_FLUX_DEV = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)

_SDXL_BLOCKS = {
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
}

MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel(
            "sd15",
            "UNet2DConditionModel",
            dict(
                block_out_channels=(320, 640, 1280, 1280),
                layers_per_block=2,
                cross_attention_dim=768,
                attention_head_dim=8,
                sample_size=64,
            ),
            _unet_inputs(batch=2, latent=64, text_len=77, text_dim=768),
            "512x512, batch 2 (classifier-free guidance)",
        ),
        ZooModel(
            "sd15-tiny",
            "UNet2DConditionModel",
            dict(
                block_out_channels=(64, 128),
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                layers_per_block=1,
                cross_attention_dim=64,
                attention_head_dim=8,
                sample_size=16,
            ),
            _unet_inputs(batch=2, latent=16, text_len=8, text_dim=64),
            "16x16 latents, batch 2",
        ),
        ZooModel(
            "sdxl",
            "UNet2DConditionModel",
            dict(
                block_out_channels=(320, 640, 1280),
                **_SDXL_BLOCKS,
                layers_per_block=2,
                transformer_layers_per_block=(1, 2, 10),
                attention_head_dim=(5, 10, 20),
                cross_attention_dim=2048,
                addition_embed_type="text_time",
                addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816,
                use_linear_projection=True,
                sample_size=128,
            ),
            _unet_inputs(batch=2, latent=128, text_len=77, text_dim=2048, text_time=(1280, 6)),
            "1024x1024, batch 2",
        ),
        ZooModel(
            "sdxl-tiny",
            "UNet2DConditionModel",
            dict(
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
            ),
            _unet_inputs(batch=2, latent=16, text_len=8, text_dim=64, text_time=(32, 6)),
            "16x16 latents, batch 2",
        ),
        ZooModel(
            "flux-dev",
            "FluxTransformer2DModel",
            _FLUX_DEV,
            _flux_inputs(image_tokens=4096, text_tokens=512, channels=64, text_dim=4096, pooled=768),
            "1024x1024 (4096 image + 512 text tokens), batch 1",
        ),
        ZooModel(
            "flux-dev-512",
            "FluxTransformer2DModel",
            _FLUX_DEV,
            _flux_inputs(image_tokens=1024, text_tokens=512, channels=64, text_dim=4096, pooled=768),
            "512x512 (1024 image + 512 text tokens), batch 1",
        ),
        ZooModel(
            "flux-dev-128-2blocks",
            "FluxTransformer2DModel",
            {**_FLUX_DEV, "num_layers": 1, "num_single_layers": 1},
            _flux_inputs(image_tokens=64, text_tokens=32, channels=64, text_dim=4096, pooled=768),
            "flux-dev's layers at full width, 1 double + 1 single block (of 19 + 38), "
            "128x128 (64 image + 32 text tokens), batch 1: a few seconds a step on a 2-core CPU "
            "without native bf16 matmuls",
        ),
        ZooModel(
            "flux-dev-512-3blocks",
            "FluxTransformer2DModel",
            {**_FLUX_DEV, "num_layers": 1, "num_single_layers": 2},
            _flux_inputs(image_tokens=1024, text_tokens=512, channels=64, text_dim=4096, pooled=768),
            "flux-dev's layers at full width, 1 double + 2 single blocks (of 19 + 38), "
            "512x512 (1024 image + 512 text tokens), batch 1: a depth a CPU steps in seconds",
        ),
        ZooModel(
            "flux-dev-tiny",
            "FluxTransformer2DModel",
            dict(
                patch_size=1,
                in_channels=16,
                num_layers=1,
                num_single_layers=2,
                attention_head_dim=32,
                num_attention_heads=2,
                joint_attention_dim=64,
                pooled_projection_dim=32,
                guidance_embeds=True,
                axes_dims_rope=(8, 12, 12),
            ),
            _flux_inputs(image_tokens=64, text_tokens=8, channels=16, text_dim=64, pooled=32),
            "64 image + 8 text tokens, batch 1",
        ),
        ZooModel(
            "sd35-medium",
            "SD3Transformer2DModel",
            dict(
                sample_size=128,
                patch_size=2,
                in_channels=16,
                num_layers=24,
                attention_head_dim=64,
                num_attention_heads=24,
                joint_attention_dim=4096,
                caption_projection_dim=1536,
                pooled_projection_dim=2048,
                out_channels=16,
                pos_embed_max_size=384,
                dual_attention_layers=tuple(range(13)),
                qk_norm="rms_norm",
            ),
            _sd3_inputs(latent=128, text_tokens=333, text_dim=4096, pooled=2048),
            "1024x1024, 333 text tokens, batch 1",
        ),
        ZooModel(
            "sd35-medium-tiny",
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
                pooled_projection_dim=32,
                out_channels=16,
                pos_embed_max_size=32,
                dual_attention_layers=(0,),
                qk_norm="rms_norm",
            ),
            _sd3_inputs(latent=16, text_tokens=8, text_dim=64, pooled=32),
            "16x16 latents, batch 1",
        ),
        ZooModel(
            "wan21-1.3b",
            "WanTransformer3DModel",
            dict(
                patch_size=(1, 2, 2),
                num_attention_heads=12,
                attention_head_dim=128,
                in_channels=16,
                out_channels=16,
                text_dim=4096,
                freq_dim=256,
                ffn_dim=8960,
                num_layers=30,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
            ),
            _wan_inputs(frames=5, height=60, width=104, text_tokens=512, text_dim=4096),
            "480p (60x104 latents), 5 latent frames (17 video frames), batch 1",
        ),
        ZooModel(
            "wan21-1.3b-tiny",
            "WanTransformer3DModel",
            dict(
                patch_size=(1, 2, 2),
                num_attention_heads=2,
                attention_head_dim=32,
                in_channels=16,
                out_channels=16,
                text_dim=64,
                freq_dim=32,
                ffn_dim=128,
                num_layers=2,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
            ),
            _wan_inputs(frames=2, height=8, width=8, text_tokens=8, text_dim=64),
            "2 latent frames of 8x8, batch 1",
        ),
    ]
}


def build_model(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> torch.nn.Module:
    """The denoiser ``name`` on ``device`` in ``dtype``, in eval mode without grad, with seeded
    random weights (see :func:`init_weights`), laid out as ``from_pretrained(torch_dtype=dtype)``
    lays out a real checkpoint (see :func:`match_pretrained_dtypes`).

    Parameters are created on ``device`` directly in ``dtype`` (a full-size model never exists in
    float32 or on the CPU), and buffers the constructor computes stay valid.
    """
    return build_from_config(_entry(name).cls, _entry(name).config, device, dtype, seed)


def tiny_twin(name: str) -> str | None:
    """The ``-tiny`` model of ``name``'s class (``flux-dev-tiny`` for every flux-dev entry), or
    None when ``name`` is tiny itself or its class has none."""
    if name.endswith("-tiny"):
        return None
    if f"{name}-tiny" in MODELS:
        return f"{name}-tiny"
    cls = MODELS[name].cls
    return next((n for n, m in MODELS.items() if n.endswith("-tiny") and m.cls == cls), None)


def build_from_config(
    cls: str | type, config: dict[str, Any], device: str | torch.device, dtype: torch.dtype, seed: int = 0
) -> torch.nn.Module:
    """:func:`build_model` for any diffusers class (or its name) and config."""
    import diffusers

    cls = getattr(diffusers, cls) if isinstance(cls, str) else cls
    return build_module(lambda: cls(**config), device, dtype, seed)


def build_module(
    make: Callable[[], torch.nn.Module],
    device: str | torch.device,
    dtype: torch.dtype,
    seed: int = 0,
) -> torch.nn.Module:
    """:func:`build_from_config` for any constructor ``make`` (a transformers model takes a config
    object, not keywords), the tensors laid out as that library's ``from_pretrained`` would
    (:func:`match_pretrained_dtypes`)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), _SkipParameterInit():
            model = make()
    finally:
        torch.set_default_dtype(previous)
    match_pretrained_dtypes(model, dtype)
    init_weights(model, seed)
    return model.eval().requires_grad_(False)


def match_pretrained_dtypes(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """What ``from_pretrained(torch_dtype=dtype)`` gives each tensor of a real checkpoint: floating
    parameters and persistent buffers in ``dtype``, except those under the class's
    ``_keep_in_fp32_modules``, which stay float32; buffers the constructor computes and does not
    save keep theirs."""
    saved = set(model.state_dict(keep_vars=True))
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not t.is_floating_point() or name not in saved:
                continue
            want = pretrained_dtype(model, name, dtype)
            if t.dtype != want:
                module_name, _, attr = name.rpartition(".")
                module = model.get_submodule(module_name)
                if isinstance(t, torch.nn.Parameter):
                    module._parameters[attr] = torch.nn.Parameter(t.to(want), requires_grad=t.requires_grad)
                else:
                    module._buffers[attr] = t.to(want)


def build_inputs(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 1
) -> dict[str, Any]:
    """Keyword arguments for the denoiser's forward at the model's real shape (on ``meta``: the
    same shapes and dtypes, no values; what tracing a model's structure on ``meta`` needs)."""
    return entry_inputs(_entry(name), device, dtype, seed)


def entry_inputs(
    entry: ZooModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 1
) -> dict[str, Any]:
    device = torch.device(device)
    if device.type == "meta":
        return _to_meta(entry_inputs(entry, "cpu", dtype, seed))
    g = torch.Generator(device=device).manual_seed(seed)
    return entry.inputs(g, device, dtype)


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_meta(v) for v in value)
    return value


def build(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """``(model, inputs)`` for ``name``."""
    return build_entry(_entry(name), device, dtype, seed)


def build_entry(
    entry: ZooModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model, inputs)`` for any :class:`ZooModel` (the zoo's, or the catalogue's)."""
    model = build_from_config(entry.cls, entry.config, device, dtype, seed)
    return model, entry_inputs(entry, device, dtype, seed + 1)


#: Weight statistics of :func:`init_weights`, chosen to look like trained checkpoints where it
#: matters to FP8: output channels of one weight differ in magnitude (so per-channel scales differ),
#: biases and norm gains are far enough from 0 and 1 that dropping or mangling them shows.
LINEAR_STD = 0.02  # the usual transformer init, close to trained linear weights
ROW_LOG_STD = 0.5  # each output channel's magnitude: exp(N(0, 0.5)), ~0.4x-2.7x across channels
BIAS_STD = 0.2  # trained biases (and AdaLN modulation biases, i.e. shift / scale / gate) are O(0.1)
NORM_GAIN_STD = 0.2  # one-dimensional weights (norm gains): 1 + N(0, 0.2)


@torch.no_grad()
def init_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Deterministic weights with checkpoint-like statistics, in place on the model's device.

    Linear weights ~ N(0, 0.02) and convolution weights ~ N(0, 1/sqrt(fan_in)), each output
    channel scaled by exp(N(0, 0.5)); biases ~ N(0, 0.2); one-dimensional weights (norm gains)
    ~ 1 + N(0, 0.2); other parameters ~ N(0, 0.02). See the constants above for why.
    """
    generators: dict[torch.device, torch.Generator] = {}
    for name, p in model.named_parameters():
        if p.is_meta:  # a skeleton: no values to set
            continue
        g = generators.setdefault(p.device, torch.Generator(device=p.device).manual_seed(seed))
        if name.endswith("bias"):
            value = _randn32(p.shape, g) * BIAS_STD
        elif p.dim() == 1:
            value = 1 + _randn32(p.shape, g) * NORM_GAIN_STD
        elif p.dim() >= 2 and not isinstance(_owner(model, name), torch.nn.Embedding):
            std = LINEAR_STD if p.dim() == 2 else 1 / math.sqrt(p[0].numel())
            rows = torch.exp(_randn32((p.shape[0],), g) * ROW_LOG_STD).view(-1, *[1] * (p.dim() - 1))
            value = _randn32(p.shape, g) * std * rows
        else:
            value = _randn32(p.shape, g) * LINEAR_STD
        p.copy_(value)


def _randn32(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=g.device, dtype=torch.float32)


def _owner(model: torch.nn.Module, param_name: str) -> torch.nn.Module:
    return model.get_submodule(param_name.rpartition(".")[0])


class _SkipParameterInit(TorchFunctionMode):
    """While a model is built, in-place ops on its parameters do nothing: the constructor's own
    initialisation (kaiming etc.) is thrown away by :func:`init_weights`, and at full size it
    would take minutes. A torch-function mode is thread-local and scoped to the build (patching
    ``torch.nn.init`` would change it for the whole process)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if (
            name.endswith("_")
            and not name.endswith("__")
            and args
            and isinstance(args[0], torch.nn.Parameter)
        ):
            return args[0]
        return func(*args, **(kwargs or {}))


#: what ``python -m fp8pass bench`` and ``layers`` run by default, per device type
#: What ``python -m fp8pass bench`` runs without --model. On a CPU, flux-dev's layers at full width
#: (3072 hidden, weights up to 3072x12288) in 3 of its 57 blocks, at 512x512: layers large enough
#: that FP8 storage matters and small layers' fixed costs do not decide the verdict, in a few
#: minutes on 2 cores (a tiny model's 64-wide layers made the first screen say the opposite of
#: what holds at scale).
DEFAULT_MODELS = {"cuda": "flux-dev", "cpu": "flux-dev-128-2blocks"}


def default_model(device_type: str) -> str:
    """The zoo model the commands use by default on a device of this type."""
    return DEFAULT_MODELS.get(device_type, DEFAULT_MODELS["cpu"])


def _entry(name: str) -> ZooModel:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


_PIPELINES = {"sd15-tiny": "StableDiffusionPipeline", "flux-dev-tiny": "FluxPipeline"}


def build_pipeline(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """A full diffusers pipeline around the tiny denoiser ``name`` (a tiny VAE, the model's usual
    scheduler, no text encoders), and keyword arguments for calling it with precomputed prompt
    embeddings (so no tokenizer download is needed), a fixed seed and a few steps.
    The caller passes a ``generator`` of its own when it needs one per call."""
    import diffusers

    if name not in _PIPELINES:
        raise ValueError(f"pipelines exist for {', '.join(_PIPELINES)}; got {name!r}")
    denoiser = build_model(name, device, dtype, seed)
    g = torch.Generator(device=torch.device(device)).manual_seed(seed + 1)
    dev = torch.device(device)
    flux = name.startswith("flux")
    with torch.device(device):
        vae = diffusers.AutoencoderKL(
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=16,
            sample_size=32,
            shift_factor=0.0 if flux else None,
        )
    init_weights(vae, seed + 2)
    vae = vae.to(dtype).eval().requires_grad_(False)
    if flux:
        pipe = diffusers.FluxPipeline(
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            transformer=denoiser,
        )
        call = {
            "prompt_embeds": seeded_randn((1, 8, 64), g, dev, dtype),
            "pooled_prompt_embeds": seeded_randn((1, 32), g, dev, dtype),
            "guidance_scale": 3.5,
        }
    else:
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            unet=denoiser,
            scheduler=diffusers.DDIMScheduler(clip_sample=False),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        call = {
            "prompt_embeds": seeded_randn((1, 8, 64), g, dev, dtype),
            "negative_prompt_embeds": seeded_randn((1, 8, 64), g, dev, dtype),
            "guidance_scale": 7.5,
        }
    pipe.set_progress_bar_config(disable=True)
    call.update(height=32, width=32, num_inference_steps=4, output_type="pt")
    return pipe, call
