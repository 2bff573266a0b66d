import copy
import json

import pytest
import torch

import fp8pass
from fp8pass import FP8Backend, FP8Config, load_fp8, save_fp8
from fp8pass.bench import zoo

from .helpers import BF16, TOY_MIN_DB, ToyDenoiser, compile_fp8, cuda_only, live_cpu_tensor_bytes, run, sqnr


def _skeleton(**kwargs):
    with torch.device("meta"):
        return ToyDenoiser(**kwargs).to(BF16).requires_grad_(False)


def test_round_trip_gives_the_compiled_models_output(toy, toy_input, tmp_path):
    path = tmp_path / "toy.safetensors"
    save_fp8(toy, path, FP8Config(granularity="channel"))
    direct = run(compile_fp8(copy.deepcopy(toy))[0], toy_input)
    skeleton = _skeleton()
    config = load_fp8(skeleton, path, "cpu")
    assert config.granularity == "channel" and config.dtype == torch.float8_e4m3fn
    cm, be = compile_fp8(skeleton, config)
    out = run(cm, toy_input)
    torch.testing.assert_close(out, direct, rtol=0, atol=0)  # the same FP8 bytes and scales
    assert sqnr(run(toy, toy_input), out) > TOY_MIN_DB
    assert be.num_quantized == 0  # nothing was quantized again
    assert skeleton.fc2_tied.weight is skeleton.fc2.weight  # tied weights stay tied
    assert skeleton.conv.weight.dtype == BF16 and skeleton.conv.weight.device.type == "cpu"
    with pytest.raises(RuntimeError, match="cannot run eagerly"):
        run(skeleton, toy_input)


def test_loading_never_holds_the_original_weights():
    torch.manual_seed(0)
    model = ToyDenoiser(ch=256, hidden=512).to(BF16).requires_grad_(False)
    rows = fp8pass.plan.plan_modules(model, FP8Config())
    bf16 = sum(la.module.weight.numel() * 2 for la in rows if la.converted and la.name != "fc2_tied")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        save_fp8(model, f"{d}/m.safetensors")
        file_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
        del model
        with torch.device("meta"):
            skeleton = ToyDenoiser(ch=256, hidden=512).to(BF16).requires_grad_(False)
        before = live_cpu_tensor_bytes()
        load_fp8(skeleton, f"{d}/m.safetensors")
        grown = live_cpu_tensor_bytes() - before
    # everything that is not a converted weight, plus the FP8 copies (half their bf16 bytes + scales)
    assert grown <= file_bytes - bf16 + 0.51 * bf16 + 4 * 1024
    assert grown < 0.6 * file_bytes


def test_a_diffusers_model_from_a_meta_skeleton(tmp_path):
    model, inputs = zoo.build("flux-dev-tiny")
    ref = run(model, **inputs)
    save_fp8(model, tmp_path / "flux.safetensors")
    skeleton = zoo.build_model("flux-dev-tiny", "meta")
    config = load_fp8(skeleton, tmp_path / "flux.safetensors")
    out = run(torch.compile(skeleton, backend=FP8Backend(config, inner="aot_eager")), **inputs)
    assert sqnr(ref, out) > 40


def test_a_float32_skeleton_loads_with_the_checkpoints_dtypes(tmp_path):
    """A skeleton built under torch.device("meta") alone is float32; the loaded model takes the
    dtype every tensor was saved with (it used to come out half float32, half bf16, and the first
    call failed inside attention)."""
    import diffusers

    model, inputs = zoo.build("flux-dev-tiny")
    ref = run(model, **inputs)
    save_fp8(model, tmp_path / "flux.safetensors")
    with torch.device("meta"):
        skeleton = diffusers.FluxTransformer2DModel(**zoo.MODELS["flux-dev-tiny"].config)
    assert skeleton.dtype == torch.float32
    config = load_fp8(skeleton, tmp_path / "flux.safetensors")
    assert {p.dtype for p in skeleton.parameters()} == {BF16}
    cm, be = compile_fp8(skeleton, config)
    out = run(cm, **inputs)
    assert out.dtype == BF16 and sqnr(ref, out) > 40
    assert be.num_quantized == 0 and sum(r.converted for r in be.report()) > 0


def test_an_already_converted_model_can_be_saved(toy, toy_input, tmp_path):
    cm, _ = compile_fp8(toy)
    out = run(cm, toy_input)  # releases the originals
    save_fp8(toy, tmp_path / "m.safetensors")
    skeleton = _skeleton()
    config = load_fp8(skeleton, tmp_path / "m.safetensors")
    torch.testing.assert_close(run(compile_fp8(skeleton, config)[0], toy_input), out, rtol=0, atol=0)


