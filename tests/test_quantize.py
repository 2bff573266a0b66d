import pytest
import torch

from fp8pass import native, quantize
from fp8pass.quantize import dequantize_weight, fp8_max, quantize_weight

from .helpers import sqnr

DTYPES = [torch.float8_e4m3fn, torch.float8_e5m2]
# Round-to-nearest relative error is at most 2**-(mantissa bits + 1) for normal values.
MANTISSA = {torch.float8_e4m3fn: 3, torch.float8_e5m2: 2}
# SQNR of a uniform rounding error on Gaussian weights: ~6 dB per mantissa bit, minus margins.
MIN_SQNR = {torch.float8_e4m3fn: 28.0, torch.float8_e5m2: 22.0}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("shape", [(256, 128), (64, 32, 3, 3), (32, 16, 1, 3, 3)])
def test_round_trip_error_bound(dtype, granularity, shape):
    torch.manual_seed(0)
    w = (torch.randn(shape) * 0.02 * torch.logspace(0, 1, shape[0]).view(-1, *[1] * (len(shape) - 1))).to(
        torch.bfloat16
    )
    q, scale = quantize_weight(w, dtype, granularity)
    assert q.dtype == dtype and q.shape == w.shape and q.is_contiguous()
    assert scale.dtype == torch.float32
    assert scale.shape == ((shape[0],) if granularity == "channel" else ())
    back = dequantize_weight(q, scale, torch.float32)
    err = (back - w.float()).abs()
    # Per element: relative rounding bound for normal values, plus half of the smallest
    # subnormal step of the element's scale for values that fall below the normal range.
    s = scale.view(-1, *[1] * (len(shape) - 1)) if scale.dim() else scale
    tiny = torch.finfo(dtype).smallest_normal * 2.0 ** -MANTISSA[dtype]
    bound = w.float().abs() * 2.0 ** -(MANTISSA[dtype] + 1) + s * tiny
    assert (err <= bound * 1.0001).all()
    assert sqnr(w, back) > MIN_SQNR[dtype]


def test_channel_scales_beat_tensor_scale_on_uneven_channels():
    torch.manual_seed(0)
    # e4m3 spans ~2**15 of normal range: rows 1e5x below the absmax land in subnormals
    # under one per-tensor scale, while per-channel scales keep every row in range.
    w = torch.randn(64, 64) * torch.logspace(-5, 0, 64).view(-1, 1)
    per_tensor = dequantize_weight(*quantize_weight(w, torch.float8_e4m3fn, "tensor"), torch.float32)
    per_channel = dequantize_weight(*quantize_weight(w, torch.float8_e4m3fn, "channel"), torch.float32)
    small = slice(0, 8)
    assert sqnr(w[small], per_channel[small]) > sqnr(w[small], per_tensor[small]) + 10


@pytest.mark.parametrize("dtype", DTYPES)
def test_absmax_maps_to_fp8_max_and_nothing_overflows(dtype):
    w = torch.tensor([[1e6, -2e6, 3.0], [0.0, 1e-3, -5.0]])
    q, scale = quantize_weight(w, dtype, "channel")
    assert torch.isfinite(q.float()).all()
    assert q.float().abs().amax(dim=1).tolist() == [fp8_max(dtype)] * 2


def test_all_zero_weight_is_finite():
    q, scale = quantize_weight(torch.zeros(16, 16), torch.float8_e4m3fn, "channel")
    assert (q.float() == 0).all() and (scale > 0).all() and torch.isfinite(scale).all()


