import copy
import dataclasses
import io
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch._inductor.utils import run_and_get_code

import fp8pass
from fp8pass import FP8Backend, FP8Config, store
from fp8pass._compat.storage import is_released
from fp8pass.bench import zoo
from fp8pass.computes import has_fp8_matmul

from .helpers import (
    BF16,
    TOY_CONVERTED,
    TOY_CONVERTED_WEIGHTS,
    TOY_MIN_DB,
    ToyDenoiser,
    assert_converted,
    compile_fp8,
    conversion_calls,
    cuda_only,
    fake_fp8_output,
    live_cpu_tensor_bytes,
    needs_rowwise_cpu,
    run,
    sqnr,
)

# -- fidelity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
@pytest.mark.parametrize("inner", ["eager", "aot_eager"])
def test_cast_sqnr(toy, toy_input, inner, granularity):
    original = copy.deepcopy(toy)
    ref = run(original, toy_input)
    config = FP8Config(compute="cast", granularity=granularity)
    cm, be = compile_fp8(toy, config, inner=inner, fullgraph=True)
    out = run(cm, toy_input)
    rows = assert_converted(be, toy, TOY_CONVERTED)
    assert sqnr(ref, out) > TOY_MIN_DB
    # bit for bit the FP8 arithmetic an independent implementation does eagerly (tests/helpers.py)
    assert sqnr(fake_fp8_output(original, rows, (toy_input,), config), out) == float("inf")


@pytest.mark.parametrize("granularity", ["tensor", pytest.param("channel", marks=needs_rowwise_cpu)])
def test_scaled_mm_sqnr(toy, toy_input, granularity):
    original = copy.deepcopy(toy)
    ref = run(original, toy_input)
    config = FP8Config(compute="scaled_mm", granularity=granularity)
    cm, be = compile_fp8(toy, config, fullgraph=True)
    out = run(cm, toy_input)
    rows = assert_converted(be, toy, TOY_CONVERTED)
    assert sqnr(ref, out) > TOY_MIN_DB
    assert sqnr(fake_fp8_output(original, rows, (toy_input,), config), out) > 60
    computes = {r.name: r.compute for r in be.report() if r.converted}
    # fc1 / fc2 are 64->128->64 linears; the 3x3 convs stay on the cast path
    assert computes == {
        "conv": "cast",
        "conv3d": "cast",
        "fc1": "scaled_mm",
        "fc2": "scaled_mm",
        "fc2_tied": "scaled_mm",
    }


def test_e5m2_storage(toy, toy_input):
    ref = run(copy.deepcopy(toy), toy_input)
    cm, be = compile_fp8(toy, FP8Config(dtype=torch.float8_e5m2))
    assert sqnr(ref, run(cm, toy_input)) > 36  # e5m2: 2 mantissa bits; measured 40.8 dB
    assert {r.dtype for r in be.report() if r.converted} == {"float8_e5m2"}
    stored = {e.q.dtype for p in toy.parameters() for e in store.entries(p)}  # what is really held
    assert stored == {torch.float8_e5m2}


# -- graphs ------------------------------------------------------------------------------------


def test_fullgraph_has_no_graph_breaks(toy, toy_input):
    torch._dynamo.utils.counters.clear()
    cm, be = compile_fp8(toy, fullgraph=True)
    run(cm, toy_input)
    run(cm, toy_input)
    assert be.num_graphs == 1  # and the eager-call guards added after compiling cause no recompile
    assert not torch._dynamo.utils.counters["graph_break"]


def test_report(toy, toy_input):
    cm, be = compile_fp8(toy)
    run(cm, toy_input)
    rows = {r.name: r for r in be.report()}
    assert {n for n, r in rows.items() if r.converted} == TOY_CONVERTED
    assert rows["fc1"].kind == "linear" and rows["conv3d"].kind == "conv"
    assert rows["fc1"].compute == "cast" and rows["conv_in"].compute is None
    assert rows["fc1"].bytes_before == 64 * 128 * 2
    assert rows["fc1"].bytes_after == 64 * 128 + 128 * 4  # fp8 bytes + one fp32 scale per channel
    assert rows["fc1"].released and not rows["conv_in"].released
    assert rows["fc2_tied"].bytes_before == 0 and "counted under 'fc2'" in rows["fc2_tied"].note
    assert rows["proj_out"].reason.startswith("output layer: reads the other layers' output")
    table = be.report_table()
    assert "5/7 layers converted" in table and "conv3d" in table


