"""Each notebook runs top to bottom on CPU with tiny models (stored without outputs)."""

from pathlib import Path

import pytest

# dev extras; a GPU machine running only the cuda/inductor tests may lack them
nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks_stored_without_outputs():
    assert [p.name for p in NOTEBOOKS] == [
        "01_hook_vs_compiled.ipynb",
        "02_inside_the_pass.ipynb",
        "03_quantization_experiments.ipynb",
    ]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert all(
            not c.get("outputs") and not c.get("execution_count") for c in cells if c.cell_type == "code"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert (
        any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
        or path.stem == "02_inside_the_pass"
    )


def test_render_writes_the_plots_of_a_committed_result(tmp_path, monkeypatch):
    """notebooks/render.py runs notebook 01 on a committed JSON, named relative to the directory it
    runs in (the repository root here), and writes its two plots and its text outputs."""
    import sys

    root = NOTEBOOKS[0].parent.parent
    sys.path.insert(0, str(NOTEBOOKS[0].parent))
    try:
        from render import render
    finally:
        sys.path.pop(0)
    results = sorted((root / "benchmarks" / "results").glob("cpu-flux-dev-tiny-*.json"))
    monkeypatch.chdir(root)
    relative = results[-1].relative_to(root)
    written = render(NOTEBOOKS[0], tmp_path, [f"RESULTS_JSON = {str(relative)!r}"])
    assert [p.name for p in written] == [
        "01_hook_vs_compiled-1.png",
        "01_hook_vs_compiled-2.png",
        "01_hook_vs_compiled.md",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written[:2])
    assert "fp8pass cast" in written[2].read_text()
