import copy

import pytest
import torch
import torch.nn as nn

from fp8pass import FP8Config, store
from fp8pass.hooks import apply_fp8_hooks

from .helpers import (
    BF16,
    TOY_CONVERTED,
    TOY_MIN_DB,
    ToyDenoiser,
    compile_fp8,
    live_cpu_tensor_bytes,
    run,
    sqnr,
)


def converted_params(model):
    return [model.conv.weight, model.conv3d.weight, model.fc1.weight, model.fc2.weight]


def test_same_layers_bytes_and_scales_as_the_compiled_path(toy, toy_input):
    config = FP8Config(compute="cast")
    hooked = copy.deepcopy(toy)
    hooks = apply_fp8_hooks(hooked, config, toy_input)  # the inputs trace the structure, as compiling does
    cm, be = compile_fp8(toy, config)
    compiled_out = run(cm, toy_input)
    hooked_out = run(hooked, toy_input)

    def decisions(rows):
        return sorted((r.name, r.converted, r.reason, r.bytes_before, r.bytes_after) for r in rows)

    assert decisions(hooks.report()) == decisions(be.report())
    assert {r.name for r in hooks.report() if r.converted} == TOY_CONVERTED
    for compiled_param, hooked_param in zip(converted_params(toy), converted_params(hooked), strict=True):
        ours = hooks._stored[id(hooked_param)]
        theirs = store.lookup(compiled_param, config)
        assert torch.equal(ours.q.view(torch.uint8), theirs.q.view(torch.uint8))
        assert torch.equal(ours.scale, theirs.scale)
    # same FP8 weights, different arithmetic order (weight upcast vs output scaled): close
    assert sqnr(compiled_out, hooked_out) > 30


def test_fidelity_and_visible_dtype(toy, toy_input):
    ref = run(copy.deepcopy(toy), toy_input)
    before = [id(p) for p in toy.parameters()]
    apply_fp8_hooks(toy)
    assert sqnr(ref, run(toy, toy_input)) > TOY_MIN_DB
    assert [id(p) for p in toy.parameters()] == before  # the same Parameter objects
    assert {p.dtype for p in toy.parameters()} == {BF16}


def test_no_upcast_copy_stays_resident(toy_input):
    torch.manual_seed(0)
    model = ToyDenoiser(ch=256, hidden=512).to(BF16).requires_grad_(False)
    x = torch.randn(1, 4, 8, 8, dtype=BF16)
    before = live_cpu_tensor_bytes()
    hooks = apply_fp8_hooks(model)
    run(model, x)
    after = live_cpu_tensor_bytes()
    bf16 = sum(r.bytes_before for r in hooks.report() if r.converted)
    fp8 = sum(r.bytes_after for r in hooks.report() if r.converted)
    assert all(p.untyped_storage().nbytes() == 0 for p in converted_params(model))
    assert after - before <= fp8 - bf16 + 0.02 * bf16


def test_exception_inside_forward_frees_the_weight(toy):
    apply_fp8_hooks(toy)
    with pytest.raises(RuntimeError):
        # conv3d's pre-hook upcasts its weight, then the 4-D input fails inside its forward
        run(toy.conv3d, torch.randn(2, 64, 16, 16, dtype=BF16))
    assert all(p.untyped_storage().nbytes() == 0 for p in converted_params(toy))


def test_applying_twice_is_harmless(toy, toy_input):
    first = apply_fp8_hooks(toy)
    hooks_on_fc1 = len(toy.fc1._forward_pre_hooks)
    assert apply_fp8_hooks(toy) is first
    assert len(toy.fc1._forward_pre_hooks) == hooks_on_fc1 == 1
    assert torch.isfinite(run(toy, toy_input)).all()


def test_remove_restores_the_module(toy, toy_input):
    hooks = apply_fp8_hooks(toy)
    hooked = run(toy, toy_input)
    hooks.remove()
    assert not toy.fc1._forward_pre_hooks and not toy.fc1._forward_hooks
    assert all(p.untyped_storage().nbytes() == p.numel() * 2 for p in converted_params(toy))
    # the parameters now hold the dequantized weights: same output as with the hooks
    torch.testing.assert_close(run(toy, toy_input), hooked, rtol=0, atol=0)
    assert apply_fp8_hooks(toy) is not hooks  # can be applied again


def test_weight_tied_to_a_skipped_layer_stays(toy_input):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64)).to(BF16).requires_grad_(False)
    model[1].weight = model[0].weight
    hooks = apply_fp8_hooks(model, FP8Config(skip=(r"^0$",), min_weight_numel=0))
    reasons = {r.name: r.reason for r in hooks.report()}
    assert reasons == {
        "0": "matches skip pattern '^0$'",
        "1": "weight shared with '0', which stays unconverted (matches skip pattern '^0$')",
    }
    assert model[0].weight.untyped_storage().nbytes() > 0