# -- memory ------------------------------------------------------------------------------------


def _fp8_bytes(rows):
    converted = [r for r in rows if r.converted]
    return sum(r.bytes_before for r in converted), sum(r.bytes_after for r in converted)


def test_memory_really_drops():
    torch.manual_seed(0)
    model = ToyDenoiser(ch=256, hidden=512).to(BF16).requires_grad_(False)
    x = torch.randn(1, 4, 8, 8, dtype=BF16)
    before = live_cpu_tensor_bytes()
    cm, be = compile_fp8(model)
    out = run(cm, x)
    del out
    after = live_cpu_tensor_bytes()
    bf16_bytes, fp8_bytes = _fp8_bytes(be.report())
    scale_bytes = sum(4 * r.shape[0] for r in be.report() if r.converted and r.bytes_before)
    assert bf16_bytes > 2_500_000
    # the FP8 copies take at most 0.51x the bf16 bytes, plus their scales ...
    assert fp8_bytes <= 0.51 * bf16_bytes + scale_bytes
    # ... every converted weight's original storage is gone ...
    assert all(
        p.untyped_storage().nbytes() == 0 for p in (model.conv.weight, model.conv3d.weight, model.fc1.weight)
    )
    # ... and the process holds that much less: live tensors shrank by the bf16 bytes minus the
    # fp8 bytes, give or take 2% of the bf16 bytes for what Dynamo and AOT autograd keep.
    assert after - before <= fp8_bytes - bf16_bytes + 0.02 * bf16_bytes
    # the model keeps its visible dtype, device and shapes
    assert model.conv.weight.dtype == BF16 and model.fc1.weight.shape == (512, 256)
    assert next(model.parameters()).device.type == "cpu"


def test_eager_call_after_conversion_is_refused_clearly(toy, toy_input):
    cm, _ = compile_fp8(toy)
    run(cm, toy_input)
    with pytest.raises(
        RuntimeError, match=r"fp8pass: 'conv' \(Conv2d\) cannot run eagerly.*release_weights=False"
    ):
        run(toy, toy_input)
    state = toy.state_dict()  # every key is there (LoRA hot-swapping reads them) ...
    assert set(state) == {n for n, _ in toy.named_parameters(remove_duplicate=False)}
    assert state["conv.weight"] is toy.conv.weight
    with pytest.raises(RuntimeError, match="cannot pickle or save 'conv.weight'"):  # ... but no released data
        torch.save(state, io.BytesIO())
    assert not is_released(state["conv_in.weight"])  # kept weights are as usual
    for move in (lambda: toy.to(torch.float16), lambda: toy.float()):
        with pytest.raises(
            RuntimeError, match=r"cannot move or cast the model \(.to\(\).*weight of '(conv|fc1)\.weight'"
        ):
            move()
    with pytest.raises(RuntimeError, match=r"cannot move or cast conv .* weight of 'conv\.weight'"):
        toy.conv.half()
    assert {p.dtype for p in toy.parameters()} == {BF16}  # the refused moves changed nothing
    run(cm, toy_input)  # the compiled module still works
    toy.conv_in.float()  # and a layer that kept its weights still moves
    assert toy.conv_in.weight.dtype == torch.float32


def test_release_weights_false_keeps_eager_working(toy, toy_input):
    ref = run(copy.deepcopy(toy), toy_input)
    nbytes = toy.fc1.weight.untyped_storage().nbytes()
    cm, be = compile_fp8(toy, FP8Config(release_weights=False))
    assert sqnr(ref, run(cm, toy_input)) > TOY_MIN_DB
    assert_converted(be, toy, TOY_CONVERTED)
    assert toy.fc1.weight.untyped_storage().nbytes() == nbytes
    torch.testing.assert_close(run(toy, toy_input), ref, rtol=0, atol=0)
    assert not any(r.released for r in be.report())


# -- recompiles and graph breaks ---------------------------------------------------------------


