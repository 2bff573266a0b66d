"""fp8pass.bench.pipelines: six whole pipelines run from a prompt, and full-size components weigh
what the published models weigh."""

import pytest
import torch

from fp8pass.bench import offline_tokenizers, pipelines
from fp8pass.bench.pipelines import FULL_SIZE, PIPELINES, build_full_size_component, build_tiny_pipeline

CLIP, CLIP_PROJ, T5 = "CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel"

#: What each pipeline's __init__ is typed to take, by component name.
TEXT_ENCODERS = {
    "sd15-tiny": {"text_encoder": CLIP},
    "sdxl-tiny": {"text_encoder": CLIP, "text_encoder_2": CLIP_PROJ},
    "flux-dev-tiny": {"text_encoder": CLIP, "text_encoder_2": T5},
    "sd3-tiny": {"text_encoder": CLIP_PROJ, "text_encoder_2": CLIP_PROJ, "text_encoder_3": T5},
    "wan-tiny": {"text_encoder": "UMT5EncoderModel"},
    "qwen-image-tiny": {"text_encoder": "Qwen2_5_VLForConditionalGeneration"},
}
TOKENIZERS = {
    "sd15-tiny": ["CLIPTokenizer"],
    "sdxl-tiny": ["CLIPTokenizer"] * 2,
    "flux-dev-tiny": ["CLIPTokenizer", "T5Tokenizer"],
    "sd3-tiny": ["CLIPTokenizer", "CLIPTokenizer", "T5Tokenizer"],
    "wan-tiny": ["T5Tokenizer"],
    "qwen-image-tiny": ["Qwen2Tokenizer"],
}


def _images(out) -> torch.Tensor:
    return out.frames if hasattr(out, "frames") else out.images


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP threads
    waiting on each other make a 0.1 s pipeline call take seconds (as python -m fp8pass does)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=list(PIPELINES))
def runs(request, _one_thread):
    """Each pipeline built once and run three times: with its call as given, again from a fresh
    generator of the same seed (0), and with another prompt."""
    pipe, call = build_tiny_pipeline(request.param)
    first = _images(pipe(**call))
    again = _images(pipe(**{**call, "generator": _seeded(0)}))
    other = _images(pipe(**{**call, "generator": _seeded(0), "prompt": "a dog on a red sofa"}))
    return request.param, pipe, call, {"first": first, "again": again, "other_prompt": other}


def test_runs_end_to_end_from_a_prompt(runs):
    name, pipe, call, images = runs
    image = images["first"]
    frames = (call["num_frames"],) if "num_frames" in call else ()
    assert image.shape == (1, *frames, 3, 32, 32)
    assert image.dtype == torch.bfloat16 and torch.isfinite(image).all()
    assert 0 <= image.min() and image.max() <= 1 and image.float().std() > 0.05  # an image, not a flat field
    assert all(p.dtype in (torch.bfloat16, torch.float32) for p in pipe.vae.parameters())


def test_same_seed_same_image_and_the_prompt_matters(runs):
    _, _, _, images = runs
    assert torch.equal(images["first"], images["again"])
    assert not torch.equal(images["first"], images["other_prompt"])  # the text encoders are wired in


def test_text_encoders_are_the_typed_classes(runs):
    name, pipe, _, _ = runs
    found = pipelines.text_encoders(pipe)
    assert {k: type(m).__name__ for k, m in found.items()} == TEXT_ENCODERS[name]
    assert all(next(m.parameters()).dtype == torch.bfloat16 for m in found.values())
    tokenizers = [
        type(pipe.components[k]).__name__ for k in sorted(pipe.components) if k.startswith("tokenizer")
    ]
    assert tokenizers == TOKENIZERS[name]


