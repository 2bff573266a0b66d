import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fp8pass import FP8Config, computes
from fp8pass._compat import dynamo
from fp8pass.plan import ParamRef, all_finite, layer_names, plan
from fp8pass.structure import structure_of

from .helpers import BF16, TOY_CONVERTED


def plan_for(model, *inputs, config=None):
    """Plan on the graph torch.compile hands a backend (read inside the backend call: Dynamo
    strips the parameter sources from the graph's metadata once the backend returns)."""
    seen = {}

    def backend(gm, example_inputs):
        found = dynamo.graph_parameters(gm, example_inputs)
        params = {n: ParamRef(t, dynamo.source_path(s)) for n, (t, s) in found.items()}
        seen["gm"], seen["inputs"] = gm, example_inputs
        autocast = dynamo.autocast_regions(gm.graph)
        names = layer_names(model, dynamo.module_path)
        structure = structure_of(model, inputs, {})
        seen["layers"] = plan(
            gm.graph, params, config or FP8Config(), names, autocast=autocast, structure=structure
        )
        return gm.forward

    with torch.no_grad():
        torch.compile(model, backend=backend, fullgraph=True)(*inputs)
    return seen["gm"], seen["inputs"], seen["layers"]


def by_name(layers):
    return {layer.name: layer for layer in layers}


def test_toy_plan(toy, toy_input):
    _, _, layers = plan_for(toy, toy_input)
    layers = by_name(layers)
    assert set(layers) == TOY_CONVERTED | {"conv_in", "proj_out"}
    assert {n for n, layer in layers.items() if layer.converted} == TOY_CONVERTED
    # the toy has no repeated blocks: its first and last layers are its boundary
    assert (
        layers["conv_in"].reason
        == "input layer: reads only the model's inputs ('x'), no other layer's output"
    )
    assert (
        layers["proj_out"].reason == "output layer: reads the other layers' output and feeds no other layer"
    )
    assert layers["fc2_tied"].weight.path == "fc2.weight"  # the tied weight is fc2's
    assert layers["conv3d"].kind == "conv" and layers["conv3d"].call_args == (
        [1, 1, 1],
        [0, 1, 1],
        [1, 1, 1],
        1,
    )
    converted = [layer for layer in layers.values() if layer.converted]
    assert converted and all(layer.compute == "cast" for layer in converted)  # auto on CPU


