"""Every denoiser class diffusers ships, under fp8pass: ``python -m fp8pass sweep``.

For each entry of :mod:`fp8pass.bench.catalogue` (small configurations with the real block
structure): whether the model itself compiles ``fullgraph=True`` (and where it breaks if not),
then under fp8pass with each compute path (``aot_eager``: the graph Inductor would get): layers
converted / total, boundary layers kept, originals released, output SQNR against the bf16 model;
whether every path plans the same layers (compiled, hooks and the module plan with the traced
structure; the module tree alone, as a loader without example inputs uses it); the weight bytes
of the whole model; and what fp8pass does not convert (a layer kind it lacks, a computed weight).
"""

from __future__ import annotations

import datetime
import gc
import inspect
import math
import platform
import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..analyze import weight_bytes
from ..backend import FP8Backend
from ..computes import COMPUTES
from ..config import FP8Config
from ..hooks import apply_fp8_hooks
from ..kinds import kind_of_module
from ..metrics import sqnr
from ..plan import plan_modules
from ..structure import classify, structure_of
from . import zoo
from .catalogue import CATALOGUE

__all__ = ["SweepRow", "check_entry", "format_sweep", "run_sweep"]

_COMPUTES = tuple(COMPUTES)


@dataclass
class SweepRow:
    name: str
    cls: str
    family: str = ""
    params: int = 0
    layers_total: int = 0
    layers_converted: int = 0
    boundary: list[str] = field(default_factory=list)  # layers kept as boundary layers
    not_converted: dict[str, int] = field(default_factory=dict)  # other reasons -> count
    model_bytes_ratio: float | None = None  # all weights, FP8 / bf16
    sqnr: dict[str, float | None] = field(default_factory=dict)  # compute -> dB (None: identical)
    released: bool = False
    fullgraph: bool = True
    graph_break: str = ""  # where the model itself breaks fullgraph (diffusers file:line)
    graphs: dict[str, int] = field(default_factory=dict)  # compute -> graphs compiled
    structure: str = ""  # "traced", or why only the module tree decided
    plans_agree: bool = False  # compiled, hooks, module plan (traced)
    module_tree_agrees: bool = False  # the module tree alone (loaders without example inputs)
    plan_differences: str = ""
    outside_layers: str = ""  # weights fp8pass never sees as a linear / conv
    deterministic: bool = True
    error: str = ""
    seconds: float = 0.0


