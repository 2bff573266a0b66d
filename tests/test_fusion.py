"""FP8Config(fuse_projections=True): linears reading one input run as one matmul."""

import copy
import re

import pytest
import torch
import torch.nn as nn
from torch._inductor.utils import run_and_get_code

from fp8pass import FP8Config, load_fp8, save_fp8, store
from fp8pass.bench import zoo

from .helpers import BF16, ROWWISE_CPU, compile_fp8, run, sqnr

FUSED = FP8Config(fuse_projections=True, min_weight_numel=0)


class Attention(nn.Module):
    """q/k/v on one input, an output projection on another; ``breaks`` puts a graph break in."""

    def __init__(self, dim=64, breaks=False):
        super().__init__()
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(dim, dim) for _ in range(4))
        self.breaks = breaks

    def forward(self, x):
        if self.breaks:
            torch._dynamo.graph_break()  # the graph after it is reused for every block
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        return x + self.to_out(torch.softmax(q @ k.transpose(-1, -2), -1) @ v)


def _model(breaks=False, blocks=1):
    torch.manual_seed(0)
    return nn.Sequential(*(Attention(breaks=breaks) for _ in range(blocks))).to(BF16).requires_grad_(False)


def test_fuse_projections_needs_per_channel_scales():
    with pytest.raises(ValueError, match="fuse_projections=True needs granularity='channel'"):
        FP8Config(fuse_projections=True, granularity="tensor")


@pytest.mark.parametrize("compute", ["cast", "scaled_mm"])
def test_fused_flux_matches_unfused_and_holds_no_more_memory(compute):
    model, inputs = zoo.build("flux-dev-tiny")
    inputs = {**inputs, "return_dict": False}
    ref = run(model, **inputs)
    unfused = run(compile_fp8(copy.deepcopy(model), FP8Config(compute=compute))[0], **inputs)
    cm, be = compile_fp8(model, FP8Config(compute=compute, fuse_projections=True))
    out = run(cm, **inputs)
    torch.testing.assert_close(out, unfused)
    assert sqnr(ref, out) > 40
    rows = {r.name: r for r in be.report()}
    assert "fused with transformer_blocks.0.attn.to_k, transformer_blocks.0.attn.to_v" in (
        rows["transformer_blocks.0.attn.to_q"].note
    )
    # single blocks: q, k, v and the MLP input projection read the same normalized input
    assert "single_transformer_blocks.0.proj_mlp" in rows["single_transformer_blocks.0.attn.to_q"].note
    # each layer's FP8 copy is a view into its group's buffer: one storage per group
    copies = [store.entries(p)[0].q for p in model.parameters() if store.entries(p)]
    distinct = {q.untyped_storage().data_ptr(): q.untyped_storage().nbytes() for q in copies}
    assert sum(distinct.values()) == sum(q.numel() for q in copies)
    q_copy = store.entries(model.transformer_blocks[0].attn.to_q.weight)[0].q
    k_copy = store.entries(model.transformer_blocks[0].attn.to_k.weight)[0].q
    assert q_copy.untyped_storage().data_ptr() == k_copy.untyped_storage().data_ptr()


def test_fused_blocks_reused_after_a_graph_break_each_get_their_own_buffer():
    model = _model(breaks=True, blocks=3)
    x = torch.randn(2, 8, 64, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    cm, be = compile_fp8(model, FUSED)
    assert sqnr(ref, run(cm, x)) > 25
    assert sqnr(ref, run(cm, x)) > 25
    assert be.num_quantized == 12  # 4 weights in each of 3 blocks
    buffers = {store.entries(b.to_q.weight)[0].q.untyped_storage().data_ptr() for b in model}
    assert len(buffers) == 3
    assert all(p.untyped_storage().nbytes() == 0 for b in model for p in (b.to_q.weight, b.to_out.weight))


@pytest.mark.inductor
def test_inductor_runs_one_matmul_for_q_k_v():
    model = _model()
    x = torch.randn(2, 8, 64, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    cm, be = compile_fp8(model, FUSED, inner="inductor")
    with torch.no_grad():
        out, code = run_and_get_code(cm, x)
    assert sqnr(ref, out) > 25
    code = "\n".join(code)
    # q, k and v become one 64 -> 192 matmul; with to_out that makes two (unfused: four); on a CPU
    # the biases go into the matmuls (addmm)
    assert code.count("extern_kernels.mm(") + code.count("extern_kernels.addmm(") == 2
    assert "(64, 192), (1, 64)" in code  # the fused FP8 weight, cast and read as one (K, 3N) operand


def test_checkpoint_of_a_fused_model_round_trips(tmp_path):
    model = _model()
    x = torch.randn(2, 8, 64, dtype=BF16)
    cm, _ = compile_fp8(model, FUSED)
    out = run(cm, x)
    save_fp8(model, tmp_path / "m.safetensors", FUSED)
    with torch.device("meta"):
        skeleton = _model()
    config = load_fp8(skeleton, tmp_path / "m.safetensors")
    assert config.fuse_projections
    torch.testing.assert_close(run(compile_fp8(skeleton, config)[0], x), out, rtol=0, atol=0)


@pytest.mark.inductor
def test_inductor_quantizes_activations_inside_the_norm_kernel_and_runs_one_fp8_matmul_per_group():
    """On flux-dev-tiny with fused projections: the activation quantization shares a kernel with
    the LayerNorm + AdaLN modulation that produced the activation, and each fused group is one
    ``_scaled_mm`` call (CPU Inductor; the Triton version is for a GPU run to check)."""
    if not ROWWISE_CPU:
        pytest.skip(f"torch {torch.__version__} has no per-row _scaled_mm on CPU")
    model, inputs = zoo.build("flux-dev-tiny")
    cm, be = compile_fp8(model, FP8Config(compute="scaled_mm", fuse_projections=True), inner="inductor")
    with torch.no_grad():
        _, code = run_and_get_code(cm, **inputs, return_dict=False)
    code = "\n".join(code)
    kernels = re.findall(r"^\s+(cpp_fused_\w+)\(", code, re.M)
    assert any("native_layer_norm" in k and "scaled_linear" in k for k in kernels)
    rows = [r for r in be.report() if r.converted and r.compute == "scaled_mm"]
    fused = [r for r in rows if r.note.startswith("fused with")]
    groups = {
        frozenset([r.name, *r.note.removeprefix("fused with ").split(" into")[0].split(", ")]) for r in fused
    }
    assert groups and code.count("_scaled_mm(") == len(rows) - len(fused) + len(groups)


def test_every_note_of_a_fused_layer_reaches_its_row():
    """A layer that falls back from scaled_mm to the cast path (float32 activations) and is then
    fused keeps both notes (the fusion note used to overwrite the fallback)."""
    model = _model().float()
    x = torch.randn(2, 8, 64)
    cm, be = compile_fp8(model, FP8Config(compute="scaled_mm", fuse_projections=True, min_weight_numel=0))
    run(cm, x)
    note = {r.name: r.note for r in be.report()}["0.to_q"]
    assert "cast instead of scaled_mm: FP8 matmul output is bfloat16 only" in note
    assert "fused with 0.to_k, 0.to_v into one matmul" in note
