import copy

import torch

from fp8pass import FP8Config
from fp8pass.__main__ import main
from fp8pass.analyze import analyze
from fp8pass.hooks import apply_fp8_hooks

from .helpers import TOY_CONVERTED, sqnr


def test_analyze_measures_every_converted_layer_and_leaves_weights_alone(toy, toy_input):
    before = {n: p.clone() for n, p in toy.named_parameters()}
    rep = analyze(toy, (toy_input,), FP8Config(), alone=2)
    assert {r.name for r in rep.layers} == TOY_CONVERTED
    assert {name for name, _ in rep.skipped} == {"conv_in", "proj_out"}
    for r in rep.layers:
        assert 28 < r.weight_sqnr < 36  # e4m3: ~31 dB on Gaussian weights
        assert 25 < r.output_sqnr < 45
    measured_alone = [r for r in rep.layers if r.alone_sqnr is not None]
    assert len(measured_alone) == 2 and rep.most_sensitive(2) == sorted(
        measured_alone, key=lambda r: r.alone_sqnr
    )
    # the end-to-end figure is the same model with the same FP8 weights as the hook baseline
    with torch.no_grad():
        ref = toy(toy_input)
        hooked = copy.deepcopy(toy)
        apply_fp8_hooks(hooked)
        assert abs(rep.end_to_end_sqnr - sqnr(ref, hooked(toy_input))) < 0.5
    for n, p in toy.named_parameters():
        assert torch.equal(p, before[n]), n
    assert "end-to-end output SQNR, every layer in FP8" in rep.table(3)


def test_report_command(capsys):
    assert main(["report", "--model", "flux-dev-tiny", "--top", "3", "--alone", "2"]) == 0
    out = capsys.readouterr().out
    assert "## Conversion" in out and "## Fidelity" in out
    assert "26/36 layers converted" in out
    assert "compiled output SQNR vs the original model" in out
    assert "x_embedder" in out and "input layer: reads only the model's inputs ('hidden_states')" in out