def test_recompiles_reuse_the_fp8_copies(toy):
    reference = copy.deepcopy(toy)
    cm, be = compile_fp8(toy)
    shapes = [(2, 4, 16, 16), (3, 4, 16, 16), (2, 4, 24, 24)]
    live = []
    for shape in shapes:
        x = torch.randn(shape, dtype=BF16)
        assert sqnr(run(reference, x), run(cm, x)) > TOY_MIN_DB
        del x  # measure what the compiled model holds, not this loop's input
        live.append(live_cpu_tensor_bytes())
    assert be.num_graphs >= 2  # the shape changes did recompile ...
    assert be.num_quantized == TOY_CONVERTED_WEIGHTS  # ... and nothing was quantized twice
    _, fp8_bytes = _fp8_bytes(be.report())
    assert max(live) - live[0] < 0.1 * fp8_bytes  # no second copy of any weight


def test_dynamic_shapes(toy):
    reference = copy.deepcopy(toy)
    cm, be = compile_fp8(toy, dynamic=True)
    # no 1s and no equal sizes: Dynamo specializes the former and duck-sizes the latter
    for shape in [(2, 4, 8, 16), (3, 4, 16, 8), (5, 4, 24, 32)]:
        x = torch.randn(shape, dtype=BF16)
        assert sqnr(run(reference, x), run(cm, x)) > TOY_MIN_DB
    assert be.num_graphs == 1 and be.num_quantized == TOY_CONVERTED_WEIGHTS


