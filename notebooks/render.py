"""Run a notebook top to bottom and write what it shows: each image as a PNG and its text outputs
as one Markdown file (for the README), then list every file written.

    python notebooks/render.py notebooks/01_hook_vs_compiled.ipynb --out notebooks/renders/cpu \
        --set RESULTS_JSON='"benchmarks/results/cpu-flux-dev-tiny-2026-11-23.json"'

The notebook runs in the current working directory, so paths given with ``--set`` are relative to
where you run this. ``--set NAME=EXPR`` runs ``NAME = EXPR`` after the notebook's parameters cell
(the first code cell), so the same notebook renders a committed GPU result the same way. The
notebook file is not changed.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def render(notebook: Path, out: Path, overrides: list[str], timeout: int = 1200) -> list[Path]:
    """Execute ``notebook`` (in the current directory) and write ``out/STEM-N.png`` for each image
    and ``out/STEM.md`` with its code and text outputs. Returns the paths written."""
    nb = nbformat.read(notebook, as_version=4)
    if overrides:
        first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell("\n".join(overrides)))
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": "."}}
    ).execute()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    text = [f"# {notebook.name}, executed\n"]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text.append(f"```python\n{cell.source}\n```\n")
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if png := data.get("image/png"):
                path = out / f"{notebook.stem}-{sum(p.suffix == '.png' for p in written) + 1}.png"
                path.write_bytes(base64.b64decode(png))
                written.append(path)
                text.append(f"![{path.name}]({path.name})\n")
            elif output.get("output_type") == "stream" or "text/plain" in data:
                body = output.get("text") or data.get("text/plain", "")
                text.append(f"```\n{body.rstrip()}\n```\n")
    md = out / f"{notebook.stem}.md"
    md.write_text("\n".join(text))
    return [*written, md]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=Path("notebooks/renders"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=EXPR")
    args = parser.parse_args()
    written = render(args.notebook, args.out, [s.replace("=", " = ", 1) for s in args.overrides])
    images = sum(p.suffix == ".png" for p in written)
    print(f"{args.notebook.name}: wrote {images} image(s) and its text outputs:")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    main()
