"""fp8pass adds no Dynamo frame, guard or recompile of its own at run time: the user's recompile
accounting (error_on_recompile, recompile limits, Dynamo's counters) sees only the user's model.
Also diffusers' own torch.compile tests for FluxTransformer2DModel (tests/models/testing_utils/
compile.py, TorchCompileTesterMixin, with Flux's tiny config and inputs from
tests/models/transformers/test_models_transformer_flux.py) with fp8pass as the backend, and
regional compilation (compile_repeated_blocks, per-block torch.compile)."""

import copy

import pytest
import torch
import torch.nn as nn
from diffusers import FluxTransformer2DModel
from torch._dynamo.utils import counters

from fp8pass import FP8Backend, FP8Config

from .helpers import BF16, run, sqnr

ALL = FP8Config(min_weight_numel=0, keep_boundary=False)


@pytest.mark.parametrize("inner", ["aot_eager", pytest.param("inductor", marks=pytest.mark.inductor)])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_no_recompile_of_fp8passs_own_under_error_on_recompile(inner, mode):
    """Three calls of an fp32 stack of Linears under error_on_recompile=True (what diffusers'
    compile tests do): fp8pass's CPU conversion used to run a nested torch.compile'd function that
    recompiled on its second call (a dispatch-key guard) and raised RecompileError."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(4)]).requires_grad_(False)
    ref = copy.deepcopy(model)
    be = FP8Backend(ALL, inner=inner)
    cm = torch.compile(model, backend=be, fullgraph=True)
    context = torch.no_grad if mode == "no_grad" else torch.inference_mode
    counters.clear()
    with context(), torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            x = torch.randn(8, 64)
            assert sqnr(ref(x), cm(x)) > 25
    assert be.num_graphs == 1 and sum(r.converted for r in be.report()) == 4
    assert counters["stats"]["unique_graphs"] == 1  # the model's graph, and nothing of fp8pass's own


def test_several_shapes_and_dtypes_make_only_the_models_graphs():
    """A dynamic batch and a second input shape: the model's own recompiles only."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64)).to(BF16).requires_grad_(False)
    ref = copy.deepcopy(model)
    be = FP8Backend(ALL, inner="aot_eager")
    cm = torch.compile(model, backend=be, dynamic=True)
    counters.clear()
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (3, 17, 64):  # not 1: Dynamo specializes a size of 1, without fp8pass too
            x = torch.randn(rows, 64, dtype=BF16)
            assert sqnr(run(ref, x), run(cm, x)) > 25
    assert be.num_graphs == 1 and counters["stats"]["unique_graphs"] == 1


# -- diffusers' compile tests for the Flux transformer, with fp8pass as the backend ------------------

_FLUX = dict(
    patch_size=1,
    in_channels=4,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    axes_dims_rope=[4, 4, 8],
)


def _flux_inputs(height=4, width=4):
    g = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, height * width, 4, generator=g),
        "encoder_hidden_states": torch.randn(1, 24, 32, generator=g),
        "pooled_projections": torch.randn(1, 32, generator=g),
        "img_ids": torch.randn(height * width, 3, generator=g),
        "txt_ids": torch.randn(24, 3, generator=g),
        "timestep": torch.tensor([1.0]),
    }


def _flux():
    torch.manual_seed(0)
    return FluxTransformer2DModel(**_FLUX).eval()


@torch.no_grad()
def test_diffusers_flux_recompilation_and_graph_break():
    """TorchCompileTesterMixin.test_torch_compile_recompilation_and_graph_break."""
    be = FP8Backend(ALL, inner="aot_eager")
    model = torch.compile(_flux(), fullgraph=True, backend=be)
    with torch._dynamo.config.patch(error_on_recompile=True):
        model(**_flux_inputs())
        model(**_flux_inputs())
    assert sum(r.converted for r in be.report()) > 10


@torch.no_grad()
def test_diffusers_flux_repeated_blocks():
    """TorchCompileTesterMixin.test_torch_compile_repeated_blocks: recompile_limit=1."""
    model = _flux()
    be = FP8Backend(ALL, inner="aot_eager")
    model.compile_repeated_blocks(fullgraph=True, backend=be)
    with torch._dynamo.config.patch(recompile_limit=1):
        model(**_flux_inputs())
        model(**_flux_inputs())
    assert be.num_graphs == 2  # one graph per repeated block class


@torch.no_grad()
def test_diffusers_flux_on_different_shapes():
    """TorchCompileTesterMixin.test_compile_on_different_shapes: dynamic=True, one graph for
    (4, 4), (4, 8) and (8, 8) latents under error_on_recompile."""
    be = FP8Backend(ALL, inner="aot_eager")
    with torch.fx.experimental._config.patch(use_duck_shape=False):
        model = torch.compile(_flux(), fullgraph=True, dynamic=True, backend=be)
        for height, width in [(4, 4), (4, 8), (8, 8)]:
            with torch._dynamo.config.patch(error_on_recompile=True), torch.no_grad():
                model(**_flux_inputs(height, width))
    assert be.num_graphs == 1 and sum(r.converted for r in be.report()) > 10


# -- regional compilation ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["compile_repeated_blocks", "per-block torch.compile"])
def test_regional_compilation_converts_every_block(how):
    """diffusers' regional compilation and a torch.compile per block: every repeated block runs
    on its own FP8 weights and releases its originals, output as the whole-model compile's, and
    later calls add no graph."""
    from fp8pass.bench import zoo

    model, inputs = zoo.build("flux-dev-tiny")
    model.transformer_blocks.append(copy.deepcopy(model.transformer_blocks[0]))  # two of each block class
    ref = run(copy.deepcopy(model), **inputs)
    whole = run(torch.compile(copy.deepcopy(model), backend=FP8Backend(inner="aot_eager")), **inputs)
    be = FP8Backend(inner="aot_eager")
    if how == "compile_repeated_blocks":
        model.compile_repeated_blocks(backend=be, fullgraph=True)
    else:
        for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
            block.compile(backend=be, fullgraph=True)
    out = run(model, **inputs)
    graphs = be.num_graphs
    torch.testing.assert_close(run(model, **inputs), out, rtol=0, atol=0)
    assert be.num_graphs == graphs  # later calls: no new graph
    blocks = [*model.transformer_blocks, *model.single_transformer_blocks]
    converted = [
        m for b in blocks for m in b.modules() if isinstance(m, nn.Linear) and m.weight.numel() >= 4096
    ]
    assert converted and all(m.weight.untyped_storage().nbytes() == 0 for m in converted)
    assert sqnr(ref, out) > 35 and sqnr(whole, out) > 60  # the whole-model compile's fidelity
