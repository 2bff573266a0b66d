"""The whole pipeline in FP8, in one call: denoiser(s), text encoders, ControlNets, image encoders
and (where the evidence allows) the VAE.

    >>> report = fp8pass.compile_pipeline(pipe)            # doctest: +SKIP
    >>> image = pipe("a photo of a cat").images[0]         # doctest: +SKIP
    >>> print(report.table())                              # per component, after the first call

Each component is compiled in place (``module.compile(backend=FP8Backend(...))``), so the module
tree, ``state_dict`` keys and the pipeline's own code are unchanged: ``pipe(...)`` runs as before.
A VAE's work happens in ``vae.encode`` / ``vae.decode`` (methods, not ``forward``): its
``encoder`` and ``decoder`` submodules are what gets compiled, which also keeps tiling and slicing
working (they call the same submodules on tiles and slices). Dynamo's default dynamic-shape
behaviour applies: the first shape compiles static, and each dimension becomes dynamic the first
time it changes, so varied prompt lengths make two graphs per component, and a tiled VAE decoder
three (a width change, then a height change); ``dynamic=True`` compiles one dynamic graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .backend import FP8Backend
from .config import FP8Config
from .report import LayerReport, human_bytes, reason_counts, summarize

__all__ = ["DEFAULT_CONFIGS", "PipelineReport", "compile_pipeline", "component_kind"]

#: FP8Config per component kind, by default (see the README's "Whole pipelines" for the evidence).
#: ``None``: left in its dtype unless named in ``components``.
DEFAULT_CONFIGS: dict[str, FP8Config | None] = {
    "denoiser": FP8Config(),
    "controlnet": FP8Config(),
    "text_encoder": FP8Config(),
    "image_encoder": FP8Config(),
    "vae": None,
}


def component_kind(name: str, module: torch.nn.Module) -> str:
    """``"vae"``, ``"text_encoder"``, ``"image_encoder"``, ``"controlnet"`` or ``"denoiser"``."""
    cls = type(module).__name__
    if "Autoencoder" in cls or name.startswith("vae"):
        return "vae"
    if "ControlNet" in cls or name.startswith("controlnet"):
        return "controlnet"
    if name.startswith("image_encoder") or "Vision" in cls:
        return "image_encoder"
    if name.startswith("text_encoder") or cls.endswith(
        ("TextModel", "EncoderModel", "TextModelWithProjection")
    ):
        return "text_encoder"
    return "denoiser"


@dataclass
class _Component:
    name: str
    kind: str
    module: torch.nn.Module
    backends: list[FP8Backend] = field(default_factory=list)
    note: str = ""


@dataclass
class PipelineReport:
    """What :func:`compile_pipeline` did to each component; filled as the pipeline first runs
    (torch.compile converts on the first call)."""

    components: list[_Component]

    def rows(self, name: str) -> list[LayerReport]:
        """The per-layer report of component ``name``."""
        comp = next(c for c in self.components if c.name == name)
        return [r for be in comp.backends for r in be.report()]

    def summary(self) -> list[dict[str, Any]]:
        """Per component: layers converted / total, linear/conv weight bytes before / after, the
        component's whole weight bytes before / after, graphs compiled, and what was kept and why."""
        out = []
        for c in self.components:
            rows = self.rows(c.name)
            s = summarize(rows)
            params = {id(p): p for p in c.module.parameters()}.values()
            total = sum(p.numel() * p.element_size() for p in params)
            kept = reason_counts(rows)
            out.append(
                {
                    "component": c.name,
                    "kind": c.kind,
                    "class": type(c.module).__name__,
                    "fp8": bool(c.backends),
                    "layers": f"{s['converted']}/{s['layers']}" if c.backends else "-",
                    "bytes_before": total,
                    "bytes_after": total - s["bytes_before"] + s["bytes_after"],
                    "graphs": sum(be.num_graphs for be in c.backends),
                    "kept": kept,
                    "note": c.note,
                }
            )
        return out

    def totals(self) -> dict[str, float]:
        rows = self.summary()
        before = sum(r["bytes_before"] for r in rows)
        after = sum(r["bytes_after"] for r in rows)
        return {"bytes_before": before, "bytes_after": after, "ratio": after / before if before else 1.0}

    def table(self, tablefmt: str = "github") -> str:
        from tabulate import tabulate

        rows = [
            [
                r["component"],
                r["class"],
                r["layers"],
                human_bytes(r["bytes_before"]),
                human_bytes(r["bytes_after"]),
                r["graphs"],
                "; ".join(f"{n} {why}" for why, n in r["kept"].items()) or r["note"],
            ]
            for r in self.summary()
        ]
        t = self.totals()
        headers = [
            "component",
            "class",
            "fp8 layers",
            "weights before",
            "weights after",
            "graphs",
            "kept, and why",
        ]
        total = (
            f"whole pipeline: {human_bytes(t['bytes_before'])} -> {human_bytes(t['bytes_after'])} "
            f"({t['ratio']:.3f}x)"
        )
        return tabulate(rows, headers=headers, tablefmt=tablefmt) + "\n" + total