class Odd(nn.Module):
    """One layer per reason a layer stays unconverted."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(16, 16, 2, stride=2)
        self.base = nn.Linear(64, 64)
        self.small = nn.Linear(64, 16)
        self.read_elsewhere = nn.Linear(64, 64)
        self.proj_out = nn.Linear(64, 64)  # skipped by default ...
        self.shares_with_skipped = nn.Linear(64, 64)
        self.shares_with_skipped.weight = self.proj_out.weight  # ... so this one cannot convert
        self.nan = nn.Linear(64, 64)
        self.same_even = nn.Conv2d(16, 16, 4, padding="same")
        self.same_odd = nn.Conv2d(16, 16, 3, padding="same")
        with torch.no_grad():
            self.nan.weight[3, 3] = float("nan")

    def forward(self, x, img):
        h = self.base(x)
        h = h + F.linear(x, self.base.weight * 2)  # weight computed in the graph
        h = h + self.read_elsewhere(x) * self.read_elsewhere.weight.mean()
        h = self.shares_with_skipped(self.proj_out(h)) + self.nan(x)
        img = self.same_odd(self.same_even(self.up(img)))
        return h, self.small(x), img


def test_every_unconverted_layer_has_its_reason():
    model = Odd().to(BF16).requires_grad_(False)
    inputs = (torch.randn(2, 64, dtype=BF16), torch.randn(1, 16, 4, 4, dtype=BF16))
    config = FP8Config(min_weight_numel=2048, keep_boundary=False, skip=(r"^proj_out$",))
    _, _, layers = plan_for(model, *inputs, config=config)
    reasons = {la.name: la.reason for la in layers}
    assert reasons["up"] == "transposed convolution is not supported"
    assert reasons["small"] == "weight has 1024 elements, fewer than min_weight_numel=2048"
    assert reasons["read_elsewhere"].startswith("weight is also read by")
    assert reasons["shares_with_skipped"] == (
        "weight shared with 'proj_out', which stays unconverted (matches skip pattern '^proj_out$')"
    )
    assert reasons["nan"] == "weight contains NaN or Inf"
    assert reasons["same_even"] == "padding='same' with an even effective kernel pads asymmetrically"
    assert reasons["same_odd"] == ""
    computed = [la for la in layers if la.weight is None and la.kind == "linear"]
    assert (
        len(computed) == 1 and computed[0].reason == "weight is computed in the graph, not a module parameter"
    )
    # 'base' is read by the computed-weight expression too, so it cannot be converted either
    assert reasons["base"].startswith("weight is also read by")
    same_odd = by_name(layers)["same_odd"]
    assert same_odd.call_args[1] == [1, 1]


class ScaledShapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.ok = nn.Linear(64, 128)
        self.odd = nn.Linear(64, 72 + 1)
        self.pw = nn.Conv2d(64, 64, 1)
        self.k3 = nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x, img):
        return self.ok(x), self.odd(x), self.k3(self.pw(img))


def test_scaled_mm_falls_back_to_cast_where_shapes_forbid_it():
    model = ScaledShapes().to(BF16).requires_grad_(False)
    inputs = (torch.randn(4, 64, dtype=BF16), torch.randn(1, 64, 4, 4, dtype=BF16))
    config = FP8Config(compute="scaled_mm", granularity="tensor", min_weight_numel=0, keep_boundary=False)
    _, _, layers = plan_for(model, *inputs, config=config)
    layers = by_name(layers)
    assert layers["ok"].compute == "scaled_mm" and layers["pw"].compute == "scaled_mm"
    assert layers["odd"].compute == "cast" and "divisible by 16, got 64/73" in layers["odd"].note
    assert layers["k3"].compute == "cast" and "only 1x1 convolutions" in layers["k3"].note


def test_scaled_mm_needs_bf16_activations():
    model = ScaledShapes().float().requires_grad_(False)
    inputs = (torch.randn(4, 64), torch.randn(1, 64, 4, 4))
    config = FP8Config(compute="scaled_mm", min_weight_numel=0, keep_boundary=False)
    _, _, layers = plan_for(model, *inputs, config=config)
    assert by_name(layers)["ok"].compute == "cast"
    assert "activation is torch.float32" in by_name(layers)["ok"].note


def test_scaled_mm_per_row_falls_back_to_cast_where_torch_lacks_it(monkeypatch):
    """torch 2.11's CPU _scaled_mm takes per-tensor scales only: per-channel layers keep FP8
    storage on the cast path there, with the reason and the fix in the note."""
    monkeypatch.setattr(computes, "rowwise_scaled_mm_supported", lambda device: False)
    model = ScaledShapes().to(BF16).requires_grad_(False)
    inputs = (torch.randn(4, 64, dtype=BF16), torch.randn(1, 64, 4, 4, dtype=BF16))
    config = FP8Config(compute="scaled_mm", min_weight_numel=0, keep_boundary=False)
    _, _, layers = plan_for(model, *inputs, config=config)
    ok = by_name(layers)["ok"]
    assert ok.converted and ok.compute == "cast"
    assert "takes no per-row scales on cpu" in ok.note and "granularity='tensor'" in ok.note


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_other_float_models_convert(dtype):
    model = ScaledShapes().to(dtype).requires_grad_(False)
    inputs = (torch.randn(4, 64, dtype=dtype), torch.randn(1, 64, 4, 4, dtype=dtype))
    _, _, layers = plan_for(model, *inputs, config=FP8Config(min_weight_numel=0, keep_boundary=False))
    assert layers and all(la.converted for la in layers)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("special", [None, float("nan"), float("inf"), -float("inf")])
def test_all_finite_finds_one_special_value_anywhere(dtype, special):
    w = torch.randn(37, 53, generator=torch.Generator().manual_seed(0)).to(dtype)
    for where in [(0, 0), (18, 26), (36, 52)]:
        x = w.clone()
        if special is not None:
            x[where] = special
        assert (
            all_finite(x) == all_finite(nn.Parameter(x)) == (special is None) == bool(torch.isfinite(x).all())
        )
    assert all_finite(torch.empty(0, 4, dtype=dtype))
