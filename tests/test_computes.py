"""fp8pass.computes: the compute table, and compute="auto" deciding per GEMM from the measured
crossovers (fp8pass/crossovers.json), tested on the CPU with a fake FP8-capable device."""

import json

import pytest
import torch
import torch.nn as nn

from fp8pass import FP8Backend, FP8Config, computes

from .helpers import BF16, run

AUTO = FP8Config(compute="auto", granularity="tensor", min_weight_numel=0, keep_boundary=False)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A device with native FP8 matmuls and a measured table: GEMMs up to K*N = 64*64 need 32
    rows, larger ones 8."""
    monkeypatch.setattr(computes, "has_fp8_matmul", lambda device: True)
    monkeypatch.setattr(computes, "_capability", lambda device: "9.0")
    table = {"9.0": [{"max_kn": 64 * 64, "min_rows": 32}, {"max_kn": 1 << 40, "min_rows": 8}]}
    monkeypatch.setattr(computes, "_crossovers", lambda: table)


def _computes(rows):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 256)).to(BF16).requires_grad_(False)
    be = FP8Backend(AUTO, inner="aot_eager")
    run(torch.compile(model, backend=be), torch.randn(rows, 64, dtype=BF16))
    return {r.name: (r.compute, r.note) for r in be.report()}


def test_auto_picks_per_gemm_from_the_measured_crossovers(fake_gpu):
    found = _computes(16)
    assert found["0"][0] == "cast" and "below this GPU's measured crossover (32 rows" in found["0"][1]
    assert found["1"][0] == "scaled_mm"
    torch._dynamo.reset()
    assert {c for c, _ in _computes(48).values()} == {"scaled_mm"}  # above both crossovers


def test_without_a_measured_table_auto_takes_the_fp8_matmul(fake_gpu, monkeypatch):
    monkeypatch.setattr(computes, "_crossovers", lambda: {})
    assert {c for c, _ in _computes(2).values()} == {"scaled_mm"}


def test_auto_is_cast_without_native_fp8_matmuls():
    assert {c for c, _ in _computes(64).values()} == {"cast"}


def test_the_shipped_table_is_well_formed():
    data = json.loads(computes.CROSSOVERS.read_text())
    assert set(data) == {"source", "note", "devices"}
    for entries in data["devices"].values():
        assert all(set(e) == {"max_kn", "min_rows"} and e["min_rows"] >= 0 for e in entries)


def test_every_compute_names_an_op_for_each_kind_it_runs():
    assert set(computes.COMPUTES) == {"cast", "scaled_mm"}
    assert set(computes.COMPUTES["cast"].ops) == {"linear", "conv", "embedding"}
    assert all(c.summary for c in computes.COMPUTES.values())