class Broken(nn.Module):
    """A weight used on both sides of a graph break."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(128, 128)
        self.b = nn.Linear(128, 128)
        self.b.weight = self.a.weight

    def forward(self, x):
        h = self.a(x)
        torch._dynamo.graph_break()
        return self.b(torch.relu(h))


def test_graph_break_shares_the_fp8_copy():
    torch.manual_seed(0)
    model = Broken().to(BF16).requires_grad_(False)
    x = torch.randn(4, 128, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    cm, be = compile_fp8(model, FP8Config(keep_boundary=False))  # two layers, no blocks: both convert
    assert sqnr(ref, run(cm, x)) > 25
    assert be.num_graphs == 2 and be.num_quantized == 1
    assert [r.converted for r in be.report()] == [True, True]


def test_one_weight_store_across_backends(toy, toy_input):
    cm, first = compile_fp8(toy)
    run(cm, toy_input)
    torch._dynamo.reset()
    cm2, second = compile_fp8(toy)
    ref_second = run(cm2, toy_input)
    assert second.num_quantized == 0 and torch.isfinite(ref_second).all()
    torch._dynamo.reset()
    cm3, third = compile_fp8(toy, FP8Config(granularity="tensor"))
    with pytest.raises(Exception, match="already converted to FP8 with another dtype/granularity"):
        run(cm3, toy_input)


# -- inference only ----------------------------------------------------------------------------


def test_grad_mode_with_trainable_weights_is_refused(toy_input):
    model = ToyDenoiser().to(BF16)  # requires_grad=True
    cm, _ = compile_fp8(model)
    with pytest.raises(Exception, match=r"fp8pass is inference-only.*torch.no_grad\(\)"):
        cm(toy_input)
    assert model.fc1.weight.untyped_storage().nbytes() > 0  # nothing was released


def test_trainable_weights_under_no_grad_are_fine(toy_input):
    model = ToyDenoiser().to(BF16)
    cm, be = compile_fp8(model)
    assert torch.isfinite(run(cm, toy_input)).all()
    assert len([r for r in be.report() if r.converted]) == 5


# -- construction, registration, import ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"inner": "tvm"}, "FP8Backend inner must be one of 'inductor', 'aot_eager', 'eager'"),
        ({"mode": "fast"}, "FP8Backend mode must be one of"),
        ({"options": "max_autotune"}, "FP8Backend options must be a dict"),
        ({"inner": "aot_eager", "mode": "max-autotune"}, "apply to inner='inductor' only"),
        ({"config": {"compute": "cast"}}, "must be an FP8Config"),
    ],
)
def test_backend_arguments_are_validated(kwargs, match):
    config = kwargs.pop("config", None)
    with pytest.raises(ValueError, match=re.escape(match)):
        FP8Backend(config, **kwargs)


def test_inductor_options_reach_inductor(toy, toy_input):
    cm = torch.compile(toy, backend=FP8Backend(inner="inductor", options={"no_such_option": 1}))
    with pytest.raises(Exception, match="no_such_option"):
        run(cm, toy_input)


def test_inductor_options_apply_to_fp8pass_graphs_only(toy, toy_input):
    """Settings such as coordinate-descent tuning are patched in for the backend's own compiles
    and nowhere else."""
    seen = []

    def spy(graph):
        seen.append(torch._inductor.config.coordinate_descent_tuning)

    options = {"coordinate_descent_tuning": True, "post_grad_custom_post_pass": spy}
    run(torch.compile(toy, backend=FP8Backend(inner="inductor", options=options)), toy_input)
    assert seen == [True] and torch._inductor.config.coordinate_descent_tuning is False


def test_registered_name():
    assert torch._dynamo.lookup_backend("fp8pass") is fp8pass.fp8_backend
    assert "fp8pass" in torch._dynamo.list_backends()


@pytest.mark.parametrize(
    "preamble",
    [
        "import torch",  # the README's one-liner in a fresh process: torch loads the entry point
        "import torch, fp8pass",
        "import torch, torch._dynamo; torch._dynamo.list_backends(); import fp8pass",
        "import torch, torch._dynamo; import fp8pass",
    ],
    ids=["not-imported", "imported-first", "entry-points-found-then-imported", "dynamo-then-imported"],
)
def test_backend_name_resolves_in_a_fresh_process(preamble):
    """The installed package registers "fp8pass" exactly once, whichever of torch (through the
    entry point) and ``import fp8pass`` gets there first (it used to raise "duplicate name")."""
    from importlib.metadata import entry_points

    assert "fp8pass" in entry_points(group="torch_dynamo_backends").names, (
        "install the package (pip install -e .)"
    )
    code = (
        f"{preamble}\n"
        "m = torch.nn.Linear(64, 64)\n"
        "torch.compile(m, backend='fp8pass')\n"
        "import fp8pass\n"
        "assert torch._dynamo.lookup_backend('fp8pass') is fp8pass.fp8_backend\n"
        "assert 'fp8pass' in torch._dynamo.list_backends()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_a_graph_without_inputs_passes_through():
    """After a graph break Dynamo may hand over a graph built from Python numbers alone (WanAnimate2's
    RoPE table): nothing to convert, so it compiles as it is."""
    be = FP8Backend(inner="aot_eager")

    def table(n):
        return torch.outer(torch.arange(n, dtype=torch.float32), torch.ones(4)).sin()

    out = torch.compile(table, backend=be, fullgraph=True)(6)
    torch.testing.assert_close(out, table(6))
    assert be.num_graphs == 1 and be.report() == []
    assert "1 graph(s) holding no linear or convolution layer" in be.report_table()


def test_mode_and_options_given_to_torch_compile_reach_inductor(toy, toy_input):
    """torch.compile(m, backend=..., mode=...) hands mode / options to the backend (it used to raise a
    bare TypeError); they apply to that compile."""
    seen = []
    spy = {"post_grad_custom_post_pass": lambda graph: seen.append(torch._inductor.config.max_autotune)}
    be = FP8Backend(inner="inductor", options=spy)
    with torch.no_grad():
        torch.compile(toy, backend=be, options={"max_autotune": True, "max_autotune_gemm_backends": "ATEN"})(
            toy_input
        )
    assert seen == [True] and any(r.converted for r in be.report())
    with pytest.raises(Exception, match="mode/options apply to inner='inductor' only"):
        fresh = ToyDenoiser().to(BF16).requires_grad_(False)
        run(torch.compile(fresh, backend=FP8Backend(inner="aot_eager"), mode="max-autotune"), toy_input)


def test_the_string_backend_takes_a_mode():
    with pytest.raises(Exception, match=r"mode must be one of .*'max-autotune'"):
        run(torch.compile(nn.Linear(64, 64), backend="fp8pass", mode="fastest"), torch.randn(2, 64))


def test_compiled_graphs_are_not_kept_unless_asked(toy, toy_input):
    cm, be = compile_fp8(toy)
    run(cm, toy_input)
    assert be.num_graphs == 1 and be.graphs == []
    kept = FP8Backend(inner="eager", keep_graphs=True)
    run(torch.compile(ToyDenoiser().to(BF16).requires_grad_(False), backend=kept), toy_input)
    ((code, gm),) = kept.graphs
    assert "fp8pass.linear" in gm.code and "fp8pass" not in code


def test_report_before_the_first_call_says_why_it_is_empty(toy):
    cm, be = compile_fp8(toy)
    assert "conversion happens when the compiled model is first called" in be.report_table()


def test_import_touches_neither_inductor_nor_cuda():
    code = (
        "import sys, torch, fp8pass\n"
        "assert 'torch._inductor' not in sys.modules, 'inductor imported'\n"
        "assert 'torch._dynamo' not in sys.modules, 'dynamo imported'\n"
        "assert not torch.cuda.is_initialized(), 'cuda initialized'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_uses_the_weights_device(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: asked.append(d) or (9, 0))
    assert not has_fp8_matmul(torch.device("cpu"))
    assert has_fp8_matmul(torch.device("cuda", 1)) and asked == [torch.device("cuda", 1)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: (8, 6))
    assert not has_fp8_matmul(torch.device("cuda", 0))


# -- real Inductor compiles (slow on CPU: one per compute path) ----------------------------------


_DEF = re.compile(r"auto (tmp\d+) = (.*);")
_PURE_CAST = re.compile(r"^(at::vec::convert|c10::convert|static_cast)<[^()]*>\((tmp\d+)\)$")


def _fp8_value_misuse(kernel: str) -> tuple[int, list[str]]:
    """Follow every value loaded from an fp8 pointer of a generated C++ kernel until it is stored.
    Returns (number of fp8 loads, lines where such a value takes part in anything but a cast)."""
    pointers = re.findall(r"const at::Float8_e4m3fn\* (\w+)", kernel)
    lines = [line.strip() for line in kernel.splitlines()]
    loads, misuse = 0, []
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if not m or not any(re.search(rf"\b{p}\b", m.group(2)) for p in pointers):
            continue
        loads += 1
        derived = {m.group(1)}
        for later in lines[i + 1 :]:
            used = [v for v in derived if re.search(rf"\b{v}\b", later)]
            if not used:
                continue
            d = _DEF.match(later)
            if d and _PURE_CAST.match(d.group(2)):
                derived.add(d.group(1))
            elif ".store(" in later or later.startswith("transpose_mxn") or re.match(r"out_ptr\d+\[", later):
                break
            else:
                misuse.append(later)
                break
    return loads, misuse


@pytest.mark.inductor
def test_inductor_cast_path_converts_each_weight_in_one_call(toy, toy_input):
    """On the CPU each FP8 weight (a graph input) goes through exactly one call of
    ``fp8pass::fp8_scaled_to_cpu``'s kernel with its own scale and the activation dtype, called
    directly rather than through the dispatcher, and no kernel Inductor generates reads an FP8
    value: the layer after it is the bf16 model's matmul."""
    ref = run(copy.deepcopy(toy), toy_input)
    cm, be = compile_fp8(toy, FP8Config(compute="cast"), inner="inductor", fullgraph=True)
    with torch.no_grad():
        out, codes = run_and_get_code(cm, toy_input)
    (code,) = codes  # the model's graph and nothing else: no compile of fp8pass's own
    assert sqnr(ref, out) > 25
    kernels = re.findall(r"async_compile\.cpp_pybinding\(.*?r\'\'\'(.*?)\'\'\'", code, flags=re.S)
    assert [_fp8_value_misuse(k) for k in kernels] == [(0, [])] * len(kernels)
    calls = conversion_calls(code)
    assert "fp8_to_cpu_kernel(" not in code
    pairs = dict(calls)  # a shared weight is converted per use, always with its own scale
    assert len(pairs) == len(set(pairs.values())) == TOY_CONVERTED_WEIGHTS
    assert all(pairs[w] == s for w, s in calls)