def compile_pipeline(
    pipe: Any,
    config: FP8Config | None = None,
    *,
    components: dict[str, FP8Config | None] | list[str] | None = None,
    inner: str = "inductor",
    mode: str | None = None,
    options: dict[str, Any] | None = None,
    dynamic: bool | None = None,
) -> PipelineReport:
    """Convert every ``nn.Module`` component of a diffusers pipeline to FP8 weight storage, in place.

    ``config`` (if given) replaces the per-kind defaults (:data:`DEFAULT_CONFIGS`) for every
    component fp8pass converts. ``components``: a list of component names to convert (others are
    left alone), or a dict name -> FP8Config (``None``: leave it alone); by default every denoiser,
    ControlNet, text encoder and image encoder, and not the VAE (see :data:`DEFAULT_CONFIGS`).
    ``inner``, ``mode``, ``options`` go to each :class:`FP8Backend`; ``dynamic`` to torch.compile.
    Returns a :class:`PipelineReport`, filled as the pipeline first runs.

    Example:
        >>> report = compile_pipeline(pipe, components=["transformer", "text_encoder_2"])  # doctest: +SKIP
    """
    found: dict[int, _Component] = {}
    for name, module in _modules(pipe):
        if id(module) not in found:  # one module under two names is compiled once
            found[id(module)] = _Component(name, component_kind(name, module), module)
    chosen = _choose(list(found.values()), config, components)
    for comp in found.values():
        comp_config = chosen.get(comp.name)
        if comp_config is None:
            comp.note = "left in its dtype" + (
                " (the VAE is not converted by default)" if comp.kind == "vae" else ""
            )
            continue
        for target in _targets(comp):
            be = FP8Backend(comp_config, inner=inner, mode=mode, options=options)
            target.compile(backend=be, dynamic=dynamic)
            comp.backends.append(be)
    return PipelineReport(list(found.values()))


def _modules(pipe: Any) -> list[tuple[str, torch.nn.Module]]:
    items = getattr(pipe, "components", None)
    if not isinstance(items, dict):
        raise ValueError(
            f"compile_pipeline: {type(pipe).__name__} has no .components dict; pass a diffusers pipeline"
        )
    return [(n, m) for n, m in items.items() if isinstance(m, torch.nn.Module)]


def _choose(
    comps: list[_Component], config: FP8Config | None, components: dict | list | None
) -> dict[str, FP8Config | None]:
    names = {c.name for c in comps}
    if components is not None:
        asked = (
            components if isinstance(components, dict) else dict.fromkeys(components, config or FP8Config())
        )
        if unknown := sorted(set(asked) - names):
            raise ValueError(f"compile_pipeline: no component {unknown}; the pipeline has {sorted(names)}")
        return {n: (asked[n] if isinstance(components, dict) else config or asked[n]) for n in asked}
    return {
        c.name: (config if config is not None and DEFAULT_CONFIGS[c.kind] else DEFAULT_CONFIGS[c.kind])
        for c in comps
    }


def _targets(comp: _Component) -> list[torch.nn.Module]:
    """What to compile: a VAE's ``encoder`` and ``decoder`` (``encode`` / ``decode`` are methods),
    anything else as a whole."""
    if comp.kind == "vae":
        return [
            m
            for m in (getattr(comp.module, "encoder", None), getattr(comp.module, "decoder", None))
            if m is not None
        ]
    return [comp.module]
