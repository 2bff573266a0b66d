"""Do the tests fail when the code is wrong? Seed one bug at a time into a copy of the project and
run the whole suite on each copy: every bug class must be caught by at least one test file.

    python benchmarks/seeded_bugs.py [--bugs NAME ...] [--json benchmarks/results/seeded-bugs.json]

Each bug is a textual edit of the library (``MUTATIONS`` below: file, the exact text, its
replacement; the text must occur exactly once, so a refactor that moves it fails loudly here).
The suite runs with the copy first on ``PYTHONPATH`` (notebook kernels and subprocess tests import
the copy too). Prints a table: bug class x the test files that fail, and how many tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# class -> [(file, text, replacement)]
MUTATIONS: dict[str, list[tuple[str, str, str]]] = {
    "nothing converted": [
        (
            "fp8pass/backend.py",
            "        params, sources = self._graph_parameters(gm, example_inputs)\n",
            "        return gm.forward\n        params, sources = self._graph_parameters(gm, example_inputs)\n",
        )
    ],
    "merged scales (per-channel scales replaced by their mean)": [
        (
            "fp8pass/quantize.py",
            "    scale = (amax.clamp(min=MIN_AMAX) / fp8_max(dtype)).to(SCALE_DTYPE)\n",
            "    scale = (amax.clamp(min=MIN_AMAX) / fp8_max(dtype)).to(SCALE_DTYPE)\n"
            "    scale = scale.mean().expand_as(scale).contiguous() if scale.dim() else scale\n",
        )
    ],
    "dropped bias": [
        (
            "fp8pass/ops.py",
            "    if bias is not None:\n        out = out + bias",
            "    if False:\n        out = out + bias",
        ),
        ("fp8pass/ops.py", "        None if bias is None else bias.to(x.dtype),\n", "        None,\n"),
    ],
    "wrong FP8 dtype stored (always e5m2)": [
        (
            "fp8pass/quantize.py",
            "    return f.div_(_per_channel_view(scale, w.dim())).clamp_(-limit, limit).to(dtype)",
            "    return f.div_(_per_channel_view(scale, w.dim())).clamp_(-limit, limit).to(torch.float8_e5m2)",
        )
    ],
    "originals not released": [
        ("fp8pass/_compat.py", "    storage.resize_(0)\n    return True", "    return True")
    ],
    "scaled_mm silently runs the cast path": [
        (
            "fp8pass/kinds.py",
            '{"linear": _fp8.scaled_linear.default,',
            '{"linear": _fp8.linear.default,',
        )
    ],
    "skip rules ignored": [
        (
            "fp8pass/config.py",
            '                return f"matches skip pattern {pattern.pattern!r}"',
            "                pass",
        )
    ],
    "boundary layers converted (structure ignored)": [
        (
            "fp8pass/config.py",
            "        if not boundary or not self.keep_boundary or any(",
            "        if True or not boundary or not self.keep_boundary or any(",
        )
    ],
    "boundary found by names only (no dataflow: a layer after the blocks never counts as output)": [
        ("fp8pass/structure.py", "        elif path not in downstream_of_stack:", "        elif False:")
    ],
    "activation scale off (x2 against the one used to quantize)": [
        ("fp8pass/ops.py", "    return xq, a_scale\n", "    return xq, a_scale * 2\n")
    ],
    "a dropped model kept alive (the per-call cache holds parameters strongly)": [
        (
            "fp8pass/store.py",
            "[weakref.ref(p, forget) for p in params]",
            "[(lambda p=p: p) for p in params]",
        )
    ],
}


def _copy_project(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def _mutate(copy: Path, edits: list[tuple[str, str, str]]) -> None:
    for file, old, new in edits:
        path = copy / file
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"{file}: the text to mutate occurs {text.count(old)} times, not once: {old!r}")
        path.write_text(text.replace(old, new))


def _run_suite(copy: Path, first_failure: bool = False) -> tuple[Counter, int, float]:
    """Failing (or erroring) tests per test file, tests run, seconds."""
    report = copy / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *(["-x"] if first_failure else []),
            "tests",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    failed: Counter = Counter()
    total = 0
    for case in ET.parse(report).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed[case.get("classname", "?").rsplit(".", 1)[-1] + ".py"] += 1
    return failed, total, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bugs", nargs="+", choices=list(MUTATIONS), help="default: all, and the unmutated code"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--first-failure",
        action="store_true",
        help="stop each mutated run at its first failing test (caught or not, much sooner); the "
        "unmutated run always runs whole",
    )
    args = parser.parse_args()
    names = args.bugs or ["(no bug)", *MUTATIONS]
    results = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="fp8pass-seeded-") as d:
            copy = Path(d)
            _copy_project(copy)
            _mutate(copy, MUTATIONS.get(name, []))
            failed, total, seconds = _run_suite(copy, args.first_failure and name in MUTATIONS)
        results[name] = {"failed_by_file": dict(failed), "tests": total, "seconds": round(seconds)}
        if args.first_failure and name in MUTATIONS:
            results[name]["stopped_at_first_failure"] = True
        caught = ", ".join(f"{f} ({n})" for f, n in sorted(failed.items())) or "NOT CAUGHT"
        print(f"{name}: {sum(failed.values())}/{total} tests fail: {caught}", flush=True)
    if args.json:
        import torch

        env = {
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip(),
        }
        args.json.write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")
    clean = results.get("(no bug)", {"failed_by_file": {}})["failed_by_file"]
    missed = [n for n in names if n in MUTATIONS and not results[n]["failed_by_file"]]
    return 1 if clean or missed else 0


if __name__ == "__main__":
    sys.exit(main())