def _leaves(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _leaves(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _leaves(o)]
    return []


def _call_inputs(model: torch.nn.Module, inputs: dict) -> dict:
    """``inputs`` plus ``return_dict=False`` where the model's forward takes it (aMUSEd's
    UVit2DModel and UniDiffuserModel return plain tensors and take no such argument)."""
    forward = getattr(model, "_orig_mod", model).forward
    params = inspect.signature(forward).parameters.values()
    if any(p.name == "return_dict" or p.kind is p.VAR_KEYWORD for p in params):
        return {**inputs, "return_dict": False}
    return dict(inputs)


def _output(model: Any, inputs: dict) -> torch.Tensor:
    """Every floating tensor the model returns, flattened into one: residual tuples, lists of
    predictions and video + audio outputs alike."""
    torch.manual_seed(0)  # models that draw noise in forward draw the same noise each call
    with torch.no_grad():
        out = model(**_call_inputs(model, inputs))
    leaves = [t.detach().float().flatten() for t in _leaves(out) if t.is_floating_point()]
    return torch.cat(leaves)


def _break_site(error: BaseException) -> str:
    """The innermost diffusers ``file:line`` an error's message names, and its first line."""
    text = str(error)
    sites = re.findall(r'diffusers/([\w/]+\.py)", line (\d+)', text)
    first = text.strip().splitlines()[0][:140] if text.strip() else type(error).__name__
    return f"{sites[-1][0]}:{sites[-1][1]}: {first}" if sites else first


def _fresh(entry: zoo.ZooModel) -> tuple[torch.nn.Module, dict]:
    torch._dynamo.reset()
    gc.collect()
    return zoo.build_entry(entry)


def _outside_layers(model: torch.nn.Module) -> str:
    """Parameters of 4096+ elements that no linear / conv holds, by the module class holding them."""
    found: dict[str, int] = {}
    for _, module in model.named_modules():
        if kind_of_module(module) is not None:
            continue
        for _, p in module.named_parameters(recurse=False):
            if p.numel() >= 4096 and p.dim() >= 2:
                found[type(module).__name__] = found.get(type(module).__name__, 0) + p.numel()
    total = sum(p.numel() for p in model.parameters()) or 1
    return ", ".join(f"{k} {v / total:.1%}" for k, v in sorted(found.items(), key=lambda kv: -kv[1]))


def check_entry(entry: zoo.ZooModel, computes: tuple[str, ...] = _COMPUTES) -> SweepRow:
    """Run one catalogue entry through fp8pass (see the module docstring)."""
    t0 = time.perf_counter()
    row = SweepRow(entry.name, entry.cls, entry.notes.get("family", ""))
    try:
        _check(entry, row, computes)
    except Exception as e:  # one entry's failure is a row, not the end of the sweep
        row.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        row.error += " @ " + traceback.extract_tb(e.__traceback__)[-1].filename.rsplit("/", 2)[-1]
    row.seconds = round(time.perf_counter() - t0, 1)
    return row


def _check(entry: zoo.ZooModel, row: SweepRow, computes: tuple[str, ...]) -> None:
    model, inputs = _fresh(entry)
    row.params = sum(p.numel() for p in model.parameters())
    ref = _output(model, inputs)
    row.deterministic = torch.equal(ref, _output(model, inputs))
    row.outside_layers = _outside_layers(model)
    fresh, fresh_inputs = _fresh(entry)
    try:  # a model never called before, as torch.compile usually meets it
        torch.compile(fresh, backend="eager", fullgraph=True)(**_call_inputs(fresh, fresh_inputs))
    except Exception as e:
        row.graph_break = _break_site(e)
        try:  # some models build a cache lazily on their first call, in code Dynamo cannot trace
            torch._dynamo.reset()
            torch.compile(model, backend="eager", fullgraph=True)(**_call_inputs(model, inputs))
            row.graph_break = (
                f"only on a model never called before (compiles after one eager call): {row.graph_break}"
            )
        except Exception as e2:
            row.fullgraph, row.graph_break = False, _break_site(e2)
    config = FP8Config()
    structure = structure_of(model, (), inputs)
    row.structure = "traced" if structure.traced else f"module tree: {structure.note}"
    traced = plan_modules(model, config, structure=structure)
    untraced = plan_modules(model, config, structure=classify(model, None))
    row.model_bytes_ratio = round(weight_bytes(model, config, inputs)["model_ratio"], 4)
    compiled_plans, seen = [], set()
    for compute in computes:
        model, inputs = _fresh(entry)
        if (
            row.graph_break and row.fullgraph
        ):  # the lazy cache: one eager call first, as the sweep's note says
            _output(model, inputs)
        torch._dynamo.utils.counters.clear()
        be = FP8Backend(FP8Config(compute=compute), inner="aot_eager")
        out = _output(torch.compile(model, backend=be, fullgraph=row.fullgraph), inputs)
        value = sqnr(ref, out)
        row.sqnr[compute] = None if math.isinf(value) else round(value, 2)
        row.graphs[compute] = be.num_graphs
        rows = be.report()
        converted = {r.name for r in rows if r.converted}
        compiled_plans.append(converted)
        seen |= {r.name for r in rows}
        row.layers_total, row.layers_converted = len(rows), len(converted)
        row.released = all(r.released for r in rows if r.converted and r.bytes_before)
        row.boundary = sorted(r.name for r in rows if r.reason.startswith(("input layer", "output layer")))
        others: dict[str, int] = {}
        for r in rows:
            if not r.converted and r.name not in row.boundary:
                kind = re.sub(r"'[^']*'|\b\d+\b", "…", r.reason)
                others[kind] = others.get(kind, 0) + 1
        row.not_converted = others
    hooked_model, hooked_inputs = _fresh(entry)
    hooks = apply_fp8_hooks(hooked_model, config, hooked_inputs)
    hooked = {r.name for r in hooks.report() if r.converted}
    # the module plan sees modules the forward never calls; the graph sees only called ones
    called = seen
    planned = {la.name for la in traced if la.converted and la.name in called}
    from_tree = {la.name for la in untraced if la.converted and la.name in called}
    differences = []
    if len({frozenset(p) for p in compiled_plans}) > 1:
        differences.append("cast and scaled_mm convert different layers")
    for label, other in (("hooks", hooked & called), ("module plan", planned)):
        if other != compiled_plans[0]:
            differences.append(f"{label}: {sorted(other ^ compiled_plans[0])[:4]}")
    row.plans_agree = not differences
    row.module_tree_agrees = from_tree == compiled_plans[0]
    if not row.module_tree_agrees:
        differences.append(f"module tree: {sorted(from_tree ^ compiled_plans[0])[:4]}")
    row.plan_differences = "; ".join(differences)


def run_sweep(names: list[str] | None = None, progress: bool = True) -> tuple[dict[str, Any], list[SweepRow]]:
    """:func:`check_entry` for every catalogue entry (or ``names``); ``(environment, rows)``."""
    import diffusers

    names = names or list(CATALOGUE)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown catalogue entries {unknown}; choose from {', '.join(CATALOGUE)}")
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "inner": "aot_eager",
        "config": "FP8Config() per compute path",
    }
    rows = []
    for i, name in enumerate(names):
        row = check_entry(CATALOGUE[name])
        rows.append(row)
        if progress:
            ok = (
                "ERROR " + row.error if row.error else f"{row.layers_converted}/{row.layers_total} {row.sqnr}"
            )
            print(f"[{i + 1}/{len(names)}] {name} ({row.seconds}s): {ok}", flush=True)
    return env, rows


