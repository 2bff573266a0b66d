"""Odd models and inputs: each either works or fails with a clear error."""

import copy
import threading

import pytest
import torch
import torch.nn as nn

from fp8pass import FP8Backend, FP8Config, guards
from fp8pass.released import Watched

from .helpers import (
    BF16,
    TOY_CONVERTED,
    TOY_CONVERTED_WEIGHTS,
    TOY_MIN_DB,
    ToyDenoiser,
    assert_converted,
    compile_fp8,
    fake_fp8_output,
    needs_rowwise_cpu,
    run,
    sqnr,
)


def _toy(seed):
    torch.manual_seed(seed)
    return ToyDenoiser().to(BF16).requires_grad_(False)


def test_two_models_of_one_class_with_one_backend_each_use_their_own_weights(toy_input):
    """Once fp8pass releases a model's weights, its parameters carry fp8pass's watched class, so
    Dynamo compiles a second model of the same class anew: each model gets its own FP8 weights,
    and both release their originals."""
    a, b = _toy(0), _toy(1)
    ref_a, ref_b = run(copy.deepcopy(a), toy_input), run(copy.deepcopy(b), toy_input)
    be = FP8Backend(inner="aot_eager")
    assert sqnr(ref_a, run(torch.compile(a, backend=be), toy_input)) > TOY_MIN_DB
    assert sqnr(ref_b, run(torch.compile(b, backend=be), toy_input)) > TOY_MIN_DB
    assert be.num_graphs == 2 and be.num_quantized == 2 * TOY_CONVERTED_WEIGHTS
    assert a.fc1.weight.untyped_storage().nbytes() == 0 == b.fc1.weight.untyped_storage().nbytes()


def test_a_graph_reused_for_an_unseen_model_runs_its_weights_and_says_they_stay(toy_input):
    """When Dynamo does reuse a graph for parameters fp8pass never indexed (here: b's parameters
    that a's released weights have are given the watched class by hand, so the guards match), b's weights are quantized on first
    use and run in FP8, and a warning says their originals stay."""
    a, b = _toy(0), _toy(1)
    ref_b = run(copy.deepcopy(b), toy_input)
    be = FP8Backend(inner="aot_eager")
    run(torch.compile(a, backend=be), toy_input)
    for name, param in a.named_parameters():  # the classes a's released weights now have
        if isinstance(param, Watched):
            guards.watch(b, b.get_parameter(name))
    with pytest.warns(UserWarning, match="reused for another model of the same class"):
        out_b = run(torch.compile(b, backend=be), toy_input)
    assert sqnr(ref_b, out_b) > TOY_MIN_DB
    assert be.num_graphs == 1 and be.num_quantized == 2 * TOY_CONVERTED_WEIGHTS
    assert b.fc1.weight.untyped_storage().nbytes() > 0


