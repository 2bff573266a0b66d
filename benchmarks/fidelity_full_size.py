"""Full-size fidelity and memory of one zoo model, on whatever device is at hand.

Output SQNR against the bf16 model for compute="cast" and "scaled_mm" (aot_eager: the numerics
Inductor compiles, without its compile time), the weight bytes the model really holds before and
after conversion (distinct storages of parameters and buffers, plus the FP8 copies), and the
most sensitive layers by fp8pass.analyze. Not a speed benchmark.

    python benchmarks/fidelity_full_size.py --model sd15 --json benchmarks/results/fidelity-sd15-cpu-DATE.json
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

from fp8pass import FP8Backend, FP8Config
from fp8pass.analyze import analyze
from fp8pass.bench import zoo
from fp8pass.bench.variants import held_weight_bytes, resolve_device
from fp8pass.metrics import sqnr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--alone", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    model, inputs = zoo.build(args.model, device)
    with torch.no_grad():
        ref = model(**inputs, return_dict=False)[0]
    fidelity = analyze(model, inputs, FP8Config(), alone=args.alone)
    result = {
        "environment": {
            "date": datetime.date.today().isoformat(),
            "model": args.model,
            "shape": zoo.MODELS[args.model].shape_note,
            "device": device.type,
            "torch": torch.__version__,
        },
        "analyze_end_to_end_sqnr_db": fidelity.end_to_end_sqnr,
        "most_sensitive": [r.__dict__ for r in fidelity.most_sensitive(args.alone)],
        "bytes_before": held_weight_bytes(model, [], []),
    }
    for compute in ("cast", "scaled_mm"):
        torch._dynamo.reset()
        be = FP8Backend(FP8Config(compute=compute, release_weights=compute == "scaled_mm"), inner="aot_eager")
        with torch.no_grad():
            out = torch.compile(model, backend=be, fullgraph=True)(**inputs, return_dict=False)[0]
        rows = be.report()
        result[f"sqnr_{compute}_db"] = sqnr(ref, out)
        result["layers_converted"] = f"{sum(r.converted for r in rows)}/{len(rows)}"
        result["graphs"] = be.num_graphs
        if compute == "scaled_mm":  # the last run releases the originals: measure what is held
            result["bytes_after"] = held_weight_bytes(model, rows, [])
    result["ratio"] = result["bytes_after"] / result["bytes_before"]
    print(json.dumps({k: v for k, v in result.items() if k != "most_sensitive"}, indent=1))
    print(fidelity.table(args.alone))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
