"""Run a notebook top to bottom and write each image it displays as a PNG (for the README).

    python notebooks/render.py notebooks/01_hook_vs_compiled.ipynb --out notebooks/renders/cpu \
        --set RESULTS_JSON='"../benchmarks/results/cpu-flux-dev-tiny-2026-11-22.json"'

``--set NAME=EXPR`` runs ``NAME = EXPR`` after the notebook's parameters cell (the first code cell),
so the same notebook renders a committed GPU result the same way. The notebook file is not changed.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def render(notebook: Path, out: Path, overrides: list[str], timeout: int = 1200) -> list[Path]:
    nb = nbformat.read(notebook, as_version=4)
    if overrides:
        first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell("\n".join(overrides)))
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    ).execute()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                path = out / f"{notebook.stem}-{len(written) + 1}.png"
                path.write_bytes(base64.b64decode(png))
                written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=Path("notebooks/renders"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=EXPR")
    args = parser.parse_args()
    for path in render(args.notebook, args.out, [s.replace("=", " = ", 1) for s in args.overrides]):
        print(path)


if __name__ == "__main__":
    main()
