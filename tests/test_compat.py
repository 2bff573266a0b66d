"""Checks on the private torch behaviour fp8pass relies on (fp8pass/_compat/)."""

import pytest
import torch
import torch._functorch._aot_autograd.frontend_utils as frontend_utils
import torch._functorch.aot_autograd as aot_autograd

from fp8pass._compat import dynamo, storage

from .helpers import BF16, compile_fp8


@pytest.mark.parametrize("inner", ["aot_eager", "inductor"])
def test_parameters_and_fp8_inputs_are_static_for_cuda_graphs(toy, toy_input, monkeypatch, inner):
    """AOT autograd must see the rewritten graph as Dynamo's, so that CUDA graphs keep the FP8
    weights (and parameters) in place instead of copying them into every replay."""
    seen = []
    original = frontend_utils._try_get_metadata_from_dynamo

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        seen.append((args[2], result[1]))
        return result

    monkeypatch.setattr(aot_autograd, "_try_get_metadata_from_dynamo", spy)
    cm, be = compile_fp8(toy, inner=inner)
    with torch.no_grad():
        cm(toy_input)
    # the model's graph (a later compile is fp8pass's CPU conversion op, on its first use)
    num_args, static = seen[0]
    # 1 activation + 13 parameters from Dynamo, then 4 FP8 weights with their scales
    assert num_args == 1 + 13 + 8
    assert static == list(range(1, num_args))


def test_source_paths_and_module_paths():
    assert (
        dynamo._dotted("L['self']._modules['blocks']._modules['0']._parameters['weight']")
        == "blocks.0.weight"
    )
    assert (
        dynamo._dotted("L['self'].__dict__['_modules']['down_blocks'].0.attentions.0")
        == "down_blocks.0.attentions.0"
    )
    assert dynamo._dotted("G['model']._modules['fc']") == "fc"


def test_outermost_call_walks_the_module_calls_on_the_stack():
    seen = {}

    class Inner(torch.nn.Module):
        def forward(self, x):
            seen["found"] = dynamo.outermost_call(self)
            return x

    inner = Inner()
    outer = torch.nn.Sequential(inner)
    x = torch.ones(2)
    outer(x, **{})
    model, (args, kwargs) = seen["found"]
    assert model is outer and args[0] is x and kwargs == {}
    assert dynamo.outermost_call(inner) == (inner, None)  # not called: nothing on the stack


def test_release_and_restore_storage():
    t = torch.randn(4, 4, dtype=BF16)
    value = t.clone()
    assert storage.release_storage(t) and storage.is_released(t)
    assert t.shape == (4, 4) and t.dtype == BF16
    storage.restore_storage(t, value)
    assert torch.equal(t, value)
    view = torch.randn(8, 4)[2:]  # shares storage with its base: must not be freed
    assert not storage.release_storage(view)
