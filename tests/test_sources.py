"""From the checkpoints people have (diffusers folders in bf16 / fp32, ComfyUI's scaled FP8 files in
both namings, plain FP8 files, in the original models' key layouts) to FP8 weights on the device,
without the bf16 model in memory; and every way such a file can be wrong."""

import copy
import json
import subprocess
import sys

import pytest
import torch

from fp8pass import FP8Backend, FP8Config, load_fp8, load_model, store
from fp8pass.bench import zoo
from fp8pass.sources import pretrained_dtype
from fp8pass.structure import structure_of

from . import layouts
from .helpers import BF16, run, sqnr


def _wan():
    model, inputs = zoo.build("wan21-1.3b-tiny")
    return model, inputs, run(copy.deepcopy(model), **inputs)


def _wan_skeleton():
    from fp8pass.skeleton import skeleton as _skeleton

    return _skeleton(
        type(zoo.build_model("wan21-1.3b-tiny", "meta")), dict(zoo.MODELS["wan21-1.3b-tiny"].config)
    )


def _compiled(model, config, inputs):
    be = FP8Backend(config, inner="aot_eager")
    out = run(torch.compile(model, backend=be), **inputs)
    return out, be


def _fp8_of(model, name, config):
    return store.lookup(model.get_parameter(name), config)


# -- diffusers folders and float files ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
def test_a_diffusers_folder_loads_quantized_on_the_fly(tmp_path, dtype):
    model, inputs, ref = _wan()
    folder = layouts.diffusers_folder(model, tmp_path / "transformer", dtype, shards=2)
    loaded, config = load_model(type(model), folder, "cpu")
    # fp32 files load as bf16 unless dtype= says, and Wan's _keep_in_fp32_modules stay float32,
    # as from_pretrained(torch_dtype=torch.bfloat16) loads them
    assert all(p.dtype == pretrained_dtype(loaded, n, BF16) for n, p in loaded.named_parameters())
    assert loaded.blocks[0].attn1.to_q.weight.dtype == BF16
    out, be = _compiled(loaded, config, inputs)
    assert be.num_quantized == 0 and sum(r.converted for r in be.report()) == 20
    # the same as diffusers' own loader followed by fp8pass's backend, bit for bit
    pretrained = type(model).from_pretrained(folder, torch_dtype=BF16).eval().requires_grad_(False)
    direct, _ = _compiled(pretrained, FP8Config(), inputs)
    torch.testing.assert_close(out, direct, rtol=0, atol=0)
    assert sqnr(ref, out) > 40


def test_a_single_float_file_and_its_dtype(tmp_path):
    model, inputs, ref = _wan()
    path = layouts.save(
        {k: v.to(torch.float16) for k, v in model.state_dict().items()}, tmp_path / "wan.safetensors"
    )
    skeleton = _wan_skeleton()
    config = load_fp8(skeleton, path, dtype=torch.float32)
    assert {p.dtype for p in skeleton.parameters()} == {torch.float32}  # asked for
    out, _ = _compiled(
        skeleton, config, {k: v.float() if v.is_floating_point() else v for k, v in inputs.items()}
    )
    assert sqnr(ref.float(), out) > 35


# -- community FP8 files in the original layouts ---------------------------------------------------


@pytest.mark.parametrize("naming", ["old", "new"])
def test_comfyui_scaled_fp8_in_wans_layout_keeps_its_bytes(tmp_path, naming):
    model, inputs, ref = _wan()
    tensors, metadata = layouts.comfy_scaled(layouts.wan_original(model.state_dict()), naming)
    path = layouts.save(tensors, tmp_path / f"wan2.1_fp8_scaled_{naming}.safetensors", metadata)
    skeleton = _wan_skeleton()
    config = load_fp8(skeleton, path, config=FP8Config(granularity="tensor"))
    out, be = _compiled(skeleton, config, inputs)
    assert be.num_quantized == 0 and sum(r.converted for r in be.report()) == 20
    # bit for bit the file's FP8 bytes and per-tensor scale ("blocks.0.self_attn.q" -> "attn1.to_q")
    prefix = "model.diffusion_model.blocks.0.self_attn.q."
    held = _fp8_of(skeleton, "blocks.0.attn1.to_q.weight", config)
    assert torch.equal(held.q.view(torch.uint8), tensors[prefix + "weight"].view(torch.uint8))
    scale = tensors[prefix + ("scale_weight" if naming == "old" else "weight_scale")]
    assert torch.equal(held.scale, scale)
    # per-tensor FP8 of every linear (the boundary ones dequantized back to bf16): measured 33.7 dB
    assert sqnr(ref, out) > 30


