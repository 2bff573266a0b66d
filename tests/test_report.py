from fp8pass.report import LayerReport, format_report, summarize


def _rows():
    return [
        LayerReport("blocks.0.ff", "linear", True, "", "cast", 8 * 2**20, 4 * 2**20 + 4096),
        LayerReport(
            "blocks.0.tied", "linear", True, "", "cast", 0, 0, note="weight bytes counted under 'blocks.0.ff'"
        ),
        LayerReport("conv_in", "conv", False, "matches skip pattern '^conv_in$'", None, 2048, 2048),
    ]


def test_summarize_counts_every_weight_once():
    s = summarize(_rows())
    assert (s["layers"], s["converted"]) == (3, 2)
    assert (s["bytes_before"], s["bytes_after"]) == (8 * 2**20 + 2048, 4 * 2**20 + 4096 + 2048)
    assert abs(s["ratio"] - (4 * 2**20 + 6144) / (8 * 2**20 + 2048)) < 1e-12


def test_table_shows_reasons_notes_and_totals():
    table = format_report(_rows())
    assert "matches skip pattern '^conv_in$'" in table
    assert "counted under 'blocks.0.ff'" in table
    assert "8.00 MiB" in table and "2.00 KiB" in table
    assert table.splitlines()[-1] == (
        "2/3 layers converted; layer weights 8.00 MiB -> 4.01 MiB (0.501x). "
        "Kept in their dtype: 1 match a skip pattern (FP8Config.skip)"
    )


def test_empty_report():
    assert summarize([])["ratio"] == 1.0
    assert format_report([]).splitlines()[-1].startswith("0/0 layers converted")
