from fp8pass.bench.layers import LayerShape, format_layer_results, layer_shapes, run_layer_benchmark

from .helpers import ROWWISE_CPU


def test_flux_dev_layer_shapes_at_1024():
    shapes = layer_shapes("flux-dev")
    assert shapes[LayerShape("linear", (1, 4096, 64), (3072, 64))] == 1  # x_embedder
    assert shapes[LayerShape("linear", (1, 4608, 3072), (12288, 3072))] == 38  # single blocks' proj_mlp
    # AdaLN norm1.linear and norm1_context.linear of the 19 joint blocks: one row each
    assert shapes[LayerShape("linear", (1, 3072), (18432, 3072))] == 38
    assert LayerShape("linear", (1, 4608, 3072), (12288, 3072)).mkn == (4608, 3072, 12288)


def test_sd15_conv_shapes():
    shapes = layer_shapes("sd15")
    conv_in = LayerShape("conv", (2, 4, 64, 64), (320, 4, 3, 3), (1, 1), (1, 1), 1)
    assert shapes[conv_in] == 1 and conv_in.mkn == (2 * 64 * 64, 36, 320)


def test_layer_benchmark_runs_every_variant():
    rows = run_layer_benchmark("flux-dev-tiny", "cpu", max_m=1, steps=1, warmup=1)
    assert rows and all(r["M"] == 1 for r in rows)
    for r in rows:
        assert r["bf16 ms"] > 0 and r["fp8 cast ms"] > 0
        assert (r.get("fp8 scaled_mm ms") or 0) > 0 or r["K"] % 16 or r["N"] % 16 or not ROWWISE_CPU
    assert "cast time vs bf16" in format_layer_results(rows)
