import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx

from fp8pass import dequant, ops
from fp8pass.quantize import quantize_weight

from .helpers import BF16, ROWWISE_CPU, needs_rowwise_cpu, sqnr

# opcheck's test_schema fails on CPU for float8 inputs (FIELD_NOTES 3); the other checks run.
OPCHECKS = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _linear_case(granularity, dtype=torch.float8_e4m3fn, bias=True):
    torch.manual_seed(0)
    w = torch.randn(48, 64) * 0.05
    q, scale = quantize_weight(w, dtype, granularity)
    b = torch.randn(48, dtype=BF16) * 0.1 if bias else None
    x = torch.randn(2, 5, 64, dtype=BF16)
    return x, w, q, scale, b


def _conv_case(granularity, memory_format=torch.contiguous_format, kernel=3):
    torch.manual_seed(0)
    w = torch.randn(32, 16, kernel, kernel) * 0.05
    q, scale = quantize_weight(w, torch.float8_e4m3fn, granularity)
    x = torch.randn(2, 16, 8, 8, dtype=BF16).to(memory_format=memory_format)
    return x, w, q, scale, torch.randn(32, dtype=BF16) * 0.1


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("op", [ops.linear, ops.scaled_linear], ids=["cast", "scaled_mm"])
def test_linear_ops_match_reference(op, granularity, dtype):
    if op is ops.scaled_linear and granularity == "channel" and not ROWWISE_CPU:
        pytest.skip(f"torch {torch.__version__} has no per-row _scaled_mm on CPU")
    x, w, q, scale, b = _linear_case(granularity, dtype, bias=False)
    out = op(x, q, scale, None)
    ref = F.linear(x.float(), w)
    assert out.dtype == BF16 and out.shape == (2, 5, 48)
    assert sqnr(ref, out) > (25 if dtype == torch.float8_e4m3fn else 20)


@pytest.mark.parametrize("granularity", ["tensor", pytest.param("channel", marks=needs_rowwise_cpu)])
def test_bias_is_added_after_the_scale(granularity):
    x, w, q, scale, b = _linear_case(granularity)
    for op in (ops.linear, ops.scaled_linear):
        with_bias, without = op(x, q, scale, b), op(x, q, scale, None)
        torch.testing.assert_close(with_bias.float(), without.float() + b.float(), atol=2e-2, rtol=2e-2)


def test_output_keeps_activation_dtype():
    # vllm-omni's hook promoted outputs to float32 through the scale; ours must not.
    x, w, q, scale, b = _linear_case("channel")
    for dtype in (BF16, torch.float16, torch.float32):
        assert ops.linear(x.to(dtype), q, scale, b.to(dtype)).dtype == dtype


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_conv_op_matches_reference_and_keeps_layout(memory_format):
    x, w, q, scale, b = _conv_case("channel", memory_format)
    out = ops.conv(x, q, scale, b, [1, 1], [1, 1], [1, 1], 1)
    ref = F.conv2d(x.float(), w, b.float(), padding=1)
    assert sqnr(ref, out) > 25
    assert out.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("granularity", ["tensor", pytest.param("channel", marks=needs_rowwise_cpu)])
def test_scaled_conv_is_a_1x1_conv(granularity):
    x, w, q, scale, b = _conv_case(granularity, torch.channels_last, kernel=1)
    out = ops.scaled_conv(x, q, scale, b, [1, 1], [0, 0], [1, 1], 1)  # every conv op takes conv arguments
    assert sqnr(F.conv2d(x.float(), w, b.float()), out) > 20
    assert out.shape == (2, 32, 8, 8)


CASES = {
    "linear": lambda: (ops.linear, _linear_case("channel")[0:1] + _linear_case("channel")[2:]),
    "linear_tensor": lambda: (ops.linear, _linear_case("tensor")[0:1] + _linear_case("tensor")[2:]),
    "conv": lambda: (
        ops.conv,
        (*_conv_case("channel")[0:1], *_conv_case("channel")[2:], [1, 1], [1, 1], [1, 1], 1),
    ),
    "scaled_linear": lambda: (ops.scaled_linear, _linear_case("channel")[0:1] + _linear_case("channel")[2:]),
    "scaled_linear_tensor": lambda: (
        ops.scaled_linear,
        _linear_case("tensor")[0:1] + _linear_case("tensor")[2:],
    ),
    "scaled_conv": lambda: (
        ops.scaled_conv,
        (
            *_conv_case("tensor", torch.channels_last, 1)[0:1],
            *_conv_case("tensor", torch.channels_last, 1)[2:],
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        ),
    ),
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=needs_rowwise_cpu) if c == "scaled_linear" else c for c in CASES]
)
def test_opcheck(case):
    op, args = CASES[case]()
    results = torch.library.opcheck(op, args, test_utils=OPCHECKS)
    assert set(results.values()) == {"SUCCESS"}


def test_ops_are_named_in_the_fp8pass_namespace():
    names = {str(op) for op in ops.DECOMPOSITIONS}
    assert names == {
        "fp8pass.linear.default",
        "fp8pass.conv.default",
        "fp8pass.embedding.default",
        "fp8pass.scaled_linear.default",
        "fp8pass.scaled_conv.default",
    }