def test_a_model_per_backend_releases_both(toy_input):
    a, b = _toy(0), _toy(1)
    ref_b = run(copy.deepcopy(b), toy_input)
    run(compile_fp8(a)[0], toy_input)
    assert sqnr(ref_b, run(compile_fp8(b)[0], toy_input)) > TOY_MIN_DB
    assert a.fc1.weight.untyped_storage().nbytes() == 0 == b.fc1.weight.untyped_storage().nbytes()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(128, 128), nn.Linear(128, 128)

    def forward(self, x):
        h = self.fc1(x)
        torch._dynamo.graph_break()  # the graph after the break is reused for every block
        return x + self.fc2(torch.relu(h))


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(3))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_repeated_blocks_with_a_graph_break_inside():
    torch.manual_seed(0)
    model = Stack().to(BF16).requires_grad_(False)
    x = torch.randn(4, 128, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    cm, be = compile_fp8(model)
    assert sqnr(ref, run(cm, x)) > 25
    assert sqnr(ref, run(cm, x)) > 25  # and again, from the compiled cache
    assert be.num_quantized == 6  # every block's own weights ...
    # ... and every original released: the first graph saw the whole model
    assert all(p.untyped_storage().nbytes() == 0 for n, p in model.named_parameters() if n.endswith("weight"))


def test_meta_model_is_refused_clearly():
    with torch.device("meta"):
        model = ToyDenoiser().to(BF16).requires_grad_(False)
    cm, _ = compile_fp8(model)
    with pytest.raises(Exception, match="weights are on the meta device.*not loaded"):
        run(cm, torch.randn(2, 4, 16, 16, dtype=BF16, device="meta"))
    # With real inputs Dynamo stops while tracing, before fp8pass sees a graph (the README says so):
    # its own error names both devices (2.13: "device mismatch ... cpu and meta"; 2.11: "found two
    # different devices cpu, meta").
    torch._dynamo.reset()
    with pytest.raises(Exception, match="(?s)(device mismatch|different devices).*(cpu.*meta|meta.*cpu)"):
        run(compile_fp8(model)[0], torch.randn(2, 4, 16, 16, dtype=BF16))


class Keyed(nn.Module):
    """Layers under module paths that are not Python identifiers (Z-Image keeps its patch embedders
    in a ModuleDict keyed "2-1"), and two paths that differ only in '.' against '_'."""

    def __init__(self):
        super().__init__()
        self.all_x_embedder = nn.ModuleDict({"2-1": nn.Linear(64, 64), "1": nn.Linear(64, 64)})
        self.a = nn.ModuleDict({"b_c": nn.Linear(64, 64)})
        self.a_b = nn.ModuleDict({"c": nn.Linear(64, 64)})

    def forward(self, x):
        h = self.all_x_embedder["2-1"](x) + self.all_x_embedder["1"](x)
        return self.a["b_c"](h) + self.a_b["c"](h)


@pytest.mark.parametrize("fuse", [False, True])
def test_module_paths_that_are_not_identifiers(fuse):
    torch.manual_seed(0)
    model = Keyed().to(BF16).requires_grad_(False)
    x = torch.randn(4, 64, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    cm, be = compile_fp8(model, FP8Config(fuse_projections=fuse, keep_boundary=False))
    assert sqnr(ref, run(cm, x)) > 25
    assert sum(r.converted for r in be.report()) == 4


@pytest.mark.parametrize("compute", ["cast", "scaled_mm"])
def test_empty_batch(toy, compute):
    cm, be = compile_fp8(toy, FP8Config(compute=compute))
    assert run(cm, torch.randn(0, 4, 16, 16, dtype=BF16)).shape == (0, 4, 16, 16)
    assert_converted(be, toy, TOY_CONVERTED)


class Masked(nn.Module):
    """Rows picked by data (HunyuanVideo FramePack masks its text tokens): under
    capture_dynamic_output_shape_ops the row count is an unbacked symbol while tracing."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)

    def forward(self, x, mask):
        return self.fc(x[mask])


@pytest.mark.parametrize(
    "compute, granularity",
    [
        ("cast", "channel"),
        ("scaled_mm", "tensor"),
        pytest.param("scaled_mm", "channel", marks=needs_rowwise_cpu),
    ],
)
def test_a_data_dependent_row_count(compute, granularity):
    """fp8pass's empty-batch check and torch's _scaled_mm checks must not guard on the unknown
    count (both raised GuardOnDataDependentSymNode); the output equals that of the same layer
    compiled for the selected rows as a plain input."""
    torch.manual_seed(0)
    model = Masked().to(BF16).requires_grad_(False)
    x, mask = torch.randn(8, 64, dtype=BF16), torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    config = FP8Config(
        compute=compute, granularity=granularity, min_weight_numel=0, skip=(), keep_boundary=False
    )
    plain, _ = compile_fp8(copy.deepcopy(model).fc, config)
    expected = run(plain, x[mask])
    torch._dynamo.reset()
    cm, be = compile_fp8(model, config, fullgraph=True)
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        out = run(cm, x, mask)
    assert [r.compute for r in assert_converted(be, model, {"fc"})] == [compute]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_channels_last_and_non_contiguous_inputs(toy):
    x_cl = torch.randn(2, 4, 16, 16, dtype=BF16).to(memory_format=torch.channels_last)
    x_nc = torch.randn(2, 4, 32, 16, dtype=BF16)[:, :, ::2]
    ref_cl, ref_nc = run(copy.deepcopy(toy), x_cl), run(copy.deepcopy(toy), x_nc)
    cm, be = compile_fp8(toy)
    assert sqnr(ref_cl, run(cm, x_cl)) > TOY_MIN_DB and sqnr(ref_nc, run(cm, x_nc)) > TOY_MIN_DB
    assert_converted(be, toy, TOY_CONVERTED)


class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.dilated = nn.Conv2d(64, 64, 3, padding=2, dilation=2)
        self.reflect = nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect")
        self.depthwise = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.strided = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.conv1d = nn.Conv1d(64, 64, 5, padding=2)

    def forward(self, x):
        h = self.depthwise(self.reflect(self.dilated(self.grouped(x))))
        return self.conv1d(self.strided(h).flatten(2))


def test_grouped_strided_dilated_padded_convs():
    torch.manual_seed(0)
    model = Convs().to(BF16).requires_grad_(False)
    x = torch.randn(2, 64, 16, 16, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    cm, be = compile_fp8(model, FP8Config(min_weight_numel=0, keep_boundary=False))
    assert sqnr(ref, run(cm, x)) > 25
    assert all(r.converted for r in be.report()) and len(be.report()) == 6


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("compute", ["cast", "scaled_mm"])
def test_fp16_and_fp32_models(dtype, compute):
    torch.manual_seed(0)
    model = ToyDenoiser().to(dtype).requires_grad_(False)
    x = torch.randn(2, 4, 16, 16, dtype=dtype)
    original = copy.deepcopy(model)
    ref = run(copy.deepcopy(model), x)
    config = FP8Config(compute=compute)
    cm, be = compile_fp8(model, config)
    out = run(cm, x)
    rows = assert_converted(be, model, TOY_CONVERTED)
    assert out.dtype == dtype and sqnr(ref, out) > TOY_MIN_DB
    # FP8 matmuls produce bf16 only: the cast path takes these, with the same arithmetic
    assert all(r.compute == "cast" for r in rows)
    assert sqnr(fake_fp8_output(original, rows, (x,), config), out) > 60


def test_same_model_compiled_twice(toy, toy_input):
    ref = run(copy.deepcopy(toy), toy_input)
    first, second = compile_fp8(toy), compile_fp8(toy)
    assert sqnr(ref, run(first[0], toy_input)) > TOY_MIN_DB
    assert sqnr(ref, run(second[0], toy_input)) > TOY_MIN_DB
    assert first[1].num_quantized == TOY_CONVERTED_WEIGHTS and second[1].num_quantized == 0


def test_calls_from_several_threads(toy):
    """Threads whose first calls race: one compiles (and converts, and releases) while the others
    call; each output is right and every weight is quantized once."""
    xs = [torch.randn(2, 4, 16, 16, dtype=BF16) for _ in range(4)]
    refs = [run(copy.deepcopy(toy), x) for x in xs]
    cm, be = compile_fp8(toy)
    outs = [None] * len(xs)
    start = threading.Barrier(len(xs))

    def work(i):
        start.wait()  # every thread's first call at once: the compile happens under their race
        outs[i] = run(cm, xs[i])
        outs[i] = run(cm, xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(sqnr(r, o) > TOY_MIN_DB for r, o in zip(refs, outs, strict=True))
    assert be.num_quantized == TOY_CONVERTED_WEIGHTS


def test_two_compiled_denoisers_in_one_pipeline_share_nothing():
    """UNet + ControlNet in one pipeline, both compiled with one backend object: each runs with its
    own FP8 weights, and the decoded image matches the bf16 pipeline's."""
    import diffusers

    from fp8pass.bench import zoo
    from fp8pass.metrics import psnr, ssim

    pipe, call = zoo.build_pipeline("sd15-tiny")
    controlnet = diffusers.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))
    zoo.init_weights(controlnet, seed=7)  # not a copy of the UNet's weights
    controlnet = controlnet.to(BF16).requires_grad_(False)
    pipe = diffusers.StableDiffusionControlNetPipeline(**pipe.components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    call["image"] = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = pipe(**call, generator=torch.Generator().manual_seed(0)).images

    be = FP8Backend(inner="aot_eager")
    pipe.unet = torch.compile(pipe.unet, backend=be)
    pipe.controlnet = torch.compile(pipe.controlnet, backend=be)
    out = pipe(**call, generator=torch.Generator().manual_seed(0)).images
    assert psnr(ref, out) > 30 and ssim(ref, out) > 0.99
    carrying_bytes = [r for r in be.report() if r.converted and r.bytes_before]  # a row per weight
    assert be.num_quantized == len(carrying_bytes) and be.num_graphs == 2
    assert any(r.weight.startswith("controlnet_") for r in carrying_bytes)  # the ControlNet's own layers
    # both models' rows are there, also where their layer names coincide
    assert sum(r.name == "down_blocks.0.resnets.0.conv1" for r in be.report()) == 2
