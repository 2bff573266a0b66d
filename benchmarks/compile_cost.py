"""Compile cost of fp8pass against plain Inductor: cold compiles, warm starts, resolution changes,
LoRA hot-swaps and regional compilation (issue 17).

1. cold: the first call (compile + one step) of plain Inductor and of fp8pass (default FP8Config:
   compute="cast") on full-size models, each in a fresh process with a fresh, empty
   TORCHINDUCTOR_CACHE_DIR, the two interleaved, repeated; the ratio fp8pass / Inductor per repeat;
   where fp8pass's own pass spends its time (its stages timed with perf_counter by wrapping them in
   the child process: no library change).
2. warm: a second fresh process on the same cache directory, and a third on an empty one after
   torch.compiler.load_cache_artifacts() of what the cold process saved: first-call time, cold /
   warm, Inductor's FX graph cache and AOTAutograd's cache counters.
3. dynamic: graphs compiled over three resolutions (and a video model over frame counts) with
   dynamic=None (the default), dynamic=True and torch._dynamo.mark_dynamic, for fp8pass and plain
   compilation; both compile with aot_eager (Dynamo decides the graphs; no codegen).
4. lora: diffusers' LoRA hot-swap on an fp8pass-compiled flux-dev-tiny (fp8pass.bench.lora): graphs
   before and after each of three swaps, SQNR against bf16 with the same adapter, base weights released.
5. regional: model.compile_repeated_blocks(backend=FP8Backend()) against whole-model compile with
   fp8pass, cold, in fresh processes (run within section 1's repeats, interleaved).

    python benchmarks/compile_cost.py --quick                       # tiny models, a smoke test
    python benchmarks/compile_cost.py --json benchmarks/results/compile-cost-cpu-DATE.json
    python benchmarks/compile_cost.py --only dynamic                # one section
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# this checkout's fp8pass, not an installed one (a script's directory, not the cwd, leads sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECTIONS = ("cold", "dynamic", "lora", "regional")

#: full-size models for sections 1, 2 and 5, at sizes a shared 2-core CPU compiles and runs in time
SD15_LATENT = 32  # 256x256 images, batch 1, 77 text tokens
FLUX_DEPTH = (1, 2)  # double, single blocks: flux-dev at full width (3072, 24 heads), reduced depth
FLUX_TOKENS = (256, 32)  # image tokens (a 256x256 image), text tokens
FULL = {
    "sd15": f"SD1.5 UNet, full size (860M), {SD15_LATENT * 8}x{SD15_LATENT * 8}, batch 1",
    "flux-dev-reduced": f"flux-dev at full width, {FLUX_DEPTH[0]} double + {FLUX_DEPTH[1]} single blocks, "
    f"{FLUX_TOKENS[0]} image + {FLUX_TOKENS[1]} text tokens, batch 1",
}
#: models cold-compiled in the first repeat only: SD1.5's compile takes ~4 min a process here, and the
#: full run has to fit ~40 min (its spread is flux-dev-reduced's to show)
ONE_REPEAT = {"sd15"}
#: models without the portable-artifacts run: on a CPU it rebuilds Inductor's C++ (~75% of a cold
#: compile in --quick), which for SD1.5 would cost ~5 min here
NO_ARTIFACTS = {"sd15"}
QUICK = {
    "sd15-tiny": "sd15-tiny (zoo), 16x16 latents, batch 2",
    "flux-dev-tiny": "flux-dev-tiny (zoo), 64 image + 8 text tokens",
}

# -- the child process: one compile, timed ---------------------------------------------------------


def build(key: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    from fp8pass.bench import zoo

    bf16, cpu = torch.bfloat16, torch.device("cpu")
    if key == "sd15":
        g = torch.Generator().manual_seed(1)
        return zoo.build_model("sd15"), {
            "sample": zoo.seeded_randn((1, 4, SD15_LATENT, SD15_LATENT), g, cpu, bf16),
            "timestep": torch.tensor([500]),
            "encoder_hidden_states": zoo.seeded_randn((1, 77, 768), g, cpu, bf16),
            "return_dict": False,
        }
    if key == "flux-dev-reduced":
        config = {
            **zoo.MODELS["flux-dev"].config,
            "num_layers": FLUX_DEPTH[0],
            "num_single_layers": FLUX_DEPTH[1],
        }
        model = zoo.build_from_config("FluxTransformer2DModel", config, cpu, bf16)
        return model, {**flux_inputs(FLUX_TOKENS[0], FLUX_TOKENS[1], 64, 4096, 768), "return_dict": False}
    model, inputs = zoo.build(key)
    return model, {**inputs, "return_dict": False}


def flux_inputs(image_tokens: int, text_tokens: int, channels: int, text_dim: int, pooled: int) -> dict:
    from fp8pass.bench import zoo

    g, cpu, bf16 = torch.Generator().manual_seed(1), torch.device("cpu"), torch.bfloat16
    side = int(image_tokens**0.5)
    ids = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(
        -1, 2
    )
    return {
        "hidden_states": zoo.seeded_randn((1, image_tokens, channels), g, cpu, bf16),
        "encoder_hidden_states": zoo.seeded_randn((1, text_tokens, text_dim), g, cpu, bf16),
        "pooled_projections": zoo.seeded_randn((1, pooled), g, cpu, bf16),
        "timestep": torch.tensor([0.5], dtype=bf16),
        "img_ids": torch.cat([torch.zeros(image_tokens, 1), ids.float()], dim=1),
        "txt_ids": torch.zeros(text_tokens, 3),
        "guidance": torch.tensor([3.5], dtype=bf16),
    }


class StageTimer:
    """Exclusive wall time of each wrapped function while an FP8Backend call is on the stack (the
    same functions called at run time, outside a compile, are not counted)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}  # outermost calls: compile_fx re-enters itself with config_patches
        self._stack: list[list[float]] = []
        self._depth: dict[str, int] = {}

    def wrap(self, name: str, fn: Any, root: bool = False) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._stack and not root:
                return fn(*args, **kwargs)
            self._stack.append([time.perf_counter(), 0.0])
            self._depth[name] = self._depth.get(name, 0) + 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth[name] -= 1
                start, children = self._stack.pop()
                elapsed = time.perf_counter() - start
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - children
                if not self._depth[name]:
                    self.calls[name] = self.calls.get(name, 0) + 1
                if self._stack:
                    self._stack[-1][1] += elapsed

        return timed


