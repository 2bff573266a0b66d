"""Compile cost: a second process gains from Inductor's caches as plain Inductor does, portable
cache artifacts carry a compile to a fresh machine, and changing resolutions makes a bounded
number of graphs. (The timings themselves are benchmarks/compile_cost.py's, not a test's.)"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fp8pass
from fp8pass import FP8Backend, FP8Config
from fp8pass.bench import zoo

# Compiles the toy with fp8pass's Inductor backend in a fresh process and prints Inductor's and
# AOTAutograd's cache counters; with SAVE / LOAD it writes / reads torch.compiler's portable
# cache artifacts.
_CHILD = """
import json, os, sys, torch
from torch._dynamo.utils import counters
from fp8pass import FP8Backend
if os.environ.get("LOAD"):
    torch.compiler.load_cache_artifacts(open(os.environ["LOAD"], "rb").read())
torch.manual_seed(0)
block = lambda: torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
model = torch.nn.Sequential(*(block() for _ in range(2))).to(torch.bfloat16).requires_grad_(False)
with torch.no_grad():
    torch.compile(model, backend=FP8Backend())(torch.randn(8, 64, dtype=torch.bfloat16))
if os.environ.get("SAVE"):
    artifacts, _ = torch.compiler.save_cache_artifacts()
    open(os.environ["SAVE"], "wb").write(artifacts)
print(json.dumps({k: dict(counters[k]) for k in ("inductor", "aot_autograd")}))
"""


def _compile_in_a_fresh_process(cache_dir, CHILD=_CHILD, cwd=None, **env):
    run = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=cwd,
        env={**__import__("os").environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir), **env},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.inductor
def test_a_second_process_and_portable_artifacts_hit_inductors_caches(tmp_path):
    """fp8pass used to hand Inductor its decompositions as a compile_fx argument, which made every
    compile bypass the FX graph cache and the AOTAutograd cache; now a second process compiles from
    them, as plain Inductor does, and torch.compiler's portable cache artifacts (saved after a
    compile, loaded where the cache directory is empty: another machine) warm a fresh process."""
    artifacts = tmp_path / "fp8pass.bin"
    first = _compile_in_a_fresh_process(tmp_path / "cache", SAVE=str(artifacts))
    assert first["inductor"].get("fxgraph_cache_miss") and first["aot_autograd"].get("autograd_cache_saved")
    for warm in (
        _compile_in_a_fresh_process(tmp_path / "cache"),
        _compile_in_a_fresh_process(tmp_path / "elsewhere", LOAD=str(artifacts)),
    ):
        # every compile (the model's graph, and fp8pass's CPU conversion op on its first use) hits
        assert warm["aot_autograd"].get("autograd_cache_hit") == warm["aot_autograd"]["total"] >= 1, warm
        assert not warm["inductor"].get("fxgraph_cache_bypass") and not warm["aot_autograd"].get(
            "autograd_cache_miss"
        )


# One linear layer converted on the cast path; prints which fp8pass ran, how far the compiled
# output is from the layer's own (relative), and the AOTAutograd cache counters.
_ONE_LAYER = """
import json, torch
from torch._dynamo.utils import counters
import fp8pass
from fp8pass import FP8Backend, FP8Config
torch.manual_seed(0)
layer = torch.nn.Linear(256, 256).to(torch.bfloat16).requires_grad_(False)
x = torch.randn(64, 256, dtype=torch.bfloat16)
be = FP8Backend(FP8Config(compute="cast", skip=(), keep_boundary=False, min_weight_numel=0))
with torch.no_grad():
    ref = layer(x).float()
    out = torch.compile(layer, backend=be)(x).float()
assert be.num_quantized == 1
print(json.dumps({"package": fp8pass.__file__, "error": ((out - ref).norm() / ref.norm()).item(),
                  "aot_autograd": dict(counters["aot_autograd"])}))
