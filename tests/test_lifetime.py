"""A converted model that the user drops is freed, with its FP8 copies: nothing fp8pass keeps
(its registries, the function Dynamo caches for the model's class) holds it.

Found on an H100: in one process, each fp8pass variant of the benchmark added a whole model's
FP8 weights (11 GB for flux-dev) to the peak of every later one, because a registry keyed weakly
by the model held the model in its value, and the compiled function's per-call cache held the
previous call's parameters."""

import gc
import weakref

import pytest
import torch
import torch.nn as nn

import fp8pass
from fp8pass import store
from fp8pass.bench import zoo
from fp8pass.hooks import apply_fp8_hooks

from .helpers import BF16, cuda_only


def _fp8_copies(model):
    return [weakref.ref(w.q) for p in model.parameters() for w in store.entries(p)]


def _dropped(make):
    """Weak references to the model ``make()`` builds, converts and calls, and to its FP8 copies,
    once nothing but fp8pass and Dynamo refers to them."""
    model, copies = make()
    assert copies, "nothing was converted: the test proves nothing"
    model = weakref.ref(model)
    gc.collect()
    return model, copies


@pytest.mark.parametrize("compute", ["cast", "scaled_mm"])
def test_a_dropped_compiled_model_is_freed_with_its_fp8_weights(compute):
    inputs = zoo.build_inputs("flux-dev-tiny", torch.device("cpu"))

    def make():
        model = zoo.build_model("flux-dev-tiny")
        be = fp8pass.FP8Backend(fp8pass.FP8Config(compute=compute), inner="aot_eager")
        with torch.no_grad():
            torch.compile(model, backend=be)(**inputs)
        return model, _fp8_copies(model)

    model, copies = _dropped(make)
    assert model() is None, "the model outlived every reference of its user"
    assert not [c for c in copies if c() is not None], "FP8 copies outlived their model"


@pytest.mark.inductor
def test_a_dropped_inductor_compiled_model_is_freed_with_its_fp8_weights():
    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 256)).to(BF16)
        model.requires_grad_(False)
        config = fp8pass.FP8Config(min_weight_numel=0, skip=(), keep_boundary=False)
        with torch.no_grad():
            torch.compile(model, backend=fp8pass.FP8Backend(config))(torch.randn(4, 256, dtype=BF16))
        return model, _fp8_copies(model)

    model, copies = _dropped(make)
    assert model() is None
    assert not [c for c in copies if c() is not None]


def test_a_dropped_model_with_fp8_hooks_is_freed():
    inputs = zoo.build_inputs("flux-dev-tiny", torch.device("cpu"))

    def make():
        model = zoo.build_model("flux-dev-tiny")
        hooks = apply_fp8_hooks(model)
        with torch.no_grad():
            model(**inputs)
        return model, [weakref.ref(t) for t in hooks.stored_tensors()]

    model, copies = _dropped(make)
    assert model() is None
    assert not [c for c in copies if c() is not None]


def test_the_per_call_cache_still_skips_the_lookup_while_the_model_lives():
    """The weak references must not make every call look the FP8 copies up again."""
    calls = []
    run = store.feeding_fp8_inputs(lambda *a: a, [(0,)], lambda feeds: calls.append(feeds) or ["q"])
    p = nn.Parameter(torch.ones(2))
    assert run(p, 1) == (p, 1, "q") and run(p, 2) == (p, 2, "q")
    assert len(calls) == 1
    other = nn.Parameter(torch.ones(2))
    run(other, 3)
    assert len(calls) == 2


@cuda_only
def test_a_dropped_compiled_model_gives_its_gpu_memory_back():
    torch.manual_seed(0)
    x = torch.randn(64, 1024, dtype=BF16, device="cuda")
    with torch.no_grad():
        x @ x.T  # cuBLAS's workspace, allocated at the first matmul, is not the model's
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    model = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(8)]).to("cuda", BF16)
    model.requires_grad_(False)
    config = fp8pass.FP8Config(min_weight_numel=0, skip=(), keep_boundary=False)
    with torch.no_grad():
        torch.compile(model, backend=fp8pass.FP8Backend(config))(x)
    assert all(store.entries(p) for p in model.parameters() if p.dim() == 2)
    del model
    gc.collect()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before < 1 << 20  # 8 MiB of FP8 weights and more were held