#: fp8pass's stages: the functions FP8Backend.__call__ runs, by what they do
FP8PASS_STAGES = {
    "plan": [
        ("backend", "FP8Backend._graph_parameters"),
        ("backend", "_owner"),
        ("backend", "layer_names"),
        ("backend", "autocast_regions"),
        ("backend", "plan"),
    ],
    "quantize": [("store", "get_or_quantize"), ("backend", "FP8Backend._fp8_inputs")],
    "rewrite": [("backend", "FP8Backend._groups"), ("backend", "rewrite")],
    "release + guards": [
        ("backend", "FP8Backend._restore_unconverted"),
        ("backend", "refuse_unloaded_or_training"),
        ("store", "first_sight"),
        ("backend", "FP8Backend._release"),
    ],
    "report": [("backend", "FP8Backend._record")],
}


def instrument(timer: StageTimer, fp8pass_too: bool) -> None:
    """Time Inductor's compile_fx (both backends reach it through the module attribute) and, for
    fp8pass, each stage of FP8Backend.__call__ (exclusive of Inductor)."""
    import torch._inductor.compile_fx as cfx

    cfx.compile_fx = timer.wrap("inductor compile_fx", cfx.compile_fx, root=True)
    if not fp8pass_too:
        return
    from fp8pass import backend, store

    modules = {"backend": backend, "store": store}
    for names in FP8PASS_STAGES.values():
        for mod, name in names:
            owner = modules[mod]
            if name.startswith("FP8Backend."):
                owner, name = backend.FP8Backend, name.split(".", 1)[1]
            setattr(owner, name, timer.wrap(name, getattr(owner, name)))
    backend.FP8Backend.__call__ = timer.wrap("__call__", backend.FP8Backend.__call__, root=True)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from torch._dynamo.utils import counters

    from fp8pass import FP8Backend, FP8Config

    out: dict[str, Any] = {"spec": spec}
    if spec.get("load"):
        t0 = time.perf_counter()
        info = torch.compiler.load_cache_artifacts(Path(spec["load"]).read_bytes())
        out["load_artifacts_s"] = time.perf_counter() - t0
        out["loaded_artifacts"] = _artifact_counts(info)
    t0 = time.perf_counter()
    model, inputs = build(spec["model"])
    out["build_s"] = time.perf_counter() - t0
    timer = StageTimer()
    fp8 = spec["backend"] == "fp8pass"
    instrument(timer, fp8)
    backend = FP8Backend(FP8Config(), inner="inductor") if fp8 else "inductor"
    if spec.get("regional"):
        model.compile_repeated_blocks(backend=backend)
        fn = model
    else:
        fn = torch.compile(model, backend=backend)
    with torch.no_grad():
        t0 = time.perf_counter()
        fn(**inputs)
        out["first_call_s"] = time.perf_counter() - t0
        if not spec.get("one_call"):
            t0 = time.perf_counter()
            fn(**inputs)
            out["second_call_s"] = time.perf_counter() - t0
    out["backend_s"] = timer.seconds.pop("__call__", 0.0) if fp8 else None
    out["inductor_s"] = timer.seconds.pop("inductor compile_fx", 0.0)
    out["graphs"] = timer.calls.get("inductor compile_fx", 0)
    if fp8:
        out["fp8pass_stages_s"] = {
            stage: sum(timer.seconds.get(name.split(".")[-1], 0.0) for _, name in names)
            for stage, names in FP8PASS_STAGES.items()
        }
        out["fp8pass_functions_s"] = dict(timer.seconds)
        out["fp8pass_own_s"] = (
            sum(out["fp8pass_stages_s"].values()) + out["backend_s"]
        )  # __call__'s own lines
        out["converted_layers"] = sum(r.converted for r in backend.report())
    out["counters"] = {
        group: {k: v for k, v in counters[group].items() if any(w in k for w in ("cache", "graph"))}
        for group in ("inductor", "aot_autograd", "stats")
    }
    if spec.get("save"):
        t0 = time.perf_counter()
        saved = torch.compiler.save_cache_artifacts()
        out["save_artifacts_s"] = time.perf_counter() - t0
        if saved is not None:
            data, info = saved
            Path(spec["save"]).write_bytes(data)
            out["artifacts_bytes"] = len(data)
            out["saved_artifacts"] = _artifact_counts(info)
    return out