def test_per_channel_config_keeps_a_per_tensor_files_bytes(tmp_path):
    model, inputs, _ = _wan()
    tensors, _ = layouts.comfy_scaled(layouts.wan_original(model.state_dict()), "new")
    path = layouts.save(tensors, tmp_path / "wan.safetensors")
    skeleton = _wan_skeleton()
    config = load_fp8(skeleton, path)  # per channel: every channel gets the tensor's scale
    held = _fp8_of(skeleton, "blocks.0.attn1.to_q.weight", config)
    assert torch.equal(
        held.q.view(torch.uint8),
        tensors["model.diffusion_model.blocks.0.self_attn.q.weight"].view(torch.uint8),
    )
    assert held.scale.shape == (64,) and torch.all(
        held.scale == tensors["model.diffusion_model.blocks.0.self_attn.q.weight_scale"]
    )


def test_plain_fp8_file_with_fp8_biases(tmp_path):
    """Plain FP8 files (no scales) put some biases and norms in FP8 too: scale 1, upcast exactly."""
    model, inputs, ref = _wan()
    original = layouts.wan_original(model.state_dict())
    tensors = {
        k: (v / v.abs().amax() * 200).to(torch.float8_e4m3fn) if v.dim() == 2 else v
        for k, v in original.items()
    }
    tensors["blocks.0.self_attn.q.bias"] = original["blocks.0.self_attn.q.bias"].to(torch.float8_e4m3fn)
    path = layouts.save(tensors, tmp_path / "wan2.1_fp8_e4m3fn.safetensors")
    skeleton = _wan_skeleton()
    config = load_fp8(skeleton, path, config=FP8Config(granularity="tensor"))
    held = _fp8_of(skeleton, "blocks.0.attn1.to_q.weight", config)
    assert torch.equal(held.q.view(torch.uint8), tensors["blocks.0.self_attn.q.weight"].view(torch.uint8))
    assert held.scale.item() == 1.0
    bias = skeleton.blocks[0].attn1.to_q.bias
    assert bias.dtype == BF16 and torch.equal(bias, tensors["blocks.0.self_attn.q.bias"].to(BF16))


@pytest.mark.parametrize("per_row", [False, True])
def test_sd3_fused_qkv_carry_their_scale_through_the_split(tmp_path, per_row):
    """SD3's released layout fuses q/k/v; diffusers' converter chunks them (and swaps the final
    modulation's halves). A per-tensor scale goes with every piece; a per-row scale is split the
    same way (diffusers' own BFL files name a per-row scale ``weight_scale`` too)."""
    model, inputs = zoo.build("sd35-medium-tiny")
    ref = run(copy.deepcopy(model), **inputs)
    tensors, _ = layouts.comfy_scaled(layouts.sd3_original(model.state_dict(), 2), "new", per_row=per_row)
    path = layouts.save(tensors, tmp_path / "sd3.5_medium_fp8_scaled.safetensors")
    from fp8pass.skeleton import skeleton as _skeleton

    skeleton = _skeleton(type(model), dict(zoo.MODELS["sd35-medium-tiny"].config))
    config = load_fp8(skeleton, path)
    qkv = tensors["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"]
    scale = tensors["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight_scale"]
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        held = _fp8_of(skeleton, f"transformer_blocks.0.attn.{name}.weight", config)
        assert torch.equal(held.q.view(torch.uint8), qkv.chunk(3)[i].view(torch.uint8))
        assert torch.equal(held.scale, scale.chunk(3)[i] if per_row else scale.expand(64))
    out, be = _compiled(skeleton, config, inputs)
    # every linear in FP8 per tensor or per row (the boundary ones dequantized back): measured 34.2 / 34.5 dB
    assert be.num_quantized == 0 and sqnr(ref, out) > 31