def test_cast_decomposition_is_cast_mm_then_scale(monkeypatch):
    """Traced with the decompositions off the CPU path (what a GPU compiles), the cast op becomes
    aten ops with the weight's only producer a dtype conversion, and the scale multiplying the
    matmul's output."""
    monkeypatch.setattr(ops, "uses_native", lambda w, d: False)
    monkeypatch.setattr(dequant, "uses_native", lambda w, d: False)
    x, w, q, scale, b = _linear_case("channel")
    gm = make_fx(lambda *a: torch.ops.fp8pass.linear(*a), decomposition_table=ops.DECOMPOSITIONS)(
        x, q, scale, b
    )
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert not any("fp8pass" in str(t) for t in targets)
    weight = list(gm.graph.nodes)[1]
    (convert,) = weight.users  # the fp8 weight feeds exactly one op: the cast
    assert convert.target == torch.ops.aten._to_copy.default and convert.kwargs["dtype"] == BF16
    (mul,) = _through_views(list(gm.graph.nodes)[2]).users
    assert mul.target == torch.ops.aten.mul.Tensor
    # the other factor is the matmul output (upcast), not anything derived from the weight
    (other,) = [n for n in mul.all_input_nodes if n is not _through_views(list(gm.graph.nodes)[2])]
    assert _producer_chain(other)[-1] in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)
    torch.testing.assert_close(gm(x, q, scale, b), ops.linear(x, q, scale, b))


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_cpu_cast_decomposition_is_the_bf16_matmul_on_a_scaled_conversion(granularity):
    """On a CPU the weight is converted already scaled by one op call, and the layer is the bf16
    model's own matmul with its bias: no op after it (what keeps Inductor's kernels and a small
    layer's cost those of the bf16 model)."""
    x, w, q, scale, b = _linear_case(granularity)
    gm = make_fx(lambda *a: torch.ops.fp8pass.linear(*a), decomposition_table=ops.DECOMPOSITIONS)(
        x, q, scale, b
    )
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    weight, scale_node = list(gm.graph.nodes)[1:3]
    (convert,) = weight.users
    assert convert.target == torch.ops.fp8pass.fp8_scaled_to_cpu.default and scale_node in convert.args
    assert targets.count(torch.ops.fp8pass.fp8_scaled_to_cpu.default) == 1
    assert not {torch.ops.aten.mul.Tensor, torch.ops.aten._to_copy.default} & set(targets), targets
    assert torch.ops.aten.addmm.default in targets  # the bias goes into the matmul
    view = scale.view(-1, 1) if scale.dim() else scale
    ref = F.linear(x, (q.float() * view).to(BF16), b)
    assert torch.equal(gm(x, q, scale, b), ref)


def _through_views(node):
    while len(node.users) == 1 and next(iter(node.users)).target in (
        torch.ops.aten.view.default,
        torch.ops.aten._unsafe_view.default,
    ):
        node = next(iter(node.users))
    return node


def _producer_chain(node):
    """Targets from ``node`` back through single-input dtype casts and views."""
    chain = [node.target]
    while node.target in (
        torch.ops.aten._to_copy.default,
        torch.ops.aten.view.default,
        torch.ops.aten._unsafe_view.default,
    ):
        node = node.all_input_nodes[0]
        chain.append(node.target)
    return chain


@pytest.mark.parametrize("granularity", ["tensor", pytest.param("channel", marks=needs_rowwise_cpu)])
def test_scaled_decomposition_quantizes_activation_with_plain_ops(granularity):
    x, w, q, scale, b = _linear_case(granularity)
    gm = make_fx(lambda *a: torch.ops.fp8pass.scaled_linear(*a), decomposition_table=ops.DECOMPOSITIONS)(
        x, q, scale, b
    )
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert torch.ops.aten._scaled_mm.default in targets
    assert {torch.ops.aten.abs.default, torch.ops.aten.amax.default, torch.ops.aten.clamp.default} <= targets
    # the weight reaches _scaled_mm through a transpose view only: no per-call copy
    weight = list(gm.graph.nodes)[1]
    (t,) = weight.users
    assert t.target in (torch.ops.aten.t.default, torch.ops.aten.permute.default)
    assert [u.target for u in t.users] == [torch.ops.aten._scaled_mm.default]
    torch.testing.assert_close(gm(x, q, scale, b), ops.scaled_linear(x, q, scale, b))


def test_the_compile_cache_key_covers_the_ops_definition_and_nothing_else(tmp_path):
    """Inductor's caches key fp8pass's graphs on a hash of what defines the ops' results: an edit
    to the harness, the planner or the report keeps users' compiled kernels; an edit to an op's
    math or the conversion it calls does not."""
    import shutil
    from pathlib import Path

    import fp8pass

    copy = tmp_path / "fp8pass"
    shutil.copytree(Path(fp8pass.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = ops.definition_hash(copy)
    assert base == ops.definition_hash()
    for unrelated in ("bench/zoo.py", "plan.py", "report.py", "cli.py"):
        (copy / unrelated).write_text((copy / unrelated).read_text() + "\n# an edit\n")
        assert ops.definition_hash.__wrapped__(copy) == base, unrelated
    for defining in (
        "ops.py",
        "dequant.py",
        "native.py",
        "quantize.py",
        "_compat/matmul.py",
        "_compat/inductor.py",
    ):
        edited = tmp_path / defining.replace("/", "_")
        shutil.copytree(copy, edited)
        (edited / defining).write_text((edited / defining).read_text() + "\n# an edit\n")
        assert ops.definition_hash(edited) != base, defining