def _artifact_counts(info: Any) -> dict[str, int]:
    """CacheInfo -> {kind: number of artifacts}."""
    if info is None:
        return {}
    return {k: len(v) for k, v in vars(info).items() if isinstance(v, list) and v}


def in_fresh_process(spec: dict[str, Any], cache_dir: Path, timeout: float = 1800) -> dict[str, Any]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir), "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - t0
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if run.returncode or not lines:
        return {"spec": spec, "error": run.stderr[-3000:], "process_s": wall}
    return {**json.loads(lines[-1][len("RESULT ") :]), "process_s": wall}


# -- sections 1, 2, 5: cold and warm compiles in fresh processes ---------------------------------


def cold_and_warm(
    models: dict[str, str],
    repeats: int,
    regional_model: str | None,
    warm: bool,
    warm_repeats: int,
    on_row: Any = None,
) -> dict:
    """Per repeat and model: each backend cold (saving portable artifacts), then, with warm, warm on
    the same cache directory and from the artifacts in an empty one; the backends' order alternates
    between repeats; warm runs in the first warm_repeats repeats only (a warm start's time hardly
    varies; the cold compile is what a second repeat checks). regional_model adds fp8pass's regional compile of that model to its rotation."""
    runs = []
    root = Path(tempfile.mkdtemp(prefix="fp8pass-compile-cost-"))
    for rep in range(repeats):
        for model in models:
            if rep and model in ONE_REPEAT:
                continue
            kinds = [("inductor", False), ("fp8pass", False)]
            if model == regional_model:
                kinds.append(("fp8pass", True))
            if rep % 2:
                kinds.reverse()
            for backend, regional in kinds:
                label = f"{backend}{' regional' if regional else ''}"
                tag = f"{model}-{label.replace(' ', '-')}-{rep}"
                spec = {"model": model, "backend": backend, "regional": regional}
                row = {"model": model, "backend": label, "repeat": rep}
                _log(f"[{rep + 1}/{repeats}] {model} {label}: cold")
                artifacts = root / f"{tag}.bin"
                row["cold"] = in_fresh_process({**spec, "save": str(artifacts)}, root / tag)
                if warm and rep < warm_repeats and not regional and "error" not in row["cold"]:
                    _log(f"[{rep + 1}/{repeats}] {model} {label}: warm (same cache dir)")
                    row["warm"] = in_fresh_process({**spec, "one_call": True}, root / tag)
                    if artifacts.exists() and model not in NO_ARTIFACTS:
                        _log(f"[{rep + 1}/{repeats}] {model} {label}: portable artifacts, empty cache dir")
                        row["artifacts"] = in_fresh_process(
                            {**spec, "load": str(artifacts), "one_call": True}, root / f"{tag}-elsewhere"
                        )
                runs.append(row)
                if on_row:
                    on_row(runs)
                _log(f"    {_summary(row)}")
    return {"runs": runs, "cache_root": str(root)}