def test_bad_granularity():
    with pytest.raises(ValueError, match="granularity"):
        quantize_weight(torch.ones(4, 4), torch.float8_e4m3fn, "row")


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
@pytest.mark.parametrize("shape", [(1100, 4096), (300, 160, 3, 3)])  # several row blocks, uneven last
def test_blockwise_quantization_equals_the_one_piece_formula(shape, granularity, monkeypatch):
    """quantize_weight works a block of rows at a time (bounded float32 temporaries while loading
    a checkpoint): every byte and scale must equal the formula applied to the whole weight."""
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16) * 0.02
    w[7] *= 40  # one outlier row: per-tensor amax must come from the right block
    monkeypatch.setattr(quantize, "_BLOCK_NUMEL", 2**17)  # 35 and 4 blocks, the last ones short
    monkeypatch.setattr(native, "quantize", lambda *a: None)  # the torch path (C: the test below)
    assert len(quantize._row_blocks(w)) > 1
    q, scale = quantize_weight(w, torch.float8_e4m3fn, granularity)
    full = w.float()
    amax = full.abs().amax() if granularity == "tensor" else full.abs().flatten(1).amax(dim=1)
    want_scale = amax.clamp(min=quantize.MIN_AMAX) / 448.0
    view = want_scale.view(-1, *[1] * (w.dim() - 1)) if want_scale.dim() else want_scale
    want_q = (full / view).clamp(-448, 448).to(torch.float8_e4m3fn)
    assert torch.equal(scale, want_scale) and q.is_contiguous()
    assert torch.equal(q.view(torch.uint8), want_q.view(torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("blocks", [1, 4])
def test_the_weight_itself_is_never_changed(dtype, blocks, monkeypatch):
    """quantize_weight divides and clamps in place on its float32 working copy: for a float32
    weight that copy must be a copy (``.float()`` would return the weight itself)."""
    w = (torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 1000).to(dtype)
    before = w.clone()
    monkeypatch.setattr(quantize, "_BLOCK_NUMEL", w.numel() // blocks)
    monkeypatch.setattr(native, "quantize", lambda *a: None)
    assert len(quantize._row_blocks(w)) == blocks
    quantize_weight(w, torch.float8_e4m3fn, "channel")
    assert torch.equal(w, before)


def _formula(w, dtype, granularity):
    """quantize_weight's arithmetic with torch ops, on the whole weight at once."""
    full, limit = w.float(), fp8_max(dtype)
    amax = full.abs().amax() if granularity == "tensor" else full.abs().flatten(1).amax(dim=1)
    scale = amax.clamp(min=quantize.MIN_AMAX) / limit
    view = scale.view(-1, *[1] * (w.dim() - 1)) if scale.dim() else scale
    return (full / view).clamp(-limit, limit).to(dtype), scale


def _every_finite_bf16() -> torch.Tensor:
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    return bits[bits.isfinite()]


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_the_c_quantizer_is_the_formula_bit_for_bit(dtype, granularity):
    """fp8pass quantizes a bf16 or float32 CPU weight with a C loop (two passes instead of torch's
    eight): its bytes and scales must be the torch formula's, for every finite bf16 value under
    many scales (rows of shuffled values whose absmax sets the scale: huge, tiny, subnormal,
    zero), float32 values near FP8 rounding ties and in the subnormal range, and a weight large
    enough to be split over threads."""
    gen = torch.Generator().manual_seed(0)
    every = _every_finite_bf16()
    cases = [
        every[torch.randperm(every.numel(), generator=gen)][: 255 * 256].view(255, 256),
        every[torch.randperm(every.numel(), generator=gen)][: 97 * 13 * 3].view(97, 13, 3),  # odd rows
        torch.cat([every, torch.zeros(256 - every.numel() % 256, dtype=torch.bfloat16)]).view(-1, 256),
        torch.zeros(4, 8, dtype=torch.bfloat16),
    ]
    # float32: FP8 values and the midpoints between neighbours, times powers of two and odd scales
    grid = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).float()
    grid = grid[grid.isfinite()].sort().values
    mids = (grid[1:] + grid[:-1]) / 2
    base = torch.cat(
        [grid, mids, mids.nextafter(torch.tensor(float("inf"))), mids.nextafter(torch.tensor(0.0))]
    )
    for factor in (1.0, 2.0**-30, 3.7e-3, 1e30):
        cases.append(
            (base * factor)[torch.randperm(base.numel(), generator=gen)][: 4 * (base.numel() // 4)].view(
                4, -1
            )
        )
    cases.append(torch.randn(1000, 600, generator=gen) * torch.logspace(-40, 30, 1000).view(-1, 1))
    cases.append(torch.randn(700, 1024, generator=gen).to(torch.bfloat16))  # > MIN_PARALLEL: threads
    for w in cases:
        found = native.quantize(w.contiguous(), dtype, granularity == "channel")
        assert found is not None, (w.dtype, tuple(w.shape))
        q, scale = found
        want_q, want_scale = _formula(w, dtype, granularity)
        assert scale.dtype == torch.float32 and scale.shape == want_scale.shape
        assert torch.equal(scale.view(torch.int32), want_scale.view(torch.int32)), (w.dtype, tuple(w.shape))
        assert torch.equal(q.view(torch.uint8), want_q.view(torch.uint8)), (w.dtype, tuple(w.shape))


def test_the_c_quantizer_leaves_nan_inf_and_other_layouts_to_torch():
    w = torch.randn(8, 16, dtype=torch.bfloat16)
    assert native.quantize(w.t(), torch.float8_e4m3fn, True) is None  # not contiguous
    assert native.quantize(w.half(), torch.float8_e4m3fn, True) is None  # fp16: torch's ops
    for bad in (float("nan"), float("inf")):
        v = w.clone()
        v[3, 5] = bad
        assert native.quantize(v, torch.float8_e4m3fn, True) is None
        q, scale = quantize_weight(v, torch.float8_e4m3fn, "channel")  # torch decides, as before
        want_q, want_scale = _formula(v, torch.float8_e4m3fn, "channel")
        assert torch.equal(q.view(torch.uint8), want_q.view(torch.uint8))


def test_an_outlier_that_flushes_a_layer_to_zero_is_reported(caplog):
    """One 1e4 outlier among weights of ~0.02 makes a per-tensor scale so coarse that most of the
    layer's values round to zero: that used to pass silently. (Per channel, it is the outlier's
    channel alone: 1 of 64 here.)"""
    import logging

    import fp8pass
    from fp8pass.quantize import flush_note

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)).to(torch.bfloat16)
    with torch.no_grad():
        model[0].weight.normal_(0, 0.02)
        model[0].weight[5, 7] = 1e4
    config = fp8pass.FP8Config(granularity="tensor", keep_boundary=False, min_weight_numel=0)
    be = fp8pass.FP8Backend(config, inner="aot_eager")
    with caplog.at_level(logging.WARNING, logger="fp8pass"), torch.no_grad():
        torch.compile(model, backend=be)(torch.randn(2, 64, dtype=torch.bfloat16))
    notes = {r.name: r.note for r in be.report()}
    assert float(notes["0"].split("%")[0]) > 60  # measured 72.9%
    assert "quantize to zero" in notes["0"] and "quantize to zero" not in notes["1"]
    assert any("'0'" in r.message and "quantize to zero" in r.message for r in caplog.records)
    per_channel, _ = quantize_weight(model[0].weight, torch.float8_e4m3fn, "channel")
    note = flush_note(model[0].weight, per_channel)
    assert note == "" or float(note.split("%")[0]) < 2  # one channel's worth, at most
    w = torch.randn(256, 256) * 0.02
    assert flush_note(w, quantize_weight(w, torch.float8_e4m3fn, "tensor")[0]) == ""  # ordinary weights