"""


@pytest.mark.inductor
def test_an_upgraded_fp8pass_does_not_reuse_graphs_an_older_one_compiled(tmp_path):
    """What an fp8pass op computes lives in fp8pass's decompositions, which Inductor's caches do
    not hash: the AOTAutograd cache is keyed on Dynamo's graph, where the op is one opaque call.
    A cache directory filled by an older fp8pass then handed its kernels to a newer one (CI hit
    this: the cast path's kernel from before fp8pass.dequant). Here the older fp8pass is a copy of
    this one with a bug put in (the scale's sign flipped), imported from its own directory."""
    old = tmp_path / "old"
    shutil.copytree(
        Path(fp8pass.__file__).parent, old / "fp8pass", ignore=shutil.ignore_patterns("__pycache__")
    )
    ops = old / "fp8pass" / "ops.py"
    line = "return F.linear(x, fp8_scaled_to(weight, scale, x.dtype), _in(bias, x.dtype))"
    assert line in ops.read_text()
    ops.write_text(ops.read_text().replace(line, line.replace("(weight, scale,", "(weight, -scale,")))

    def compile_one_layer(cwd):  # `python -c` imports from its working directory first
        return _compile_in_a_fresh_process(tmp_path / "cache", CHILD=_ONE_LAYER, cwd=cwd)

    before = compile_one_layer(old)
    assert before["package"].startswith(str(old)) and before["error"] > 1  # the older one's bug
    after = compile_one_layer(tmp_path)
    assert not after["package"].startswith(str(old))
    assert after["error"] < 0.05, "the newer fp8pass ran the older one's cached kernels"
    # the layer's graph compiled afresh
    assert after["aot_autograd"].get("autograd_cache_miss") == 1
    again = compile_one_layer(tmp_path)  # and the newer one still gains from its own cache
    assert again["error"] < 0.05 and not again["aot_autograd"].get("autograd_cache_miss")
    assert again["aot_autograd"].get("autograd_cache_hit") == again["aot_autograd"]["total"]


@pytest.mark.parametrize(
    "name, sizes", [("flux-dev-tiny", (64, 144, 256))]
)  # UNets: benchmarks/compile_cost.py
def test_resolution_changes_compile_a_bounded_number_of_graphs(name, sizes):
    """Three resolutions: Dynamo compiles the first shape static and the second as a dynamic graph
    that the third reuses: two graphs, for fp8pass as for plain compilation, with every weight
    quantized once."""
    model, inputs = zoo.build(name)
    plain = torch.compile(zoo.build_model(name), backend="aot_eager")
    torch._dynamo.utils.counters.clear()
    for size in sizes:
        with torch.no_grad():
            plain(**_at_size(name, inputs, size))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    torch._dynamo.reset()  # Dynamo's shapes seen so far are per code object: start fp8pass afresh
    torch._dynamo.utils.counters.clear()
    be = FP8Backend(FP8Config(), inner="aot_eager")
    cm = torch.compile(model, backend=be)
    for size in sizes:
        with torch.no_grad():
            cm(**_at_size(name, inputs, size))
    # the model's graphs only: fp8pass compiles nothing of its own at run time
    assert be.num_graphs == torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    assert be.num_quantized == len({r.weight for r in be.report() if r.converted})


def _at_size(name, inputs, size):
    """Inputs at another resolution: image tokens for Flux (size = tokens), latents for a UNet."""
    out = dict(inputs)
    if name.startswith("flux"):
        side = int(size**0.5)
        out["hidden_states"] = torch.randn(1, size, inputs["hidden_states"].shape[-1], dtype=torch.bfloat16)
        ids = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(
            -1, 2
        )
        out["img_ids"] = torch.cat([torch.zeros(size, 1), ids.float()], dim=1)
    else:
        b, c = inputs["sample"].shape[:2]
        out["sample"] = torch.randn(b, c, size, size, dtype=torch.bfloat16)
    return out


def _cpp_kernels(backend, model, x) -> int:
    import re

    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    with torch._inductor.config.patch(force_disable_caches=True), torch.no_grad():
        _, codes = run_and_get_code(torch.compile(model, backend=backend), x)
    return len(re.findall(r"^cpp_fused_\w+ = async_compile", "\n".join(codes), flags=re.M))


@pytest.mark.inductor
def test_conv_blocks_compile_the_kernels_plain_inductor_compiles():
    """Two of diffusers' ResnetBlock2D (group norm, SiLU, 3x3 convolution, twice each): with every
    convolution in FP8, Inductor generates as many C++ kernels as for the bf16 blocks. Without
    fp8pass's post-grad pass, which moves each weight conversion up to the previous extern call,
    the group norms split around the conversion and it generated 7 kernels where plain Inductor
    generates 4 (SD1.5: 45 against 36 on sd15-tiny), each a C++ compile on a cold start."""
    from diffusers.models.resnet import ResnetBlock2D

    class Blocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(
                ResnetBlock2D(in_channels=64, out_channels=64, temb_channels=None, groups=8) for _ in range(2)
            )

        def forward(self, x):
            for block in self.blocks:
                x = block(x, None)
            return x

    torch.manual_seed(0)
    x = torch.randn(1, 64, 16, 16, dtype=torch.bfloat16)
    plain = _cpp_kernels("inductor", Blocks().to(torch.bfloat16).eval().requires_grad_(False), x)
    be = FP8Backend(FP8Config(keep_boundary=False), inner="inductor")
    ours = _cpp_kernels(be, Blocks().to(torch.bfloat16).eval().requires_grad_(False), x)
    assert sum(r.converted for r in be.report()) == 4  # every convolution in FP8
    assert ours == plain