def _summary(row: dict) -> str:
    parts = []
    for k in ("cold", "warm", "artifacts"):
        r = row.get(k)
        if r:
            parts.append(
                f"{k} {r.get('first_call_s', float('nan')):.1f}s" if "error" not in r else f"{k} FAILED"
            )
    return ", ".join(parts)


# -- section 3: graphs over resolution changes ---------------------------------------------------


def _sizes(model: str) -> tuple[str, list[Any]]:
    return {
        "flux-dev-tiny": ("image tokens", [64, 144, 256]),
        "sd15-tiny": ("latent side", [16, 24, 32]),
        "wan21-1.3b-tiny": ("latent frames", [2, 3, 4]),
    }[model]


def _at_size(model: str, inputs: dict, size: int) -> tuple[dict, dict[str, list[int]]]:
    """Inputs at another size, and the dimensions that change (for mark_dynamic)."""
    out = dict(inputs)
    if model.startswith("flux"):
        f = flux_inputs(
            size, inputs["encoder_hidden_states"].shape[1], inputs["hidden_states"].shape[-1], 64, 32
        )
        out.update(hidden_states=f["hidden_states"], img_ids=f["img_ids"])
        return out, {"hidden_states": [1], "img_ids": [0]}
    if model.startswith("wan"):
        b, c, _, h, w = inputs["hidden_states"].shape
        out["hidden_states"] = torch.randn(b, c, size, h, w, dtype=torch.bfloat16)
        return out, {"hidden_states": [2]}
    b, c = inputs["sample"].shape[:2]
    out["sample"] = torch.randn(b, c, size, size, dtype=torch.bfloat16)
    return out, {"sample": [2, 3]}


def graphs_over_sizes(model: str, backend: str, mode: str) -> dict[str, Any]:
    from torch._dynamo.utils import counters

    from fp8pass import FP8Backend, FP8Config
    from fp8pass.bench import zoo

    torch._dynamo.reset()
    counters.clear()
    net, inputs = zoo.build(model)
    inputs = {**inputs, "return_dict": False}
    count = {"graphs": 0}
    if backend == "fp8pass":
        be = FP8Backend(FP8Config(), inner="aot_eager")
    else:

        def be(gm, example_inputs):  # aot_eager, counted
            count["graphs"] += 1
            return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    cm = torch.compile(net, backend=be, dynamic=True if mode == "dynamic=True" else None)
    label, sizes = _sizes(model)
    after = []
    try:
        for size in sizes:
            shaped, dims = _at_size(model, inputs, size)
            if mode == "mark_dynamic":
                for name, ds in dims.items():
                    torch._dynamo.mark_dynamic(shaped[name], ds)
            with torch.no_grad():
                cm(**shaped)
            after.append(be.num_graphs if backend == "fp8pass" else count["graphs"])
    except Exception as e:  # noqa: BLE001 - a failing combination is a result
        return {"model": model, "backend": backend, "mode": mode, "error": f"{type(e).__name__}: {e}"[:500]}
    row = {
        "model": model,
        "backend": backend,
        "mode": mode,
        "sizes": f"{label} {', '.join(map(str, sizes))}",
        "graphs_after_each_size": after,
        "graphs": after[-1],
        "unique_graphs_counter": counters["stats"]["unique_graphs"],
    }
    if backend == "fp8pass":
        row["quantized_once"] = be.num_quantized == len({id(r.weight) for r in be.report() if r.converted})
    return row


def dynamic_section(models: list[str]) -> list[dict]:
    rows = []
    for model in models:
        for mode in ("default (dynamic=None)", "dynamic=True", "mark_dynamic"):
            for backend in ("inductor", "fp8pass"):
                _log(f"dynamic: {model} {mode} {backend}")
                rows.append(graphs_over_sizes(model, backend, mode))
    return rows


