"""Checks on the private torch behaviour fp8pass relies on (fp8pass/_compat/)."""

import pytest
import torch
import torch._functorch._aot_autograd.frontend_utils as frontend_utils
import torch._functorch.aot_autograd as aot_autograd

import fp8pass
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


def test_conversions_move_up_to_the_previous_extern_call_and_no_further():
    """fp8pass's post-grad pass puts a weight conversion right after the last matmul before it
    (not at the graph's start: a converted weight must not live across another layer's matmul),
    keeps conversions in their order, and moves nothing without an earlier anchor to move to."""
    import torch.fx as fx

    from fp8pass._compat.inductor import _heavy_ops, move_conversions_up

    convert = torch.ops.fp8pass.fp8_scaled_to_cpu.default
    g = fx.Graph()
    x, w1, s1, w2, s2 = (g.placeholder(n) for n in ("x", "w1", "s1", "w2", "s2"))
    first = g.call_function(convert, (w1, s1, torch.bfloat16))
    h = g.call_function(torch.ops.aten.mm.default, (x, first))
    mid = g.call_function(torch.ops.aten.relu.default, (h,))
    mid2 = g.call_function(torch.ops.aten.sigmoid.default, (mid,))
    a = g.call_function(convert, (w2, s2, torch.bfloat16))
    b = g.call_function(convert, (w1, s2, torch.bfloat16))
    out = g.call_function(torch.ops.aten.mm.default, (mid2, a))
    g.output((out, b))
    assert move_conversions_up(g, frozenset({convert}), _heavy_ops()) == 2
    assert [n.name for n in g.nodes if n.op == "call_function"] == [
        first.name,  # nothing earlier to move to
        h.name,
        a.name,  # right after the previous matmul, in their order
        b.name,
        mid.name,
        mid2.name,
        out.name,
    ]
    g.lint()


@pytest.mark.inductor
def test_a_users_post_grad_pass_still_runs_and_keys_the_cache():
    """fp8pass sets Inductor's post_grad_custom_pre_pass; a pass the user gave (in the backend's
    options or Inductor's config) runs after it, and its uuid joins the cache key."""
    from torch._inductor.custom_graph_pass import CustomGraphPass

    seen = []

    class Spy(CustomGraphPass):
        def __call__(self, graph):
            seen.append(sum(n.op == "call_function" for n in graph.nodes))

        def uuid(self):
            return "spy-1"

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
    model = model.to(torch.bfloat16).requires_grad_(False)
    be = fp8pass.FP8Backend(
        fp8pass.FP8Config(keep_boundary=False, min_weight_numel=0),
        inner="inductor",
        options={"post_grad_custom_pre_pass": Spy()},
    )
    torch._dynamo.reset()
    with torch._inductor.config.patch(force_disable_caches=True), torch.no_grad():
        torch.compile(model, backend=be)(torch.randn(2, 64, dtype=torch.bfloat16))
    assert seen and sum(r.converted for r in be.report()) == 2
    from fp8pass._compat.inductor import _early_conversions

    chained = _early_conversions()(frozenset(), Spy())
    assert chained.uuid()[1] == "spy-1"
    assert (
        _early_conversions()(frozenset(), lambda graph: None).uuid() is None
    )  # uncacheable, as Inductor would