def test_fp8_value_tracker_catches_a_scaled_weight():
    kernel = """
        const at::Float8_e4m3fn* in_ptr0, const float* in_ptr1
        auto tmp0 = at::vec::Vectorized<at::Float8_e4m3fn>::loadu(in_ptr0 + x0, 16);
        auto tmp1 = at::vec::convert<float>(tmp0);
        auto tmp2 = tmp1 * tmp3;
        tmp2.store(out_ptr0 + x0, 16);
    """
    assert _fp8_value_misuse(kernel) == (1, ["auto tmp2 = tmp1 * tmp3;"])
    assert _fp8_value_misuse(kernel.replace("tmp1 * tmp3", "at::vec::convert<at::BFloat16>(tmp1)")) == (1, [])


@pytest.mark.inductor
@needs_rowwise_cpu
def test_inductor_scaled_mm_path(toy, toy_input):
    ref = run(copy.deepcopy(toy), toy_input)
    cm, be = compile_fp8(toy, FP8Config(compute="scaled_mm"), inner="inductor", fullgraph=True)
    with torch.no_grad():
        out, codes = run_and_get_code(cm, toy_input)
    assert sqnr(ref, out) > 20
    assert codes[0].count("_scaled_mm") >= 3  # fc1, fc2, fc2_tied


