import torch
import torch.nn as nn

from fp8pass import FP8Config
from fp8pass.quantize import quantize_weight
from fp8pass.rewrite import rewrite

from .helpers import BF16, sqnr
from .test_plan import plan_for


def test_rewrite_swaps_in_named_ops_and_keeps_the_original_graph(toy, toy_input):
    gm, example_inputs, layers = plan_for(toy, toy_input)
    new, feeds = rewrite(gm, layers, FP8Config())
    assert all(len(feed) == 1 for feed in feeds)  # no groups asked for: one parameter per pair
    positions = [feed[0] for feed in feeds]
    targets = [str(n.target) for n in new.graph.nodes if n.op == "call_function"]
    assert targets.count("fp8pass.linear.default") == 3
    assert targets.count("fp8pass.conv.default") == 2
    assert targets.count(str(torch._C._nn.linear)) == 1  # proj_out, skipped
    # each converted weight (the tied one once) becomes two inputs: FP8 weight and scale
    added = [n.target for n in new.graph.nodes if n.op == "placeholder"][len(example_inputs) :]
    assert len(added) == 8 and "fp8_fc2_weight" in added and "fp8_fc2_weight_scale" in added
    assert [example_inputs[i] for i in positions] == [
        toy.conv.weight,
        toy.conv3d.weight,
        toy.fc1.weight,
        toy.fc2.weight,
    ]
    assert not any("fp8pass" in str(n.target) for n in gm.graph.nodes)  # Dynamo's graph is untouched
    fp8 = [t for i in positions for t in quantize_weight(example_inputs[i], torch.float8_e4m3fn, "channel")]
    with torch.no_grad():
        ref = gm(*example_inputs)[0]
        out = new(*example_inputs, *fp8)[0]
    assert sqnr(ref, out) > 25


class Autocast(nn.Module):
    def __init__(self):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (nn.Linear(64, 64) for _ in range(3))

    def forward(self, x):
        with torch.autocast("cpu", dtype=BF16):
            return self.to_q(x) + self.to_k(x) * self.to_v(x)


def test_every_node_the_rewrite_adds_carries_its_value():
    """Each added node has meta["val"] (and Dynamo's meta["example_value"]): a fake tensor of its
    output, in the same fake mode as Dynamo's values: the FP8 inputs, the ops, the autocast cast,
    and a fused group's cat / op / split / getitem / contiguous."""
    model = Autocast().requires_grad_(False)  # float32 weights computing in bf16
    x = torch.randn(4, 64)
    config = FP8Config(fuse_projections=True, min_weight_numel=0, keep_boundary=False)
    gm, example_inputs, layers = plan_for(model, x, config=config)
    from fp8pass.plan import projection_groups

    groups = projection_groups(layers)
    assert len(groups) == 1
    new, feeds = rewrite(gm, layers, config, groups)
    old_names = {n.name for n in gm.graph.nodes}
    added = [n for n in new.graph.nodes if n.name not in old_names and n.op != "output"]
    targets = {str(n.target) for n in added}
    assert {"fp8pass.linear.default", "to", "contiguous"} <= targets
    mode = next(n.meta["example_value"].fake_mode for n in gm.graph.nodes if "example_value" in n.meta)
    for node in added:
        val = node.meta.get("val")
        assert val is not None and node.meta["example_value"] is val, node.format_node()
        leaves = val if isinstance(val, (tuple, list)) else [val]
        assert all(t.fake_mode is mode for t in leaves), node.format_node()
    q, scale = (n for n in added if n.op == "placeholder")
    assert q.meta["val"].dtype == torch.float8_e4m3fn and tuple(q.meta["val"].shape) == (192, 64)
    assert scale.meta["val"].dtype == torch.float32 and tuple(scale.meta["val"].shape) == (192,)
    op = next(n for n in added if str(n.target) == "fp8pass.linear.default")
    assert op.meta["val"].dtype == BF16 and tuple(op.meta["val"].shape) == (4, 192)
