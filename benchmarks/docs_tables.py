"""The result tables and plots in README.md and docs/, generated from the committed JSON under
benchmarks/results. Each table sits between ``<!-- generated: NAME -->`` and ``<!-- /generated -->``
in a markdown file; this script rewrites what is between them.

    python benchmarks/docs_tables.py           # rewrite the tables (and the plot)
    python benchmarks/docs_tables.py --check   # exit 1, naming each table that disagrees with its JSON

tests/test_docs.py runs ``--check`` in CI, so a number in the docs cannot drift from its JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MIB = 1 << 20

#: The main job's committed run, the CPU SD1.5 run, the per-layer overhead runs, the cold
#: compile run, the LoRA run and the last GPU run: the files the tables are made from.
MAIN_JOB = RESULTS / "bench-main-job-cpu-2026-12-04.json"
SD15 = RESULTS / "bench-sd15-cpu-2026-12-04.json"
LAYER = {
    "before (nested torch.compile)": RESULTS / "layer-overhead-cpu-2026-12-03-before-nested-compile.json",
    "C kernel, through the dispatcher": RESULTS / "layer-overhead-cpu-2026-12-04-before-dispatcher.json",
    "after (C kernel, called from the generated code)": RESULTS / "layer-overhead-cpu-2026-12-04-after.json",
}
COLD = RESULTS / "compile-cost-cpu-2026-12-04.json"
LORA = RESULTS / "lora-operations-cpu-2026-12-04.json"
GPU = RESULTS / "gpu-h100-2026-11-24" / "bench-flux-dev-a.json"


def _load(path: Path) -> dict | list:
    return json.loads(path.read_text())


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _spread(value: float, lo: float | None, hi: float | None, digits: int = 1) -> str:
    if lo is None or hi is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def _md(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_table(path: Path) -> str:
    """A ``python -m fp8pass bench`` JSON: one row per variant."""
    data = _load(path)
    env = data["environment"]
    rows = []
    base = next((r.get("round_ms") for r in data["results"] if r["variant"] == "bf16 compiled"), None)
    for r in data["results"]:
        if r.get("status") != "ok":
            rows.append([r["variant"], f"failed: {r.get('error', '')[:60]}", "", "", "", ""])
            continue
        ratio = r.get("time_vs_compiled_bf16")
        rounds = r.get("round_ms") or []
        ratios = (
            [a / b for a, b in zip(rounds, base or [], strict=False)]
            if data["environment"].get("interleaved")
            else []
        )
        ratio_s = (
            "-" if ratio is None else _spread(ratio, min(ratios, default=None), max(ratios, default=None), 2)
        )
        rows.append(
            [
                r["variant"],
                _spread(r["step_ms"], r.get("step_ms_min"), r.get("step_ms_max")),
                ratio_s,
                f"{r['first_call_s']:.1f}" if r.get("first_call_s") is not None else "-",
                f"{r['weight_bytes'] / MIB:.0f}" if r.get("weight_bytes") else "-",
                f"{r['sqnr_db']:.1f}" if r.get("sqnr_db") is not None else "-",
            ]
        )
    head = [
        "variant",
        "step ms (min-max)",
        "time vs compiled bf16 (per round)",
        "first call s",
        "weights MiB",
        "SQNR dB",
    ]
    where = f"{env.get('model')}, {env.get('device')}, {env.get('threads', '?')} threads, torch {env.get('torch')}, {env.get('date', '')[:10]}"
    return f"{_md(head, rows)}\n\n*{where}; from `{_rel(path)}`.*"


#: what one conversion costs in each result: the call Inductor's generated code makes
_CALL_PIECES = (
    "generated code's allocation + C loop (a small weight)",
    "fp8pass::fp8_scaled_to_cpu(64x64) through the dispatcher",
    "fp8pass::fp8_to_cpu(64x64)",
)


def layer_table() -> str:
    rows = []
    for label, path in LAYER.items():
        d = _load(path)
        o, s = d["per_layer_overhead_us"], d["step_us"]
        op = next(d["pieces_us"][k]["median"] for k in _CALL_PIECES if k in d["pieces_us"])
        rows.append(
            [
                label,
                f"{s['bf16']['median']:.0f}",
                f"{s['fp8 cast']['median']:.0f}",
                _spread(o["median"], o["min"], o["max"]),
                f"{op:.1f}",
            ]
        )
    head = [
        "CPU conversion",
        "bf16 step us",
        "fp8 cast step us",
        "per layer us, median (min-max)",
        "one conversion call us",
    ]
    d = _load(list(LAYER.values())[-1])
    note = f"{d['what']}; {d['rounds']} alternated rounds of {d['calls_per_round']} calls, {d['threads']} threads, {d['date']}"
    return f"{_md(head, rows)}\n\n*{note}; from `benchmarks/results/layer-overhead-cpu-*.json` (`benchmarks/layer_overhead.py`).*"


def _series(values: list[float], digits: int = 1) -> str:
    """median (min-max) of a list of repeats; the one value where there is one; '-' for none"""
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.{digits}f}" if len(values) == 1 else _spread(med, min(values), max(values), digits)


def cold_table() -> str:
    data = _load(COLD)
    rows = []
    for key, r in data["cold_warm"].items():
        model, _, backend = key.partition(" / ")
        rows.append(
            [
                model,
                backend,
                str(len(r["cold_first_call_s"])),
                _series(r["cold_first_call_s"]),
                _series(r["ratio_to_inductor_cold_per_repeat"], 2),
                _series(r["warm_first_call_s"]),
                _series(r["cold_over_warm"], 2),
            ]
        )
    head = [
        "model",
        "backend",
        "repeats",
        "cold first call s",
        "cold vs Inductor (per repeat)",
        "warm start s",
        "cold / warm",
    ]
    env = data["environment"]
    return f"{_md(head, rows)}\n\n*{env['date'][:10]}, CPU ({env['cpu']}, {env['torch_threads']} threads), fresh cache directory per process, median (min-max) over repeats; from `{_rel(COLD)}`.*"


def cold_stages_table() -> str:
    """Where each cold first call went (seconds, median over repeats)."""
    data = _load(COLD)
    stages = data["cold_stages"]
    columns = list(stages)
    names: list[str] = []
    for col in columns:
        names += [n for n in stages[col] if n not in names and n != "graphs"]
    rows = [[n] + [_series(stages[c].get(n, []), 2) for c in columns] for n in names]
    return f"{_md(['seconds', *columns], rows)}\n\n*From `{_rel(COLD)}` (`cold_stages`).*"


def lora_table() -> str:
    records = _load(LORA)
    by: dict[tuple[str, str], list[float]] = {}
    without: dict[tuple[str, str], list[float]] = {}
    for r in records:
        key = (" ".join(r["operation"].split()), r["model"])  # a call written over lines: one
        by.setdefault(key, []).append(r["sqnr_db"])
        if r["without_db"] is not None:
            without.setdefault(key, []).append(r["without_db"])
    rows = []
    for (op, model), dbs in by.items():
        w = without.get((op, model))
        rows.append(
            [f"`{op}`", model, f"{min(dbs):.1f}", f"{len(dbs)}", f"{statistics.median(w):.1f}" if w else "-"]
        )
    head = [
        "operation",
        "model",
        "lowest SQNR dB vs bf16 + same LoRA",
        "checks",
        "model without the change, dB",
    ]
    return f"{_md(head, rows)}\n\n*Tiny diffusers models, FP8Config(min_weight_numel=0); from `{_rel(LORA)}` (`benchmarks/lora_operations.py`).*"


TABLES: dict[str, Callable[[], str]] = {
    "main-job": lambda: bench_table(MAIN_JOB),
    "cpu-sd15": lambda: bench_table(SD15),
    "layer-overhead": layer_table,
    "cold-compile": cold_table,
    "cold-stages": cold_stages_table,
    "lora": lora_table,
    "gpu-h100": lambda: bench_table(GPU),
}
_BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def plot(path: Path = ROOT / "docs" / "img" / "main-job.png") -> None:
    """Step time and weight memory per variant of the main job's committed run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _load(MAIN_JOB)
    rows = [r for r in data["results"] if r.get("status") == "ok"]
    names = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.5), sharey=True)
    axes[0].barh(names, [r["step_ms"] for r in rows], color="#4c72b0")
    axes[0].set_xlabel("step ms (median)")
    axes[1].barh(names, [r["weight_bytes"] / MIB for r in rows], color="#55a868")
    axes[1].set_xlabel("weights MiB")
    axes[0].invert_yaxis()
    env = data["environment"]
    fig.suptitle(f"python -m fp8pass bench: {env['model']} on {env['device']} ({env['date'][:10]})")
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def render(text: str) -> tuple[str, list[str]]:
    """``text`` with every generated block rewritten, and the names of the blocks that changed."""
    changed = []

    def sub(m: re.Match) -> str:
        body = TABLES[m.group(2)]() + "\n"
        if body != m.group(3):
            changed.append(m.group(2))
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(sub, text), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args()
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        new, changed = render(text)
        stale += [f"{_rel(doc)}: {name}" for name in changed]
        if changed and not args.check:
            doc.write_text(new)
    if args.check:
        if stale:
            print("stale tables (run python benchmarks/docs_tables.py):\n  " + "\n  ".join(stale))
            return 1
        return 0
    plot()
    print("rewrote: " + (", ".join(stale) or "nothing (all tables current)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
