"""compile_pipeline: the whole diffusers pipeline in FP8 in one call, on real pipelines (real
diffusers and transformers classes, from fp8pass.bench.pipelines), aot_eager inside."""

import pytest
import torch

from fp8pass import FP8Config, compile_pipeline
from fp8pass.bench.pipelines import build_tiny_pipeline
from fp8pass.metrics import psnr
from fp8pass.pipeline import DEFAULT_CONFIGS, component_kind
from fp8pass.store import is_released

#: Image PSNR (dB) of the default (denoiser + text encoders in FP8) against the bf16 pipeline, same
#: seed, measured with benchmarks/pipeline_evidence.py: sd15 39.9, sdxl 37.0, flux 53.2, sd3 49.8,
#: wan 43.8, qwen 48.2. Margin ~6 dB.
MIN_PSNR = {
    "sd15-tiny": 33.0,
    "sdxl-tiny": 30.0,
    "flux-dev-tiny": 45.0,
    "sd3-tiny": 43.0,
    "wan-tiny": 37.0,
    "qwen-image-tiny": 40.0,
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: OpenMP threads on shared cores only wait on each other
    yield
    torch.set_num_threads(previous)


def _image(pipe, call, **extra) -> torch.Tensor:
    out = pipe(**{**call, "generator": torch.Generator().manual_seed(0), **extra})
    x = out.frames if hasattr(out, "frames") else out.images
    return torch.as_tensor(x).float()


@pytest.mark.parametrize("name", list(MIN_PSNR))
def test_default_converts_denoiser_and_text_encoders_not_the_vae(name):
    torch._dynamo.reset()
    pipe, call = build_tiny_pipeline(name)
    ref = _image(pipe, call)
    keys = {n: set(m.state_dict()) for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}

    report = compile_pipeline(pipe, inner="aot_eager")
    out = _image(pipe, call)

    by_name = {r["component"]: r for r in report.summary()}
    for comp, row in by_name.items():
        module = getattr(pipe, comp)
        if row["kind"] == "vae":
            assert not row["fp8"] and "not converted by default" in row["note"]
            assert not any(is_released(p) for p in module.parameters())
            continue
        converted = [r for r in report.rows(comp) if r.converted]
        assert converted, f"{comp}: nothing converted"
        assert row["bytes_after"] < 0.85 * row["bytes_before"], row  # tiny: embeddings weigh a lot
        named = dict(module.named_parameters(remove_duplicate=False))
        assert all(is_released(named[r.name + ".weight"]) for r in converted), comp  # originals gone
        assert set(module.state_dict()) == keys[comp]  # checkpoints still load and save
    t = report.totals()  # tiny pipelines: the bf16 VAE is a large share, so the ratio is modest
    assert t["bytes_after"] == sum(r["bytes_after"] for r in by_name.values()) < t["bytes_before"]
    assert {r["kind"] for r in by_name.values()} >= {"denoiser", "text_encoder", "vae"}
    assert not torch.equal(out, ref)  # FP8 storage moved the image, a little
    assert psnr(ref, out) >= MIN_PSNR[name]
    assert "whole pipeline:" in report.table()


def test_vae_on_request_with_tiling_and_varied_prompts():
    """SDXL with the VAE converted too (its encoder and decoder: encode / decode are methods) and
    tiling on: tiles call the same compiled decoder. Two prompt lengths: at most two graphs a text
    encoder or UNet (static, then dynamic), and the images stay close to bf16."""
    torch._dynamo.reset()
    pipe, call = build_tiny_pipeline("sdxl-tiny")
    pipe.vae.enable_tiling()
    # 64x64: 8x8 latents in tiles of 4 at stride 3 (0.25 overlap): tiles 4x4, 4x2, 2x4, 2x2. (Tiles
    # of size 1 would each compile a graph of their own: Dynamo specialises sizes 0 and 1.)
    pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = 32, 4
    call = {**call, "height": 64, "width": 64}
    prompts = ["a photo of a cat", "a long and detailed photo of a small grey cat on a red sofa"]
    refs = [_image(pipe, call, prompt=p) for p in prompts]

    rest = compile_pipeline(pipe, inner="aot_eager", components=["unet", "text_encoder", "text_encoder_2"])
    # Inductor for the VAE: torch's aot_eager alone (no fp8pass) fails on a tile, a non-contiguous
    # slice of the latents ("Expected X.is_contiguous" in native_group_norm); Inductor does not.
    report = compile_pipeline(pipe, components={"vae": FP8Config()})
    outs = [_image(pipe, call, prompt=p) for p in prompts]

    assert all(r["graphs"] <= 2 for r in rest.summary()), rest.summary()
    vae = next(r for r in report.summary() if r["component"] == "vae")
    assert vae["fp8"] and vae["bytes_after"] < vae["bytes_before"]
    assert any(r.converted and r.name.startswith("up_blocks") for r in report.rows("vae"))  # decoder
    # The decoder: static for 4x4, then Dynamo makes each dimension dynamic as it first changes
    # (4x2: width, 2x4: height): three graphs, then none for any other tile.
    assert vae["graphs"] == 3, vae
    for ref, out in zip(refs, outs, strict=True):
        assert psnr(ref, out) >= 25.0  # measured 31-37 dB with the VAE in FP8 too


def test_one_config_for_all_and_components_by_name():
    torch._dynamo.reset()
    pipe, call = build_tiny_pipeline("flux-dev-tiny")
    cfg = FP8Config(granularity="tensor")
    report = compile_pipeline(pipe, cfg, inner="aot_eager", components=["transformer"])
    _image(pipe, call)
    rows = {r["component"]: r for r in report.summary()}
    transformer = next(c for c in report.components if c.name == "transformer")
    assert rows["transformer"]["fp8"] and transformer.backends[0].config == cfg
    assert not rows["text_encoder"]["fp8"] and not rows["text_encoder_2"]["fp8"]
    assert not any(is_released(p) for p in pipe.text_encoder_2.parameters())


def test_bad_input_named_before_anything_changes():
    pipe, _ = build_tiny_pipeline("sd15-tiny")
    with pytest.raises(ValueError, match=r"no component \['transfomer'\].*'unet'"):
        compile_pipeline(pipe, components=["transfomer"])
    assert not any(hasattr(m, "_compiled_call_impl") and m._compiled_call_impl for m in (pipe.unet,))
    with pytest.raises(ValueError, match="no .components dict; pass a diffusers pipeline"):
        compile_pipeline(pipe.unet)


def test_component_kinds_and_defaults():
    pipe, _ = build_tiny_pipeline("sd3-tiny")
    kinds = {n: component_kind(n, m) for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
    assert kinds == {
        "transformer": "denoiser",
        "vae": "vae",
        "text_encoder": "text_encoder",
        "text_encoder_2": "text_encoder",
        "text_encoder_3": "text_encoder",
    }
    assert DEFAULT_CONFIGS["vae"] is None and DEFAULT_CONFIGS["denoiser"] == FP8Config()