# -- what can be wrong with a file -----------------------------------------------------------------


def test_bad_files_are_refused_before_the_model_changes(tmp_path):
    model, _, _ = _wan()
    original = layouts.wan_original(model.state_dict())
    good = layouts.save(original, tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) - 100])
    missing = dict(original)
    del missing["blocks.1.ffn.2.weight"]
    layouts.save(missing, tmp_path / "missing.safetensors")
    wrong = dict(original)
    wrong["blocks.0.ffn.0.weight"] = torch.zeros(16, 64, dtype=BF16)
    layouts.save(wrong, tmp_path / "shape.safetensors")
    cases = {
        "truncated.safetensors": r"truncated.safetensors: the file is truncated: tensor '[\w.]+' ends at byte",
        "missing.safetensors": r"missing.safetensors: holds no tensor for 1 of WanTransformer3DModel's \(first 'blocks.1.ffn.net.2.weight'\)",
        "shape.safetensors": r"shape.safetensors: tensor 'blocks.0.ffn.net.0.proj.weight' has shape \[16, 64\]; the model's is \[128, 64\]",
    }
    for name, match in cases.items():
        skeleton = _wan_skeleton()
        with pytest.raises(ValueError, match=match):
            load_fp8(skeleton, tmp_path / name)
        assert all(p.is_meta for p in skeleton.parameters())  # nothing was loaded
    flux = zoo.build_model("flux-dev-tiny", "meta")
    with pytest.raises(ValueError, match=r"could not map this checkpoint to FluxTransformer2DModel"):
        load_fp8(flux, good)


def test_a_skeleton_whose_computed_buffers_are_meta_is_refused_clearly(tmp_path):
    model, _, _ = _wan()
    path = layouts.save(model.state_dict(), tmp_path / "wan.safetensors")
    with torch.device("meta"):
        skeleton = type(model)(**zoo.MODELS["wan21-1.3b-tiny"].config)
    with pytest.raises(ValueError, match=r"buffer '[\w.]+' is on the meta device.*init_empty_weights"):
        load_fp8(skeleton, path)


def test_structure_traced_on_the_skeleton_decides_what_converts(tmp_path):
    """With example inputs (on meta), the loader keeps exactly the boundary layers the compiled
    path would, traced on the meta skeleton itself: no memory, no compute."""
    model, inputs, _ = _wan()
    path = layouts.save(model.state_dict(), tmp_path / "wan.safetensors")
    skeleton = _wan_skeleton()
    meta_inputs = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    config = load_fp8(skeleton, path, example_inputs=meta_inputs)
    kept = {la for la in structure_of(skeleton).boundary}
    assert "patch_embedding" in kept and "proj_out" in kept
    assert store.lookup(skeleton.patch_embedding.weight, config) is None  # kept in bf16


# -- the command line ------------------------------------------------------------------------------


def test_convert_writes_an_fp8pass_file_from_a_folder(tmp_path):
    model, inputs, ref = _wan()
    folder = layouts.diffusers_folder(model, tmp_path / "transformer", BF16)
    out = tmp_path / "wan-fp8.safetensors"
    run_ = subprocess.run(
        [sys.executable, "-m", "fp8pass", "convert", str(folder), str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert run_.returncode == 0, run_.stderr
    header = json.loads(out.read_bytes()[8 : 8 + int.from_bytes(out.read_bytes()[:8], "little")])
    assert header["__metadata__"]["format"] == "fp8pass-1"
    loaded, config = load_model(type(model), out, model_config=folder)
    direct, direct_config = load_model(type(model), folder)
    assert config == direct_config
    torch.testing.assert_close(
        _compiled(loaded, config, inputs)[0], _compiled(direct, config, inputs)[0], rtol=0, atol=0
    )
