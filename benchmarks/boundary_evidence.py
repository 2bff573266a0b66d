"""What keeping the boundary layers costs and buys, and what the AdaLN modulation linears are.

1. Per zoo model (the tiny twins on CPU; ``--full sd15`` adds the full-size SD1.5 on CPU): output
   SQNR against bf16 (``cast``, aot_eager) and the whole model's weight bytes, for three plans:
   the name list fp8pass used before (``OLD_NAME_LIST``), the structural default (boundary layers
   kept, ``FP8Config()``), and nothing kept (``FP8Config(keep_boundary=False)``). Byte counts at
   full size come from the full-size config on the ``meta`` device, traced with ``meta`` inputs.
2. AdaLN modulation linears inside blocks (``norm1.linear``, ``norm1_context.linear``,
   ``norm.linear``): per-layer output SQNR against the other converted linears
   (``fp8pass.analyze``), the output SQNR with them kept in bf16 instead, and their share of bytes.

    python benchmarks/boundary_evidence.py --json benchmarks/results/boundary-evidence-cpu-DATE.json [--full sd15]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
from pathlib import Path

import torch

from fp8pass import FP8Backend, FP8Config
from fp8pass.analyze import analyze, weight_bytes
from fp8pass.bench import zoo
from fp8pass.metrics import sqnr

# DEFAULT_SKIP before the structural default: written from the names in the five zoo models
OLD_NAME_LIST = (
    r"^conv_in$",
    r"^(x_embedder|context_embedder|patch_embedding)$",
    r"^(pos_embed|patch_embed)\.proj$",
    r"^(time_embedding|time_text_embed|add_embedding|condition_embedder)\.",
    r"^(conv_out|proj_out)$",
    r"^norm_out\.",
    r"\.lora_(A|B)\.",
)
PLANS = {
    "old name list": FP8Config(skip=OLD_NAME_LIST, keep_boundary=False),
    "structural (default)": FP8Config(),
    "nothing kept": FP8Config(keep_boundary=False),
}
ADALN = re.compile(r"\.norm1?(_context)?\.linear$|\.norm\.linear$")
ADALN_MODELS = ("flux-dev-tiny", "sd35-medium-tiny")


def compiled_sqnr(name: str, config: FP8Config) -> tuple[float, str]:
    torch._dynamo.reset()
    model, inputs = zoo.build(name)
    with torch.no_grad():
        ref = model(**inputs, return_dict=False)[0]
        be = FP8Backend(config, inner="aot_eager")
        out = torch.compile(model, backend=be)(**inputs, return_dict=False)[0]
    rows = be.report()
    return sqnr(ref, out), f"{sum(r.converted for r in rows)}/{len(rows)}"


def full_size_bytes(name: str, config: FP8Config) -> float:
    model = zoo.build_model(name, "meta")
    return weight_bytes(model, config, zoo.build_inputs(name, "meta"))["model_ratio"]


def plans(name: str, full: str | None) -> dict:
    out = {}
    for label, config in PLANS.items():
        db, converted = compiled_sqnr(name, config)
        row = {"sqnr_db": round(db, 2), "layers_converted": converted}
        if full:
            row["full_size_model_bytes_ratio"] = round(full_size_bytes(full, config), 4)
        out[label] = row
        print(name, label, row, flush=True)
    return out


def adaln(name: str) -> dict:
    model, inputs = zoo.build(name)
    rep = analyze(model, inputs, FP8Config(), alone=0)
    mod = [r.output_sqnr for r in rep.layers if ADALN.search(r.name)]
    other = [r.output_sqnr for r in rep.layers if not ADALN.search(r.name) and r.kind == "linear"]
    kept, _ = compiled_sqnr(name, FP8Config(skip=(r"\.lora_(A|B)\.", ADALN.pattern)))
    converted, _ = compiled_sqnr(name, FP8Config())
    full = zoo.build_model(name.removesuffix("-tiny"), "meta")
    meta_inputs = zoo.build_inputs(name.removesuffix("-tiny"), "meta")
    both = weight_bytes(full, FP8Config(), meta_inputs)
    kept_bytes = weight_bytes(full, FP8Config(skip=(r"\.lora_(A|B)\.", ADALN.pattern)), meta_inputs)
    result = {
        "adaln_layer_output_sqnr_db_median": round(statistics.median(mod), 2),
        "other_linear_layer_output_sqnr_db_median": round(statistics.median(other), 2),
        "end_to_end_sqnr_db_adaln_converted": round(converted, 2),
        "end_to_end_sqnr_db_adaln_kept": round(kept, 2),
        "full_size_model_bytes_ratio_adaln_converted": round(both["model_ratio"], 4),
        "full_size_model_bytes_ratio_adaln_kept": round(kept_bytes["model_ratio"], 4),
    }
    print(name, "AdaLN", result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", nargs="*", default=[], help="full-size zoo models to add (CPU: sd15)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tiny = [n for n in zoo.MODELS if n.endswith("-tiny")]
    result = {
        "environment": {
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "device": "cpu",
        },
        "plans": {n: plans(n, n.removesuffix("-tiny")) for n in tiny},
        "full_size": {n: plans(n, n) for n in args.full},
        "adaln": {n: adaln(n) for n in ADALN_MODELS},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