def test_bad_files_are_refused(toy, tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(
        ValueError,
        match=r"plain.safetensors: the checkpoint's keys are not ToyDenoiser's.*no single-file conversion",
    ):
        load_fp8(_skeleton(), tmp_path / "plain.safetensors")
    save_fp8(toy, tmp_path / "toy.safetensors")
    with torch.device("meta"):
        other = ToyDenoiser().to(BF16)
    other.extra = torch.nn.Linear(4, 4)
    with pytest.raises(
        fp8pass.CheckpointError,
        match=r"toy.safetensors: holds no tensor for 2 of ToyDenoiser's \(first 'extra.weight'\)",
    ):
        load_fp8(other, tmp_path / "toy.safetensors")


@cuda_only
def test_loading_onto_a_gpu_peaks_within_fp8_bytes_plus_one_layer(tmp_path):
    """The 16 GB card case, small: the GPU never holds the converted weights in bf16."""
    torch.manual_seed(0)
    model = ToyDenoiser(ch=256, hidden=512).to(BF16).requires_grad_(False)
    rows = [la for la in fp8pass.plan.plan_modules(model, FP8Config()) if la.converted]
    weights = {id(la.module.weight): la.module.weight for la in rows}.values()
    largest = max(w.numel() * w.element_size() for w in weights)
    kept = sum(
        p.numel() * p.element_size() for p in model.parameters() if id(p) not in {id(w) for w in weights}
    )
    save_fp8(model, tmp_path / "m.safetensors")
    fp8 = sum(w.numel() + (w.shape[0] * 4) for w in weights)  # e4m3 bytes + per-channel fp32 scales
    skeleton = _skeleton(ch=256, hidden=512)
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    load_fp8(skeleton, tmp_path / "m.safetensors", "cuda")
    torch.cuda.synchronize()
    assert (
        torch.cuda.max_memory_allocated() - start <= fp8 + kept + largest + 64 * 1024
    )  # + allocator rounding
    assert skeleton.fc1.weight.device.type == "cuda"


def test_a_non_finite_weight_stays_in_its_dtype_on_every_path(tmp_path):
    """One plan for NaN / Inf weights: the compile path kept such a layer, load_model converted it
    (its values were never looked at). Now the compiled model, the hooks, load_model and convert
    all keep it, saying why."""
    import diffusers

    from fp8pass.hooks import apply_fp8_hooks
    from fp8pass.plan import NONFINITE

    layer = "transformer_blocks.0.attn.to_q"
    model, inputs = zoo.build("flux-dev-tiny")
    with torch.no_grad():
        model.get_submodule(layer).weight[3, 5] = float("nan")
        model.get_submodule("single_transformer_blocks.0.proj_mlp").weight[0, 0] = float("inf")
    bad = {layer, "single_transformer_blocks.0.proj_mlp"}
    model.save_pretrained(tmp_path / "folder")

    def kept(rows):
        return {r.name: r.reason for r in rows if not r.converted and NONFINITE in r.reason}

    _, be = compile_fp8(copy.deepcopy(model))
    run(torch.compile(copy.deepcopy(model), backend=be), **inputs)
    assert set(kept(be.report())) == bad
    assert set(kept(apply_fp8_hooks(copy.deepcopy(model), FP8Config(), inputs).report())) == bad
    loaded, config = fp8pass.load_model(diffusers.FluxTransformer2DModel, tmp_path / "folder")
    assert not fp8pass.store.entries(loaded.get_submodule(layer).weight)  # never quantized
    cm, be = compile_fp8(loaded, config)
    run(cm, **inputs)
    assert set(kept(be.report())) == bad and be.num_quantized == 0
    fp8pass.convert(tmp_path / "folder", tmp_path / "fp8.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "fp8.safetensors"), "pt") as f:
        assert f"{layer}.weight" in f.keys() and f"{layer}.weight.fp8" not in f.keys()
        assert NONFINITE in json.loads(f.metadata()["kept"])[f"{layer}.weight"]
    skeleton = zoo.build_model("flux-dev-tiny", "meta")
    cm, be = compile_fp8(skeleton, fp8pass.load_fp8(skeleton, tmp_path / "fp8.safetensors"))
    run(cm, **inputs)
    assert set(kept(be.report())) == bad


def test_convert_refuses_a_destination_that_is_one_of_its_inputs(tmp_path):
    """convert OUT IN with OUT one of IN's files destroyed the source before reading it."""
    model, _ = zoo.build("flux-dev-tiny")
    model.save_pretrained(tmp_path / "folder", max_shard_size="100KB")
    files = sorted((tmp_path / "folder").iterdir())
    before = {f: f.read_bytes() for f in files}
    shard = next(f for f in files if f.name.endswith(".safetensors"))
    for destination in (shard, tmp_path / "folder" / "config.json"):
        with pytest.raises(
            fp8pass.CheckpointError, match="is a file this convert reads .* nothing was read or changed"
        ):
            fp8pass.convert(tmp_path / "folder", destination)
    single = tmp_path / "single.safetensors"
    single.write_bytes(shard.read_bytes())
    with pytest.raises(fp8pass.CheckpointError, match="is a file this convert reads"):
        fp8pass.convert(single, single, model_config=tmp_path / "folder")
    assert {f: f.read_bytes() for f in files} == before