def test_qwen_template_drops_exactly_the_system_part():
    """QwenImagePipeline drops a fixed 34 tokens (the published vocabulary's count for its system
    prompt): the tiny vocabulary must give 34 too, or the prompt's own tokens would be cut."""
    pipe, _ = build_tiny_pipeline("qwen-image-tiny")
    assert pipe.prompt_template_encode == offline_tokenizers.QWEN_IMAGE_TEMPLATE
    system = pipe.prompt_template_encode.split("{}")[0]
    assert len(pipe.tokenizer(system).input_ids) == pipe.prompt_template_encode_start_idx
    embeds, _ = pipe.encode_prompt(offline_tokenizers.PROMPT, device="cpu")
    assert embeds.shape[1] == 5 + 5  # "a photo of a cat" + "<|im_end|>\n<|im_start|>assistant\n"


def test_prompt_words_are_single_tokens():
    ids = offline_tokenizers.clip_tokenizer()(offline_tokenizers.PROMPT).input_ids
    assert len(ids) == 2 + 5  # <|startoftext|> a photo of a cat <|endoftext|>
    t5 = offline_tokenizers.t5_tokenizer()
    assert t5.convert_ids_to_tokens(t5(offline_tokenizers.PROMPT).input_ids) == [
        *("▁a", "▁photo", "▁of", "▁a", "▁cat"),
        "</s>",
    ]
    assert len(t5("Any Text, 42!").input_ids) > 1  # characters outside the words still tokenize


def test_unknown_pipeline():
    with pytest.raises(ValueError, match="unknown pipeline 'sd99'"):
        build_tiny_pipeline("sd99")


#: Published parameter counts (within 2%). Flux: BFL's "12B" card, diffusers' transformer holds
#: 11.90B. T5-XXL encoder 4.76B, UMT5-XXL encoder 5.68B (their encoder halves). CLIP ViT-L/14
#: text 123.1M (123.7M with the projection SD3 uses); OpenCLIP bigG text 694.7M (SDXL paper).
#: SDXL UNet 2.567B (paper: 2.6B). SD3.5 Medium: Stability's card says 2.5B; the diffusers
#: transformer holds 2.243B. Wan2.1 "1.3B": 1.419B in the diffusers transformer; Wan-VAE 127M (Wan
#: report). The 4-level SD VAEs: 83.65M (SDXL), 83.82M (16 latent channels, no quant convs).
PUBLISHED = {
    ("flux-dev", "transformer"): 11.90e9,
    ("flux-dev", "text_encoder"): 123.1e6,
    ("flux-dev", "text_encoder_2"): 4.76e9,
    ("flux-dev", "vae"): 83.8e6,
    ("sdxl", "unet"): 2.567e9,
    ("sdxl", "text_encoder"): 123.1e6,
    ("sdxl", "text_encoder_2"): 694.7e6,
    ("sdxl", "vae"): 83.7e6,
    ("sd35-medium", "transformer"): 2.243e9,
    ("sd35-medium", "text_encoder"): 123.7e6,
    ("sd35-medium", "text_encoder_2"): 694.7e6,
    ("sd35-medium", "text_encoder_3"): 4.76e9,
    ("sd35-medium", "vae"): 83.8e6,
    ("wan21-1.3b", "transformer"): 1.419e9,
    ("wan21-1.3b", "text_encoder"): 5.68e9,
    ("wan21-1.3b", "vae"): 127e6,
}


def test_every_full_size_component_has_a_published_count():
    assert sorted(PUBLISHED) == sorted((p, c) for p, comps in FULL_SIZE.items() for c in comps)


@pytest.mark.parametrize("pipeline, component", list(PUBLISHED))
def test_full_size_component_matches_published_count(pipeline, component):
    model = build_full_size_component(pipeline, component)
    params = list(model.parameters())
    assert all(p.is_meta for p in params)
    assert {p.dtype for p in params} <= {torch.bfloat16, torch.float32}
    count = sum(p.numel() for p in params)
    assert count == pytest.approx(PUBLISHED[pipeline, component], rel=0.02)