# -- section 4: LoRA hot-swap --------------------------------------------------------------------


def lora_section(inners: list[str]) -> list[dict]:
    from fp8pass.bench.lora import hotswap

    rows = []
    for inner in inners:
        _log(f"lora: hotswap, inner={inner}")
        torch._dynamo.reset()
        try:
            rows.append(hotswap("model", inner=inner))
        except Exception as e:  # noqa: BLE001
            rows.append({"level": "model", "inner": inner, "error": f"{type(e).__name__}: {e}"[:500]})
    return rows


# -- the report ----------------------------------------------------------------------------------


def environment(quick: bool) -> dict[str, Any]:
    import diffusers

    from fp8pass.bench.variants import cpu_name

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "quick": quick,
        "note": "a shared machine: absolute times are noisy; compare the ratios taken within a repeat",
        "models": QUICK if quick else FULL,
        "inner": "Inductor in sections 1, 2, 5 and 4 (aot_eager with --quick); aot_eager in section 3 (graph counts)",
    }


def _median_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def cold_table(result: dict) -> tuple[str, dict]:
    """One row per model and backend: cold, warm, artifacts first-call seconds (median, min-max over
    repeats), ratios, cache counters; and the fp8pass / Inductor ratio per repeat."""
    from tabulate import tabulate

    runs = result["runs"]
    rows, summary = [], {}
    for model in dict.fromkeys(r["model"] for r in runs):
        base = {r["repeat"]: r for r in runs if r["model"] == model and r["backend"] == "inductor"}
        for label in dict.fromkeys(r["backend"] for r in runs if r["model"] == model):
            mine = [r for r in runs if r["model"] == model and r["backend"] == label]

            def first(kind: str, rows: list[dict] = mine) -> list[float]:
                return [r[kind]["first_call_s"] for r in rows if kind in r and "first_call_s" in r[kind]]

            ratio = [
                r["cold"]["first_call_s"] / base[r["repeat"]]["cold"]["first_call_s"]
                for r in mine
                if "first_call_s" in r["cold"] and "first_call_s" in base.get(r["repeat"], {}).get("cold", {})
            ]
            cold_over_warm = [
                r["cold"]["first_call_s"] / r["warm"]["first_call_s"]
                for r in mine
                if "first_call_s" in r.get("warm", {}) and "first_call_s" in r["cold"]
            ]
            cold_over_art = [
                r["cold"]["first_call_s"] / r["artifacts"]["first_call_s"]
                for r in mine
                if "first_call_s" in r.get("artifacts", {}) and "first_call_s" in r["cold"]
            ]

            def hits(kind: str, rows: list[dict] = mine) -> str:
                r = next((r[kind] for r in rows if "counters" in r.get(kind, {})), None)
                if r is None:
                    return "-"
                c = r["counters"]
                return (
                    f"fx {c['inductor'].get('fxgraph_cache_hit', 0)}/{c['inductor'].get('fxgraph_cache_miss', 0)}"
                    f"/{c['inductor'].get('fxgraph_cache_bypass', 0)}, "
                    f"aot {c['aot_autograd'].get('autograd_cache_hit', 0)}/{c['aot_autograd'].get('autograd_cache_miss', 0)}"
                    f"/{c['aot_autograd'].get('autograd_cache_bypass', 0)}"
                )

            errors = [
                f"{k}: {r[k]['error'][-200:]}"
                for r in mine
                for k in ("cold", "warm", "artifacts")
                if "error" in r.get(k, {})
            ]
            rows.append(
                [
                    model,
                    label,
                    len(mine),
                    _median_spread(first("cold")),
                    _median_spread(ratio) if label != "inductor" else "1",
                    _median_spread(first("warm")),
                    _median_spread(cold_over_warm),
                    hits("warm"),
                    _median_spread(first("artifacts")),
                    _median_spread(cold_over_art),
                    hits("artifacts"),
                    _median_spread([r["cold"].get("second_call_s") for r in mine if "cold" in r]),
                ]
            )
            summary[f"{model} / {label}"] = {
                "cold_first_call_s": first("cold"),
                "ratio_to_inductor_cold_per_repeat": ratio,
                "warm_first_call_s": first("warm"),
                "cold_over_warm": cold_over_warm,
                "artifacts_first_call_s": first("artifacts"),
                "cold_over_artifacts": cold_over_art,
                "errors": errors,
            }
    headers = [
        "model",
        "backend",
        "n",
        "cold first call s",
        "cold vs inductor",
        "warm (same dir) s",
        "cold/warm",
        "warm hits fx/aot (hit/miss/bypass)",
        "artifacts s",
        "cold/artifacts",
        "artifacts hits fx/aot",
        "second call s",
    ]
    return tabulate(rows, headers=headers, tablefmt="github"), summary


