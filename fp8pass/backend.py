"""FP8Backend: the coordinator. Per graph torch.compile hands it: plan (which layers), store
(their FP8 copies), rewrite (the ops), the inner compiler, release (the originals), report."""

from __future__ import annotations

import dataclasses
import logging
import warnings
import weakref
from typing import Any

import torch
import torch.fx as fx
from torch.utils.weak import WeakIdKeyDictionary

from . import distributed, store
from ._compat.dynamo import (
    autocast_regions,
    graph_parameters,
    lifted_parameter_attrs,
    module_path,
    outermost_call,
    register_backend_name,
    root_module,
    source_path,
)
from ._compat.graph import static_fakes
from ._compat.inductor import aot_eager_compiler, inductor_compiler
from ._compat.storage import is_released
from .config import FP8Config
from .dequant import DIRECT_CALLS
from .kinds import KINDS
from .ops import DECOMPOSITIONS, definition_hash
from .plan import Layer, ParamRef, layer_names, plan, projection_groups, refuse_unloaded_or_training
from .report import LayerReport, format_report, layer_rows
from .rewrite import rewrite
from .structure import Structure, structure_of

__all__ = ["FP8Backend", "fp8_backend"]

log = logging.getLogger("fp8pass")

_INNER = ("inductor", "aot_eager", "eager")
_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class FP8Backend:
    """A ``torch.compile`` backend that stores linear and conv weights in FP8.

    Args:
        config: what to convert and how; ``FP8Config()`` by default.
        inner: compiler for the rewritten graph: ``"inductor"``, ``"aot_eager"`` (AOT autograd
            with fp8pass's decompositions, no codegen: fast, for tests) or ``"eager"`` (the
            rewritten graph with fp8pass ops run as they are, for debugging).
        mode, options: Inductor's ``mode`` and ``options``; ``torch.compile(..., mode=, options=)``
            hands its own to the backend too, and those win for that compile.
        keep_graphs: keep, in :attr:`graphs`, each graph Dynamo captured and its rewrite (for
            debugging; off so that a long-running process does not keep every graph it compiled).

    Example:
        >>> be = FP8Backend(FP8Config(compute="cast"), inner="inductor", mode="max-autotune")
        >>> # model = torch.compile(model, backend=be); model(x); print(be.report_table())
    """

    def __init__(
        self,
        config: FP8Config | None = None,
        *,
        inner: str = "inductor",
        mode: str | None = None,
        options: dict[str, Any] | None = None,
        keep_graphs: bool = False,
    ) -> None:
        if config is not None and not isinstance(config, FP8Config):
            raise ValueError(f"FP8Backend config must be an FP8Config or None; got {type(config).__name__}")
        if inner not in _INNER:
            raise ValueError(f"FP8Backend inner must be one of {', '.join(map(repr, _INNER))}; got {inner!r}")
        _check_inductor_settings(inner, mode, options, "FP8Backend")
        self.config = config or FP8Config()
        self.inner = inner
        self.mode = mode
        self.options = dict(options or {})
        self.keep_graphs = keep_graphs
        self.num_quantized = 0
        self.num_graphs = 0
        #: with ``keep_graphs=True``: (code of the graph Dynamo captured, the rewritten GraphModule)
        self.graphs: list[tuple[str, fx.GraphModule]] = []
        self._rows: dict[tuple[str, Any], LayerReport] = {}
        self._weights: dict[tuple[str, Any], weakref.ref] = {}  # row key -> its converted weight
        self._models: dict[tuple[str, Any], weakref.ref] = {}  # row key -> the model that owns it

    def __repr__(self) -> str:
        c = self.config
        return (
            f"FP8Backend(compute={c.compute!r}, granularity={c.granularity!r}, dtype={c.dtype}, "
            f"inner={self.inner!r}, mode={self.mode!r})"
        )

    def __call__(
        self,
        gm: fx.GraphModule,
        example_inputs: list[Any],
        *,
        mode: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Any:
        _check_inductor_settings(self.inner, mode, options, "torch.compile(backend=FP8Backend(...))")
        mode = mode if mode not in (None, "default") else self.mode
        options = {**self.options, **(options or {})}
        params, sources = self._graph_parameters(gm, example_inputs)
        if any(distributed.is_dtensor(ref.tensor) for ref in params.values()):
            distributed.register_sharding_rules()  # tensor parallelism: DTensor weights
        model, structure = _owner(sources)
        autocast = autocast_regions(gm.graph)
        names = layer_names(model, module_path)
        layers = plan(
            gm.graph, params, self.config, names, store.is_released, autocast, structure, store.pinned
        )
        converted = [layer for layer in layers if layer.converted]
        self._restore_unconverted(layers)
        if not converted:  # nothing to rewrite (or no inputs at all): the graph passes through as it is
            self._record(layers, model)
            compiled = self._inner_compile(gm, example_inputs, len(example_inputs), mode, options)
            self.num_graphs += 1  # counted once the inner compiler returned: Dynamo may restart
            return compiled
        refuse_unloaded_or_training(converted)
        if self.config.release_weights and model is not None:
            store.first_sight(model)  # refuses offloading hooks before anything changes
        for layer in converted:
            axis = KINDS[layer.kind].scale_axis
            self.num_quantized += store.get_or_quantize(layer.weight.tensor, self.config, layer.name, axis)[1]
        groups = self._groups(layers)
        new_gm, feeds = rewrite(gm, layers, self.config, groups)
        if self.keep_graphs:
            self.graphs.append((gm.code, new_gm))
        fp8_inputs = self._fp8_inputs([tuple(example_inputs[i] for i in feed) for feed in feeds])
        compiled = self._inner_compile(
            new_gm, [*example_inputs, *fp8_inputs], len(example_inputs), mode, options
        )
        self.num_graphs += 1
        if self.config.release_weights:
            self._release(converted, model)
        self._record(layers, model)
        log.info("fp8pass: graph %d: %d/%d layers converted", self.num_graphs, len(converted), len(layers))
        return store.feeding_fp8_inputs(compiled, feeds, self._fp8_inputs)

    def report(self, model: torch.nn.Module | None = None) -> list[LayerReport]:
        """Every layer of a kind fp8pass converts that this backend has seen, in graph order, or
        those of ``model`` only (one backend, ``fp8_backend`` behind ``backend="fp8pass"``
        included, may compile several models). A converted layer's row says where its weight is
        in its model now (a LoRA loader moves it to ``<layer>.base_layer``, unloading moves it
        back) and which LoRA adapters wrap it, and what happened to its FP8 copy since it was
        compiled (requantized by a write, an outlier flushing weights to zero)."""
        rows: dict[tuple[str, Any], LayerReport] = {}  # a weight met again under a new name: one row
        paths: dict[int, dict[int, list[str]]] = {}  # per model: id(weight) -> its module paths now
        for key, row in self._rows.items():
            owner = self._models[key]() if key in self._models else None
            if model is not None and owner is not model:
                continue
            weight = self._weights[key]() if key in self._weights else None
            if weight is None:
                rows[key] = row
                continue
            if owner is not None and id(owner) not in paths:
                paths[id(owner)] = _layer_paths(owner)
            now = paths.get(id(owner), {}).get(id(weight), [row.name])
            name = row.name if row.name in now else now[0]
            notes = [row.note] if row.note else []
            notes += [n for e in store.entries(weight) for n in e.notes if n not in row.note]
            if adapters := _adapters(owner, name):
                notes.append(f"carries LoRA adapter(s) {', '.join(adapters)} (run in the activation dtype)")
            rows[(name, key[1])] = dataclasses.replace(
                row, name=name, weight=f"{name}.weight", note="; ".join(notes)
            )
        return list(rows.values())

    def report_table(self, tablefmt: str = "github", model: torch.nn.Module | None = None) -> str:
        """:meth:`report` (of ``model``'s layers, if given) as a table with a totals line."""
        if not self.num_graphs:
            return (
                "fp8pass has not seen a graph yet: torch.compile is lazy, so conversion happens when the "
                "compiled model is first called; call it once, then ask for the report."
            )
        if not self._rows:
            return f"fp8pass compiled {self.num_graphs} graph(s) holding no linear or convolution layer."
        return format_report(self.report(model), tablefmt)

    # -- steps of __call__ -------------------------------------------------------------------

    def _graph_parameters(
        self, gm: fx.GraphModule, example_inputs: list[Any]
    ) -> tuple[dict[fx.Node, ParamRef], WeakIdKeyDictionary]:
        found = graph_parameters(gm, example_inputs)
        if not found and lifted_parameter_attrs(gm):
            raise RuntimeError(
                "fp8pass: Dynamo passed the model's parameters as graph attributes, not inputs. "
                "Leave torch._dynamo.config.inline_inbuilt_nn_modules at its default (True)."
            )
        params = {node: ParamRef(t, source_path(src)) for node, (t, src) in found.items()}
        sources = WeakIdKeyDictionary({t: src for t, src in found.values()})
        return params, sources

    def _restore_unconverted(self, layers: list[Layer]) -> None:
        for layer in layers:
            if not layer.converted and layer.weight is not None and store.is_released(layer.weight.tensor):
                warnings.warn(
                    f"fp8pass: '{layer.name}' uses a weight released by an earlier graph but stays "
                    f"unconverted here ({layer.reason}); its original dtype is restored from FP8.",
                    stacklevel=3,
                )
                store.restore_unconverted(layer.weight.tensor)

    def _groups(self, layers: list[Layer]) -> list[list[Layer]]:
        if not self.config.fuse_projections:
            return []
        groups = []
        for group in projection_groups(layers):
            if any(distributed.is_dtensor(la.weight.tensor) for la in group):
                # concatenating sharded FP8 weights would make DTensor gather them across ranks
                # (gloo cannot even send FP8); each rank's shards would have to be fused locally
                for la in group:
                    la.notes.append("not fused: sharded (DTensor) weights are not fused")
                continue
            if store.fused_elsewhere(tuple(la.weight.tensor for la in group), self.config):
                for la in group:
                    la.notes.append("not fused: its weight is already fused with other layers")
                continue
            for la in group:
                others = ", ".join(other.name for other in group if other is not la)
                la.notes.append(f"fused with {others} into one matmul")
            groups.append(group)
        return groups

    def _fp8_inputs(self, feeds: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
        """``[q, scale, q, scale, ...]``: per feed, the FP8 copy of its one parameter, or the
        fused copy of its group. A parameter this backend has not seen (a graph reused for
        another module instance) is quantized now, and released if its model is known."""
        out = []
        for params in feeds:
            entries = [self._entry(param) for param in params]
            out += (
                [entries[0].q, entries[0].scale]
                if len(params) == 1
                else list(store.fused(params, self.config))
            )
        return out

    def _entry(self, param: torch.Tensor) -> store.FP8Weight:
        entry, new = store.get_or_quantize(param, self.config, "a module reusing a compiled graph")
        if new:
            self.num_quantized += 1
            model = store.model_of(param)
            if self.config.release_weights and model is not None:
                store.release(param, entry, model, keep_copy=self.config.release_weights == "cpu")
            elif self.config.release_weights:
                warnings.warn(
                    "fp8pass: a compiled graph is being reused for another model of the same class; "
                    "its weights run in FP8 too, but their originals stay in memory because fp8pass "
                    "never saw that model. Compile each model with its own FP8Backend to release them.",
                    stacklevel=3,
                )
        return entry

    def _inner_compile(
        self, gm: fx.GraphModule, example_inputs: list[Any], num_dynamo: int, mode: str | None, options: dict
    ) -> Any:
        if self.inner == "eager":
            return gm.forward
        if self.inner == "aot_eager":
            compiler = aot_eager_compiler(DECOMPOSITIONS)
        else:
            compiler = inductor_compiler(mode, options, DECOMPOSITIONS, definition_hash(), DIRECT_CALLS)
        return compiler(gm, list(example_inputs[:num_dynamo]) + static_fakes(example_inputs[num_dynamo:]))

    def _release(self, converted: list[Layer], model: torch.nn.Module | None) -> None:
        owned = {id(p) for p in model.parameters()} if model is not None else set()
        for layer in converted:
            param = layer.weight.tensor
            entry = store.lookup(param, self.config)
            if entry.released or is_released(param):
                continue
            if id(param) not in owned:
                note = (
                    "original weight kept: its model could not be found on the call stack to guard eager use"
                )
            else:
                note = store.release(param, entry, model, keep_copy=self.config.release_weights == "cpu")
            if note:
                layer.notes.append(note)

    def _record(self, layers: list[Layer], model: torch.nn.Module | None) -> None:
        def copy_of(layer: Layer) -> tuple[torch.Tensor, torch.Tensor, bool] | None:
            entry = store.lookup(layer.weight.tensor, self.config)
            return (entry.q, entry.scale, entry.released) if entry else None

        for layer in layers:
            if layer.converted and (adapters := _adapters(model, layer.name)):
                layer.notes.append(
                    f"carries LoRA adapter(s) {', '.join(adapters)} (run in the activation dtype)"
                )
        for layer, row in zip(layers, layer_rows(layers, copy_of), strict=True):
            # one row per layer and weight: recompiles update it, another model's same-named layer adds one
            w = layer.weight.tensor if layer.weight is not None else None
            key = (layer.name, id(w) if w is not None else layer.node.name)
            self._rows[key] = row
            if model is not None:
                self._models[key] = weakref.ref(model)
            if layer.converted:
                self._weights[key] = weakref.ref(w)
            else:
                log.debug("fp8pass: %s stays unconverted: %s", layer.name, layer.reason)


def _layer_paths(model: torch.nn.Module) -> dict[int, list[str]]:
    """id(weight) -> the paths of the modules of ``model`` that hold it as their ``weight``."""
    found: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        weight = module.__dict__.get("_parameters", {}).get("weight")
        if weight is not None:
            found.setdefault(id(weight), []).append(path)
    return found


def _adapters(model: torch.nn.Module | None, name: str) -> list[str]:
    """The LoRA adapters (peft's) wrapped around the layer ``name``: its parent holds them when
    peft moved the layer to ``<parent>.base_layer``."""
    if model is None or not name.endswith(".base_layer"):
        return []
    try:
        parent = model.get_submodule(name.removesuffix(".base_layer"))
    except AttributeError:
        return []
    return sorted(getattr(parent, "lora_A", None) or {})


def _check_inductor_settings(inner: str, mode: Any, options: Any, where: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"{where} mode must be one of {', '.join(map(repr, _MODES))}; got {mode!r}")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"{where} options must be a dict of Inductor config values; got {options!r}")
    if inner != "inductor" and (mode not in (None, "default") or options):
        raise ValueError(f"{where} mode/options apply to inner='inductor' only; inner is {inner!r}")


def _owner(sources: WeakIdKeyDictionary) -> tuple[torch.nn.Module | None, Structure | None]:
    """The model that owns the graph, derived once per graph: the outermost module on the call stack
    that contains the compiled frame's module (the model itself, or the model around a block
    compiled alone), and its structure, traced once per model with the arguments of this call."""
    source = next(iter(sources.values()), None)
    root = root_module(source) if source is not None else None
    if root is None:
        return None, None
    model, call = outermost_call(root)
    return model, structure_of(model, *call) if call is not None else structure_of(model)


#: The default backend, ready for ``torch.compile(model, backend=fp8_backend)``.
fp8_backend = FP8Backend()

# The entry point covers installed copies; a source checkout on sys.path is covered here when
# Dynamo is already imported (importing it just for this would slow down `import fp8pass.backend`).
register_backend_name("fp8pass", fp8_backend)
