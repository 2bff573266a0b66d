"""Where an FP8 matmul starts to beat the cast path, per GEMM size, on this GPU: the table behind
``compute="auto"`` (fp8pass/crossovers.json).

    python benchmarks/crossovers.py measure --model flux-dev --json OUT.json   # on the GPU (~3 min)
    python benchmarks/crossovers.py table OUT.json                             # writes fp8pass/crossovers.json

``measure`` times, for every distinct linear weight (N, K) of the model and rows M from 16 to 4096,
fp8pass's cast op and its per-row ``scaled_mm`` op, each compiled (max-autotune), in one process;
``table`` keeps, per (K, N), the fewest rows from which ``scaled_mm`` is faster at that M and every
larger one measured, and writes them keyed by the GPU's compute capability.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROWS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TABLE = Path(__file__).resolve().parent.parent / "fp8pass" / "crossovers.json"


def measure(model: str, out: Path, steps: int) -> None:
    import torch

    from fp8pass.bench.layers import LayerShape, layer_functions, layer_shapes, median_ms

    dev = torch.device("cuda")
    weights = sorted({s.w for s in layer_shapes(model) if s.kind == "linear"})
    rows = []
    for w in weights:
        for m in ROWS:
            shape = LayerShape("linear", (m, w[1]), w)
            row = {"M": m, "K": w[1], "N": w[0]}
            for label, (fn, args) in layer_functions(shape, dev).items():
                torch._dynamo.reset()
                row[f"{label} ms"] = median_ms(
                    torch.compile(fn, mode="max-autotune", dynamic=False), args, dev, steps, 3
                )
            rows.append(row)
            print(row, flush=True)
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev),
        "capability": "{}.{}".format(*torch.cuda.get_device_capability(dev)),
        "torch": torch.__version__,
        "model": model,
    }
    out.write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")


def table(source: Path) -> None:
    data = json.loads(source.read_text())
    by_size: dict[tuple[int, int], list[dict]] = {}
    for r in data["rows"]:
        by_size.setdefault((r["K"], r["N"]), []).append(r)
    entries = []
    cast = next(k for k in data["rows"][0] if k.startswith("fp8 cast"))
    fp8 = next(k for k in data["rows"][0] if "scaled_mm" in k)  # per-row scales (layer_functions)
    for (k, n), rows in sorted(by_size.items(), key=lambda kv: kv[0][0] * kv[0][1]):
        rows.sort(key=lambda r: r["M"])
        wins = [r[fp8] is not None and r[cast] is not None and r[fp8] < r[cast] for r in rows]
        first = next((i for i in range(len(rows)) if all(wins[i:])), len(rows))
        min_rows = rows[first]["M"] if first < len(rows) else rows[-1]["M"] * 2
        entries.append({"max_kn": k * n, "min_rows": 0 if first == 0 else min_rows})
    table = json.loads(TABLE.read_text())
    table["devices"][data["environment"]["capability"]] = entries
    table["source"] = str(source)
    table["note"] = f"measured on {data['environment']['device']} ({data['environment']['date'][:10]})"
    TABLE.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {TABLE}: {len(entries)} GEMM sizes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--model", default="flux-dev")
    m.add_argument("--json", type=Path, required=True)
    m.add_argument("--steps", type=int, default=20)
    t = sub.add_parser("table")
    t.add_argument("source", type=Path)
    args = parser.parse_args()
    if args.what == "measure":
        measure(args.model, args.json, args.steps)
    else:
        table(args.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