def stages_table(result: dict) -> tuple[str, dict]:
    """Where fp8pass's cold compile goes, per model (medians over repeats): Dynamo + the rest (first
    call - backend - one step), fp8pass's own stages, Inductor (compile_fx on the rewritten graph)."""
    from tabulate import tabulate

    rows, summary = [], {}
    for r in result["runs"]:
        c = r["cold"]
        if "first_call_s" not in c:
            continue
        key = (r["model"], r["backend"])
        s = summary.setdefault(f"{key[0]} / {key[1]}", {})

        def add(name: str, value: float | None, s: dict = s) -> None:
            if value is not None:
                s.setdefault(name, []).append(value)

        add("first call", c["first_call_s"])
        add("second call", c["second_call_s"])
        add("inductor compile_fx", c["inductor_s"])
        backend = c["backend_s"] if c.get("backend_s") is not None else 0.0
        stages = c.get("fp8pass_stages_s", {})
        own = sum(stages.values()) + backend if stages else 0.0
        add(
            "dynamo + rest",
            c["first_call_s"] - c["second_call_s"] - c["inductor_s"] - own,
        )
        for name, value in stages.items():
            add(f"fp8pass: {name}", value)
        if stages:
            add("fp8pass: __call__ itself", backend)
            add("fp8pass total (own)", own)
        add("graphs", c["graphs"])
    names = [
        "first call",
        "second call",
        "dynamo + rest",
        "inductor compile_fx",
        *[f"fp8pass: {n}" for n in FP8PASS_STAGES],
        "fp8pass: __call__ itself",
        "fp8pass total (own)",
        "graphs",
    ]
    cols = list(summary)
    for name in names:
        rows.append([name, *[_median_spread(summary[c].get(name, [])) for c in cols]])
    return tabulate(rows, headers=["seconds (median, min-max)", *cols], tablefmt="github"), summary