@pytest.mark.inductor
def test_registered_name_compiles_with_inductor():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64))
    model = nn.Sequential(nn.Linear(64, 64), mlp, nn.Linear(64, 64)).to(BF16).requires_grad_(False)
    x = torch.randn(8, 64, dtype=BF16)
    ref = run(copy.deepcopy(model), x)
    out = run(torch.compile(model, backend="fp8pass"), x)
    assert sqnr(ref, out) > 25
    # the block (a composite element of the Sequential) converts; the layers around it are the boundary
    assert {r.name for r in fp8pass.fp8_backend.report() if r.converted} >= {"1.0", "1.2"}


# -- CUDA ----------------------------------------------------------------------------------------


@cuda_only
def test_cuda_memory_drops():
    torch.manual_seed(0)
    model = ToyDenoiser(ch=256, hidden=512).to("cuda", BF16).requires_grad_(False)
    x = torch.randn(1, 4, 8, 8, dtype=BF16, device="cuda")
    run(model, x)  # cuBLAS allocates its workspace (33 MiB on an H100) at the first matmul: not ours
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    cm, be = compile_fp8(model, FP8Config(compute="cast"))
    run(cm, x)  # the output is dropped at once
    torch.cuda.synchronize()
    bf16_bytes, fp8_bytes = _fp8_bytes(be.report())
    assert torch.cuda.memory_allocated() - before <= fp8_bytes - bf16_bytes + 0.05 * bf16_bytes


@cuda_only
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0), reason="needs sm90"
)
def test_cuda_max_autotune_fuses_the_cast_into_the_matmul():
    """With Inductor's Triton matmul templates (max-autotune), the template loads the fp8 weight
    itself (prologue fusion): no bf16 copy of the weight is written. Triton only: with cuBLAS among
    the choices, autotuning may pick it for a shape, and then the cast is a kernel of its own (seen
    on an H100 for this shape)."""
    torch.manual_seed(0)
    model = nn.Linear(1024, 1024).to("cuda", BF16).requires_grad_(False)
    x = torch.randn(64, 1024, dtype=BF16, device="cuda")
    ref = run(copy.deepcopy(model), x)
    be = FP8Backend(
        FP8Config(compute="cast", min_weight_numel=0, skip=(), keep_boundary=False),
        mode="max-autotune-no-cudagraphs",
        options={"max_autotune_gemm_backends": "TRITON"},
    )
    with torch.no_grad():
        out, (code,) = run_and_get_code(torch.compile(model, backend=be), x)
    assert sqnr(ref, out) > 25
    kernels = code.split("@triton.jit")
    summary = [(k.count("tl.dot"), k.count("fp8e4nv")) for k in kernels[1:]]
    assert any("tl.dot" in k and "fp8e4nv" in k for k in kernels), (
        f"no matmul kernel reads the fp8 weight: (tl.dot, fp8e4nv) per kernel {summary}; "
        f"extern mm: {'extern_kernels.mm' in code or 'extern_kernels.addmm' in code}"
    )


