"""Every Python snippet in README.md and docs/*.md runs as written.

Snippets name things the reader already has (a UNet and its inputs, a model config): ``SETUPS``
supplies them, tiny, keyed by a line that identifies the snippet, and ``CHECKS`` says what must
hold afterwards (conversion happened, the output is close to the bf16 model's). The snippet's code
itself runs verbatim, in a temporary directory; the one substitution is the device, ``"cuda"`` ->
``"cpu"`` on a machine without a GPU. A snippet without a setup fails the test: give it one.
Blocks fenced ``py`` rather than ``python`` are excerpts of flows other tests run whole (the LoRA
page's: tests/test_lora.py).
"""

import copy
import re
from pathlib import Path

import pytest
import torch

import fp8pass
from fp8pass._compat.storage import is_released
from fp8pass.bench import zoo

from .helpers import BF16, sqnr

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPETS = [
    (doc.relative_to(ROOT), snippet)
    for doc in DOCS
    for snippet in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
]

_UNET = dict(
    block_out_channels=(64, 128),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=8,
    sample_size=8,
)


def _unet() -> dict:
    import diffusers

    unet = diffusers.UNet2DConditionModel(**_UNET).to(BF16).eval().requires_grad_(False)
    zoo.init_weights(unet)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 8, 8, generator=g).to(BF16)
    text = torch.randn(1, 8, 64, generator=g).to(BF16)
    t = torch.tensor([500])
    with torch.no_grad():
        ref = copy.deepcopy(unet)(latents, t, encoder_hidden_states=text).sample
    return {"unet": unet, "latents": latents, "t": t, "text": text, "_ref": ref, "_model": unet}


def _flux() -> dict:
    model, inputs = zoo.build("flux-dev-tiny")
    with torch.no_grad():
        ref = model(**inputs).sample
    return {
        "transformer": model,
        "config": dict(zoo.MODELS["flux-dev-tiny"].config),
        "inputs": inputs,
        "_ref": ref,
    }


def _analyze() -> dict:
    model, inputs = zoo.build("flux-dev-tiny")
    return {"model": model, "example_inputs": inputs}


def _flux_folder() -> dict:
    """A diffusers model folder where the README's snippet looks for one (the cwd is a temp dir)."""
    ns = _flux()
    ns["transformer"].save_pretrained("FLUX.1-dev/transformer")
    del ns["transformer"]
    return ns


def _pipeline() -> dict:
    from fp8pass.bench.pipelines import build_tiny_pipeline

    torch._dynamo.reset()
    pipe, _ = build_tiny_pipeline("sd15-tiny")
    return {"pipe": pipe}


def _close_to_reference(ns: dict, out: torch.Tensor, min_db: float) -> None:
    assert torch.isfinite(out).all() and sqnr(ns["_ref"], out) > min_db


def _check_headline(ns: dict) -> None:
    rows = [r for r in fp8pass.fp8_backend.report() if r.converted]
    assert rows and ns["_model"].down_blocks[0].resnets[0].conv1.weight.untyped_storage().nbytes() == 0
    _close_to_reference(ns, ns["out"].sample, 20)


def _check_quick_start(ns: dict) -> None:
    assert any(r.converted for r in ns["be"].report())
    _close_to_reference(ns, ns["out"].sample, 20)


def _check_analyze(ns: dict) -> None:
    assert ns["rep"].layers and 30 < ns["rep"].end_to_end_sqnr < 100


def _check_checkpoint(ns: dict) -> None:
    assert {p.dtype for p in ns["transformer"].parameters()} == {BF16}
    _close_to_reference(ns, ns["out"], 40)


def _check_load_model(ns: dict) -> None:
    from fp8pass import store

    weight = ns["transformer"].transformer_blocks[0].attn.to_q.weight
    assert store.entries(weight) and is_released(weight)  # loaded as FP8, no bf16 held
    _close_to_reference(ns, ns["out"], 40)


def _check_pipeline(ns: dict) -> None:
    rows = {r["component"]: r for r in ns["report"].summary()}
    assert rows["unet"]["fp8"] and rows["text_encoder"]["fp8"] and not rows["vae"]["fp8"]
    assert any(r.converted for r in ns["report"].rows("unet")) and ns["report"].totals()["ratio"] < 0.8
    assert ns["image"].size == (32, 32)


def _check_cache_artifacts(ns: dict) -> None:
    assert is_released(ns["transformer"].transformer_blocks[0].attn.to_q.weight)  # FP8 ran
    # saved; what a fresh process gains from it is test_compile_cost's
    assert Path("fp8pass-cache.bin").stat().st_size > 0
    _close_to_reference(ns, ns["out"].sample, 40)


# a line of the snippet -> (what the reader has, what must hold after)
SETUPS = {
    "unet = torch.compile(unet, backend=fp8_backend)": (_unet, _check_headline),
    "be = FP8Backend(FP8Config(compute=": (_unet, _check_quick_start),
    "rep = analyze(model, example_inputs, FP8Config())": (_analyze, _check_analyze),
    'fp8pass.save_fp8(transformer, "flux-fp8.safetensors")': (_flux, _check_checkpoint),
    'fp8pass.load_model(FluxTransformer2DModel, "FLUX.1-dev/transformer"': (_flux_folder, _check_load_model),
    "report = fp8pass.compile_pipeline(pipe)": (_pipeline, _check_pipeline),
    "torch.compiler.save_cache_artifacts()": (_flux, _check_cache_artifacts),
}


def _setup_for(snippet: str):
    found = [key for key in SETUPS if key in snippet]
    assert len(found) == 1, f"README snippet without exactly one setup in tests/test_readme.py:\n{snippet}"
    return SETUPS[found[0]]


def test_every_snippet_has_a_setup():
    used = {key for _, snippet in SNIPPETS for key in SETUPS if key in snippet}
    assert used == set(SETUPS), f"setups no snippet uses: {set(SETUPS) - used}"
    for _, snippet in SNIPPETS:
        _setup_for(snippet)


@pytest.mark.inductor  # the snippets compile with Inductor, as a reader's would
@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=[f"{d}-{i}" for i, (d, _) in enumerate(SNIPPETS)])
def test_snippet_runs_as_written(index, tmp_path, monkeypatch):
    doc, snippet = SNIPPETS[index]
    setup, check = _setup_for(snippet)
    if not torch.cuda.is_available():
        snippet = snippet.replace('"cuda"', '"cpu"')
    monkeypatch.chdir(tmp_path)
    ns = setup()
    exec(compile(snippet, f"{doc} python snippet {index + 1}", "exec"), ns)
    check(ns)