def dynamic_table(rows: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate(
        [
            [
                r["model"],
                r["mode"],
                r["backend"],
                r.get("sizes", "-"),
                r.get("graphs_after_each_size", r.get("error", "-")),
                r.get("unique_graphs_counter", "-"),
                r.get("quantized_once", "-"),
            ]
            for r in rows
        ],
        headers=[
            "model",
            "dynamic",
            "backend (aot_eager)",
            "sizes",
            "graphs after each size",
            "unique_graphs",
            "each weight quantized once",
        ],
        tablefmt="github",
    )


def lora_table(rows: list[dict]) -> str:
    from tabulate import tabulate

    out = []
    for r in rows:
        if "error" in r:
            out.append([r["inner"], "-", "-", "-", "-", "-", r["error"]])
            continue
        for s in r["swaps"]:
            out.append(
                [
                    r["inner"],
                    f"rank {s['rank']} -> target {r['target_rank']}",
                    f"{s['graphs_before']} -> {s['graphs_after']}",
                    f"{s['swap_s']:.2f}",
                    f"{s['call_after_swap_s']:.3f}",
                    f"{s['sqnr_vs_bf16_same_adapter_db']:.1f}",
                    f"{s['sqnr_vs_previous_adapter_db']:.1f}",
                    r["base_weight_released"] and r["base_weight_in_fp8_store"],
                ]
            )
    return tabulate(
        out,
        headers=[
            "inner",
            "swap",
            "graphs before -> after",
            "swap s",
            "call after swap s",
            "SQNR vs bf16 same adapter dB",
            "SQNR vs previous adapter dB",
            "base released, FP8 kept",
        ],
        tablefmt="github",
    )


def regional_table(result: dict, model: str) -> tuple[str, dict]:
    from tabulate import tabulate

    runs = [r for r in result["runs"] if r["model"] == model and r["backend"].startswith("fp8pass")]
    summary = {}
    for label in ("fp8pass", "fp8pass regional"):
        mine = [r["cold"] for r in runs if r["backend"] == label and "first_call_s" in r["cold"]]
        summary[label] = {
            "cold_first_call_s": [c["first_call_s"] for c in mine],
            "graphs": [c["graphs"] for c in mine],
            "step_s": [c["second_call_s"] for c in mine],
        }
    whole = {r["repeat"]: r["cold"] for r in runs if r["backend"] == "fp8pass"}
    ratio = [
        r["cold"]["first_call_s"] / whole[r["repeat"]]["first_call_s"]
        for r in runs
        if r["backend"] == "fp8pass regional"
        and "first_call_s" in r["cold"]
        and "first_call_s" in whole.get(r["repeat"], {})
    ]
    summary["fp8pass regional"]["ratio_to_whole_per_repeat"] = ratio
    rows = [
        [
            label,
            _median_spread(s["cold_first_call_s"]),
            _median_spread(ratio) if label.endswith("regional") else "1",
            _median_spread(s["graphs"]),
            _median_spread(s["step_s"]),
        ]
        for label, s in summary.items()
    ]
    return tabulate(
        rows,
        headers=[f"{model}, cold", "first call s", "vs whole", "Inductor graphs", "step s"],
        tablefmt="github",
    ), summary


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models only, one repeat (a smoke test)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="cold/warm repeats (default: 2; 1 with --quick)"
    )
    parser.add_argument("--warm-repeats", type=int, default=1, help="repeats that also run warm starts")
    parser.add_argument(
        "--models", nargs="+", help="sections 1, 2, 5: only these models (of the full or quick set)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    sections = args.only or list(SECTIONS)
    models = QUICK if args.quick else FULL
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models}
    regional_model = "flux-dev-tiny" if args.quick else "flux-dev-reduced"
    repeats = args.repeats or (1 if args.quick else 2)
    env = environment(args.quick)
    env.update(
        repeats=repeats,
        warm_repeats=min(args.warm_repeats, repeats),
        one_repeat_only=sorted(ONE_REPEAT & set(models)),
        no_portable_artifacts_run=sorted(NO_ARTIFACTS & set(models)),
        first_call="compile + one step, in a fresh process with an empty TORCHINDUCTOR_CACHE_DIR (cold)",
    )

    def save() -> None:  # after every section, so that a cut-off run keeps what it measured
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, allow_nan=False))

    report: dict[str, Any] = {"environment": env, "sections": sections}
    md = [f"environment: {json.dumps(env)}"]
    t_start = time.perf_counter()
    if "cold" in sections or "regional" in sections:
        chosen = models if "cold" in sections else {regional_model: models[regional_model]}
        result = cold_and_warm(
            chosen,
            repeats,
            regional_model if "regional" in sections else None,
            warm="cold" in sections,
            warm_repeats=args.warm_repeats,
            on_row=lambda runs: (report.__setitem__("cold_warm_runs", runs), save()),
        )
        report["cold_warm_runs"] = result["runs"]
        if "cold" in sections:
            table, summary = cold_table(result)
            report["cold_warm"] = summary
            md += [
                "",
                "## 1-2. Cold compile, warm start, portable artifacts (first call = compile + one step)",
                table,
            ]
            table, summary = stages_table(result)
            report["cold_stages"] = summary
            md += ["", "## 1. Where a cold compile goes", table]
        if "regional" in sections:
            table, summary = regional_table(result, regional_model)
            report["regional"] = summary
            md += [
                "",
                "## 5. Regional compilation (compile_repeated_blocks) vs whole model, fp8pass, cold",
                table,
            ]
        save()
    if "dynamic" in sections:
        rows = dynamic_section(["flux-dev-tiny", "wan21-1.3b-tiny"])
        report["dynamic"] = rows
        md += ["", "## 3. Graphs over resolution changes (aot_eager inner for both)", dynamic_table(rows)]
        save()
    if "lora" in sections:
        rows = lora_section(["aot_eager"] if args.quick else ["inductor"])
        report["lora"] = rows
        md += ["", "## 4. LoRA hot-swap on fp8pass-compiled flux-dev-tiny", lora_table(rows)]
    env["total_s"] = time.perf_counter() - t_start
    text = "\n".join(md)
    print(text)
    report["markdown"] = text
    save()
    if args.json:
        _log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