def format_sweep(rows: list[SweepRow], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    def db(row: SweepRow, compute: str) -> str:
        if compute not in row.sqnr:
            return "-"
        value = row.sqnr[compute]
        return "exact" if value is None else f"{value:.1f}"

    table = [
        [
            r.cls,
            r.name,
            f"{r.layers_converted}/{r.layers_total}" if not r.error else "-",
            len(r.boundary) if not r.error else "-",
            f"{r.model_bytes_ratio:.3f}" if r.model_bytes_ratio is not None else "-",
            f"{db(r, 'cast')} / {db(r, 'scaled_mm')}",
            ("yes" if not r.graph_break else f"yes, {r.graph_break}")
            if r.fullgraph
            else f"no: {r.graph_break}",
            "yes" if r.plans_agree else f"no: {r.plan_differences}",
            "; ".join(
                x
                for x in (
                    r.error,
                    ", ".join(f"{n} {k}" for k, n in r.not_converted.items()),
                    f"outside linear/conv: {r.outside_layers}" if r.outside_layers else "",
                    "" if r.deterministic else "forward draws noise (seeded per call)",
                    "" if r.structure == "traced" else r.structure,
                )
                if x
            ),
        ]
        for r in sorted(rows, key=lambda r: (r.cls, r.name))
    ]
    headers = [
        "class",
        "entry",
        "converted",
        "boundary kept",
        "weights x bf16",
        "SQNR dB cast / scaled_mm",
        "fullgraph (the model's own breaks)",
        "plans agree",
        "not converted, and why",
    ]
    return tabulate(table, headers=headers, tablefmt=tablefmt)


def to_json(env: dict[str, Any], rows: list[SweepRow]) -> str:
    import json

    return json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=1, allow_nan=False)