@cuda_only
def test_cuda_graphs_keep_the_fp8_weights_in_place():
    """mode="reduce-overhead": the graph is recorded once and replayed; the only input CUDA graphs
    copy on each replay is the activation (the FP8 weights and parameters are static inputs)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = ToyDenoiser(ch=256, hidden=512).to("cuda", BF16).requires_grad_(False)
    x = torch.randn(1, 4, 8, 8, dtype=BF16, device="cuda")
    ref = run(copy.deepcopy(model), x)
    counters.clear()
    cm = torch.compile(model, backend=FP8Backend(FP8Config(compute="cast"), mode="reduce-overhead"))
    outs = [run(cm, x).clone() for _ in range(4)]
    assert all(sqnr(ref, out) > 25 for out in outs)
    torch.testing.assert_close(outs[2], outs[3], rtol=0, atol=0)
    assert counters["inductor"]["cudagraph_skips"] == 0
    assert counters["inductor"]["cudagraph_recorded_non_static_inputs"] == 1


@cuda_only
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="FP8 matmuls need compute capability 8.9 (Ada) or newer",
)
@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_cuda_auto_runs_real_fp8_matmuls_on_sm89(granularity):
    """compute="auto" picks scaled_mm on sm89+, and what runs is an FP8 matmul: the output matches
    the activation-and-weight FP8 arithmetic done independently (tests/helpers.py), which the
    cast path would not (its activations are not rounded to e4m3).

    One layer: behind a second one, a last-bit difference in the first one's bf16 output moves
    a row's activation scale, which re-rounds much of that row to e4m3 (on an H100, per row: 40.8
    dB against 33.0 for the cast arithmetic, too close to tell the paths apart)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512)).to("cuda", BF16)
    zoo.init_weights(model)
    model.requires_grad_(False)
    x = torch.randn(64, 256, dtype=BF16, device="cuda")
    original = copy.deepcopy(model)
    config = FP8Config(granularity=granularity, min_weight_numel=0, skip=(), keep_boundary=False)
    cm, be = compile_fp8(model, config, inner="inductor")
    out = run(cm, x)
    rows = assert_converted(be, model, {"0"})
    assert {r.compute for r in rows} == {"scaled_mm"}
    with_act = sqnr(fake_fp8_output(original, rows, (x,), config), out)
    cast_rows = [dataclasses.replace(r, compute="cast") for r in rows]
    without_act = sqnr(fake_fp8_output(original, cast_rows, (x,), config), out)
    assert with_act > 40 and with_act > without_act + 10, (with_act, without_act)


class Autocast(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 128), nn.Linear(128, 64)

    def forward(self, x):
        with torch.autocast("cpu", dtype=BF16):
            return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("compute", ["cast", "scaled_mm"])
@pytest.mark.parametrize("inner", ["eager", "aot_eager"])
def test_fp32_model_under_autocast_keeps_the_autocast_dtype(inner, compute):
    torch.manual_seed(0)
    model = Autocast().requires_grad_(False)  # float32 weights, bf16 compute through autocast
    x = torch.randn(4, 64)
    ref = run(copy.deepcopy(model), x)
    config = FP8Config(compute=compute, min_weight_numel=0, keep_boundary=False)  # no blocks: convert both
    cm, be = compile_fp8(model, config, inner=inner)
    out = run(cm, x)
    assert_converted(be, model, {"fc1", "fc2"})
    assert ref.dtype == out.dtype == BF16
    assert sqnr(ref, out) > 25


# -- restore ---------------------------------------------------------------------------------------


def test_restore_with_cpu_copies(toy, toy_input):
    ref = run(copy.deepcopy(toy), toy_input)
    originals = {n: p.clone() for n, p in toy.named_parameters()}
    cm, be = compile_fp8(toy, FP8Config(release_weights="cpu"))
    assert sqnr(ref, run(cm, toy_input)) > TOY_MIN_DB
    assert toy.fc1.weight.untyped_storage().nbytes() == 0
    assert fp8pass.restore(toy) == TOY_CONVERTED_WEIGHTS
    for n, p in toy.named_parameters():
        assert torch.equal(p, originals[n]), n  # bit for bit
    torch.testing.assert_close(run(toy, toy_input), ref, rtol=0, atol=0)  # eager works again
    toy.state_dict()
    toy.to(torch.float32).to(BF16)  # and so do moves
    assert sqnr(ref, run(cm, toy_input)) > TOY_MIN_DB  # the compiled model converts again on its next call


def test_restore_without_copies_is_refused_before_changing_anything(toy, toy_input):
    cm, _ = compile_fp8(toy)
    run(cm, toy_input)
    with pytest.raises(
        RuntimeError, match=r"fp8pass.restore: the original weights of 4 parameters .*release_weights='cpu'"
    ):
        fp8pass.restore(toy)
    with pytest.raises(RuntimeError, match="cannot run eagerly"):  # still guarded
        run(toy, toy_input)
