"""FP8Backend: runs the pass, owns the FP8 weights, hands the graph to the inner compiler."""

from __future__ import annotations

import logging
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch.utils.weak import WeakIdKeyDictionary

from . import _compat, guards
from .config import FP8Config
from .ops import DECOMPOSITIONS
from .passes import Layer, ParamRef, plan, projection_groups, rewrite
from .quantize import dequantize_weight, quantize_weight
from .report import LayerReport, format_report

__all__ = ["FP8Backend", "fp8_backend", "restore"]

log = logging.getLogger("fp8pass")

_INNER = ("inductor", "aot_eager", "eager")
_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class _FP8Weight:
    q: torch.Tensor
    scale: torch.Tensor
    released: bool = False
    original: torch.Tensor | None = None  # a CPU copy, with FP8Config(release_weights="cpu")
    fused_in: tuple[int, ...] | None = None  # q and scale are views of this group's fused buffer


class _WeightStore:
    """Parameter -> its FP8 copies, one per (dtype, granularity); shared by every backend, graph
    and recompilation, so that a parameter is quantized once and its bf16 storage freed once."""

    def __init__(self) -> None:
        self._entries: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._fused: WeakIdKeyDictionary = WeakIdKeyDictionary()  # first param -> {group: (q, scale)}
        self._lock = threading.Lock()
        self.version = 0  # bumped when entries are re-pointed, so per-call caches look them up again

    def lookup(self, param: torch.Tensor, config: FP8Config) -> _FP8Weight | None:
        return self._entries.get(param, {}).get((config.dtype, config.granularity))

    def is_released(self, param: torch.Tensor) -> bool:
        return any(w.released for w in self._entries.get(param, {}).values())

    def get_or_quantize(self, param: torch.Tensor, config: FP8Config, name: str) -> tuple[_FP8Weight, bool]:
        with self._lock:
            found = self.lookup(param, config)
            if found is not None:
                return found, False
            if self.is_released(param):
                raise RuntimeError(
                    f"fp8pass: '{name}' was already converted to FP8 with another dtype/granularity and "
                    "its original weights were released, so it cannot be quantized again. Compile every "
                    "use of this model with one FP8Config, or use FP8Config(release_weights=False)."
                )
            # Outside inference mode, so that the copies stay usable by graphs compiled later.
            with torch.inference_mode(False), torch.no_grad():
                q, scale = quantize_weight(param, config.dtype, config.granularity)
            entry = _FP8Weight(q, scale)
            self._entries.setdefault(param, {})[(config.dtype, config.granularity)] = entry
            return entry, True

    def fused(self, params: tuple[torch.Tensor, ...], config: FP8Config) -> tuple[torch.Tensor, torch.Tensor]:
        """The FP8 weights and scales of ``params`` (quantized already) concatenated along the
        output dimension, made once; each parameter's own copy becomes a view into it, so the
        memory is the same as before."""
        key = tuple(id(p) for p in params)
        with self._lock:
            found = self._fused.get(params[0], {}).get(key)
            if found is not None:
                return found
            entries = [self.lookup(p, config) for p in params]
            q = torch.cat([e.q for e in entries])
            scale = torch.cat([e.scale for e in entries])
            start = 0
            for e in entries:
                n = e.q.shape[0]
                e.q, e.scale, e.fused_in = q[start : start + n], scale[start : start + n], key
                start += n
            self._fused.setdefault(params[0], {})[key] = (q, scale)
            self.version += 1
            return q, scale

    def fused_elsewhere(self, params: tuple[torch.Tensor, ...], config: FP8Config) -> bool:
        """Whether any of ``params`` is already part of another fused group."""
        key = tuple(id(p) for p in params)
        return any(
            (e := self.lookup(p, config)) is not None and e.fused_in not in (None, key) for p in params
        )

    def adopt(self, param: torch.Tensor, config: FP8Config, entry: _FP8Weight) -> None:
        """Register an FP8 copy made elsewhere (an FP8 checkpoint) for ``param``."""
        with self._lock:
            self._entries.setdefault(param, {})[(config.dtype, config.granularity)] = entry

    def entries(self, param: torch.Tensor) -> list[_FP8Weight]:
        return list(self._entries.get(param, {}).values())

    def forget(self, param: torch.Tensor) -> None:
        with self._lock:
            self._entries.pop(param, None)
            self._fused.pop(param, None)
            self.version += 1

    def restore(self, param: torch.Tensor) -> None:
        """Give a released parameter its data back (dequantized) when a graph needs it unconverted."""
        for entry in self._entries.get(param, {}).values():
            if entry.released:
                _compat.restore_storage(param, dequantize_weight(entry.q, entry.scale, param.dtype))
                entry.released = False
                return


_STORE = _WeightStore()
# parameter -> weakref to the outermost module it was seen in, filled as models are compiled
_ROOTS: WeakIdKeyDictionary = WeakIdKeyDictionary()
_INDEXED: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


class FP8Backend:
    """A ``torch.compile`` backend that stores linear and conv weights in FP8.

    Args:
        config: what to convert and how; ``FP8Config()`` by default.
        inner: compiler for the rewritten graph: ``"inductor"``, ``"aot_eager"`` (AOT autograd
            with fp8pass's decompositions, no codegen: fast, for tests) or ``"eager"`` (the
            rewritten graph with fp8pass ops run as they are, for debugging).
        mode, options: Inductor's ``mode`` and ``options``, as ``torch.compile`` takes them
            (``torch.compile`` refuses ``mode`` together with a custom backend).

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
        self.num_quantized = 0
        self.num_graphs = 0
        #: with ``keep_graphs=True``: (code of the graph Dynamo captured, the rewritten GraphModule)
        #: per compiled graph, for debugging; empty otherwise, so that a long-running process does
        #: not keep every graph it ever compiled
        self.graphs: list[tuple[str, fx.GraphModule]] = []
        self.keep_graphs = keep_graphs
        self._rows: dict[tuple[str, Any], LayerReport] = {}

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
        # torch.compile(model, backend=this, mode=..., options=...) hands mode / options to the
        # backend: they apply to this compile, over the ones given to FP8Backend.
        _check_inductor_settings(self.inner, mode, options, "torch.compile(backend=FP8Backend(...))")
        mode = mode if mode not in (None, "default") else self.mode
        options = {**self.options, **(options or {})}
        params, sources = self._graph_parameters(gm, example_inputs)
        autocast = _compat.autocast_regions(gm.graph)
        layers = plan(gm.graph, params, self.config, _compat.module_path, _STORE.is_released, autocast)
        converted = [layer for layer in layers if layer.converted]
        self.num_graphs += 1
        if not converted:  # nothing to rewrite (or no inputs at all): the graph passes through as it is
            self._restore_unconverted(layers)
            self._record(layers, {})
            return self._inner_compile(gm, example_inputs, len(example_inputs), mode, options)
        _refuse_meta(converted)
        _refuse_training(converted)
        if self.config.release_weights:
            _index_roots(converted, sources)
        self._restore_unconverted(layers)
        weights = {id(layer.weight.tensor): self._fp8_weight(layer) for layer in converted}
        groups = self._groups(layers)
        new_gm, feeds = rewrite(gm, layers, groups)
        if self.keep_graphs:
            self.graphs.append((gm.code, new_gm))
        fp8_inputs = self._fp8_inputs([tuple(example_inputs[i] for i in feed) for feed in feeds])
        compiled = self._inner_compile(
            new_gm, [*example_inputs, *fp8_inputs], len(example_inputs), mode, options
        )
        if self.config.release_weights:
            self._release(converted, weights, sources)
        self._record(layers, weights)
        log.info("fp8pass: graph %d: %d/%d layers converted", self.num_graphs, len(converted), len(layers))
        return _feeding_fp8_inputs(compiled, feeds, self._fp8_inputs)

    def report(self) -> list[LayerReport]:
        """Every linear / conv layer this backend has seen, in graph order."""
        return list(self._rows.values())

    def report_table(self, tablefmt: str = "github") -> str:
        """:meth:`report` as a table with a totals line."""
        if not self.num_graphs:
            return (
                "fp8pass has not seen a graph yet: torch.compile is lazy, so conversion happens when the "
                "compiled model is first called; call it once, then ask for the report."
            )
        if not self._rows:
            return f"fp8pass compiled {self.num_graphs} graph(s) holding no linear or convolution layer."
        return format_report(self.report(), tablefmt)

    # -- steps of __call__ -------------------------------------------------------------------

    def _graph_parameters(
        self, gm: fx.GraphModule, example_inputs: list[Any]
    ) -> tuple[dict[fx.Node, ParamRef], WeakIdKeyDictionary]:
        found = _compat.graph_parameters(gm, example_inputs)
        if not found and _compat.lifted_parameter_attrs(gm):
            raise RuntimeError(
                "fp8pass: Dynamo passed the model's parameters as graph attributes, not inputs. "
                "Leave torch._dynamo.config.inline_inbuilt_nn_modules at its default (True)."
            )
        params = {node: ParamRef(t, _compat.source_path(src)) for node, (t, src) in found.items()}
        sources = WeakIdKeyDictionary({t: src for t, src in found.values()})
        return params, sources

    def _restore_unconverted(self, layers: list[Layer]) -> None:
        for layer in layers:
            if not layer.converted and layer.weight is not None and _STORE.is_released(layer.weight.tensor):
                warnings.warn(
                    f"fp8pass: '{layer.name}' uses a weight released by an earlier graph but stays "
                    f"unconverted here ({layer.reason}); its original dtype is restored from FP8.",
                    stacklevel=2,
                )
                _STORE.restore(layer.weight.tensor)

    def _groups(self, layers: list[Layer]) -> list[list[Layer]]:
        if not self.config.fuse_projections:
            return []
        groups = []
        for group in projection_groups(layers):
            params = tuple(la.weight.tensor for la in group)
            if _STORE.fused_elsewhere(params, self.config):
                for la in group:
                    la.notes.append("not fused: its weight is already fused with other layers")
                continue
            for la in group:
                others = ", ".join(other.name for other in group if other is not la)
                la.notes.append(f"fused with {others} into one matmul")
            groups.append(group)
        return groups

    def _fp8_weight(self, layer: Layer) -> _FP8Weight:
        weight, new = _STORE.get_or_quantize(layer.weight.tensor, self.config, layer.name)
        self.num_quantized += new
        return weight

    def _fp8_inputs(self, feeds: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
        """``[q, scale, q, scale, ...]``: per feed, the FP8 copy of its one parameter, or the
        fused copy of its group. A parameter this backend has not seen (a graph reused for
        another module instance) is quantized now, and released if its model is known."""
        out = []
        for params in feeds:
            entries = [self._entry(param) for param in params]
            if len(params) == 1:
                out += [entries[0].q, entries[0].scale]
            else:
                out += list(_STORE.fused(params, self.config))
        return out

    def _entry(self, param: torch.Tensor) -> _FP8Weight:
        entry, new = _STORE.get_or_quantize(param, self.config, "a module reusing a compiled graph")
        if new:
            self.num_quantized += 1
            root = _ROOTS.get(param)
            if self.config.release_weights and root is not None and root() is not None:
                _release_param(param, entry, root(), keep_copy=self.config.release_weights == "cpu")
            elif self.config.release_weights:
                warnings.warn(
                    "fp8pass: a compiled graph is being reused for another model of the same class; "
                    "its weights run in FP8 too, but their originals stay in memory because fp8pass "
                    "never saw that model. Compile each model with its own FP8Backend to release them.",
                    stacklevel=3,
                )
        return entry

    def _inner_compile(
        self,
        gm: fx.GraphModule,
        example_inputs: list[Any],
        num_dynamo: int,
        mode: str | None,
        options: dict[str, Any],
    ) -> Any:
        if self.inner == "eager":
            return gm.forward
        if self.inner == "aot_eager":
            compiler = _compat.aot_eager_compiler(DECOMPOSITIONS)
        else:
            compiler = _compat.inductor_compiler(mode, options, DECOMPOSITIONS)
        return compiler(
            gm, list(example_inputs[:num_dynamo]) + _compat.static_fakes(example_inputs[num_dynamo:])
        )

    def _release(
        self, converted: list[Layer], weights: dict[int, _FP8Weight], sources: WeakIdKeyDictionary
    ) -> None:
        for layer in converted:
            param, entry = layer.weight.tensor, weights[id(layer.weight.tensor)]
            if entry.released or _compat.is_released(param):
                continue
            root = _compat.root_module(sources[param])
            if root is None:
                note = "original weight kept: its module could not be found to guard eager use"
            else:
                note = _release_param(param, entry, root, keep_copy=self.config.release_weights == "cpu")
            if note:
                layer.notes.append(note)

    def _record(self, layers: list[Layer], weights: dict[int, _FP8Weight]) -> None:
        counted: dict[int, str] = {}
        for layer in layers:
            w = layer.weight.tensor if layer.weight is not None else None
            before = w.numel() * w.element_size() if w is not None else 0
            entry = weights.get(id(w)) if layer.converted else None
            after = entry.q.numel() * entry.q.element_size() + entry.scale.numel() * 4 if entry else before
            notes = list(layer.notes)
            if w is not None and id(w) in counted:
                before = after = 0
                notes.append(f"weight bytes counted under '{counted[id(w)]}'")
            elif w is not None:
                counted[id(w)] = layer.name
            # one row per layer and weight: recompiles update it, another model's same-named layer adds one
            key = (layer.name, id(w) if w is not None else layer.node.name)
            self._rows[key] = LayerReport(
                name=layer.name,
                kind=layer.kind,
                converted=layer.converted,
                reason=layer.reason,
                compute=layer.compute,
                bytes_before=before,
                bytes_after=after,
                weight=layer.weight.path if layer.weight else "",
                shape=tuple(w.shape) if w is not None else (),
                dtype=str(self.config.dtype if entry else (w.dtype if w is not None else "")).replace(
                    "torch.", ""
                ),
                granularity=self.config.granularity if entry else None,
                released=bool(entry and entry.released),
                note="; ".join(notes),
            )
            if not layer.converted:
                log.debug("fp8pass: %s stays unconverted: %s", layer.name, layer.reason)


def _check_inductor_settings(inner: str, mode: Any, options: Any, where: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"{where} mode must be one of {', '.join(map(repr, _MODES))}; got {mode!r}")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"{where} options must be a dict of Inductor config values; got {options!r}")
    if inner != "inductor" and (mode not in (None, "default") or options):
        raise ValueError(f"{where} mode/options apply to inner='inductor' only; inner is {inner!r}")


def _release_param(param: torch.Tensor, entry: _FP8Weight, root: torch.nn.Module, keep_copy: bool) -> str:
    """Free ``param``'s storage and guard the modules that could read it; a note if kept."""
    if root not in _INDEXED:  # _index_roots indexes compiled modules first; this covers any other way in
        model = _compat.outermost_module(root)
        _INDEXED.add(root)
        _index_model(model)
    copy = param.detach().to("cpu", copy=True) if keep_copy else None
    if not _compat.release_storage(param):
        return "original weight kept: it shares storage with other tensors"
    entry.released, entry.original = True, copy
    guards.guard_eager_use(root, param)
    return ""


def _index_model(model: torch.nn.Module) -> None:
    """Remember every parameter's model (for instances met later) and watch its parameters."""
    guards.watch(model)
    _INDEXED.add(model)
    ref = weakref.ref(model)
    for p in model.parameters():
        if p not in _ROOTS:
            _ROOTS[p] = ref


def _feeding_fp8_inputs(compiled: Any, feeds: list[tuple[int, ...]], fp8_inputs: Any) -> Any:
    """Call ``compiled`` with the FP8 copies of the parameters at the ``feeds`` positions appended,
    looked up afresh only when those parameters are not the previous call's (identity check) or
    the store re-pointed its entries since."""
    positions = [i for feed in feeds for i in feed]
    last: dict[str, Any] = {"params": [], "extra": [], "version": -1}

    def extra_for(args: Any) -> list[torch.Tensor]:
        params = [args[i] for i in positions]
        if (
            last["version"] != _STORE.version
            or len(params) != len(last["params"])
            or any(a is not b for a, b in zip(params, last["params"], strict=True))
        ):
            last["extra"] = fp8_inputs([tuple(args[i] for i in feed) for feed in feeds])
            last["params"], last["version"] = params, _STORE.version
        return last["extra"]

    def run(*args: Any) -> Any:
        return compiled(*args, *extra_for(args))

    return run


def restore(model: torch.nn.Module) -> int:
    """Give ``model`` back its original weights and eager usability after fp8pass converted it.

    Works when the originals were kept (``FP8Config(release_weights="cpu")`` or ``False``);
    otherwise raises ``RuntimeError`` before changing anything. Compiled graphs of the model stay
    valid: a later compiled call converts the weights again. Returns how many weights came back.

    Example:
        >>> be = FP8Backend(FP8Config(release_weights="cpu"))    # doctest: +SKIP
        >>> out = torch.compile(unet, backend=be)(x)             # doctest: +SKIP
        >>> fp8pass.restore(unet)                                # unet(x) runs eagerly again
    """
    params = {id(p): p for p in model.parameters()}.values()
    lost = [
        n
        for n, p in model.named_parameters()
        if any(e.released and e.original is None for e in _STORE.entries(p))
    ]
    if lost:
        raise RuntimeError(
            f"fp8pass.restore: the original weights of {len(lost)} parameters (first: '{lost[0]}') were "
            "freed when fp8pass converted them. Reload them (from_pretrained / load_state_dict), or "
            "compile with FP8Config(release_weights='cpu') to keep a CPU copy that restore() can use."
        )
    restored = 0
    for p in params:
        for entry in _STORE.entries(p):
            if entry.released:
                _compat.restore_storage(p, entry.original.to(p.device))
                restored += 1
        _STORE.forget(p)
    guards.unguard(model)
    guards.unwatch(model)
    return restored


def _refuse_meta(converted: list[Layer]) -> None:
    meta = [layer.weight.path for layer in converted if layer.weight.tensor.is_meta]
    if meta:
        raise ValueError(
            f"fp8pass: {len(meta)} weights are on the meta device (first: '{meta[0]}'): the model's "
            "weights are not loaded. Load them first (e.g. model.to_empty(device=...) then "
            "load_state_dict, or from_pretrained), then compile."
        )


def _index_roots(converted: list[Layer], sources: WeakIdKeyDictionary) -> None:
    """Before anything is released, for each module compiled for the first time: find its model
    (the outermost module on the call stack), refuse it if it carries offloading hooks, and index
    it (watched parameters, parameter -> model). Once per module (reading the call stack's locals
    keeps the caller's locals alive until they next change), and one root lookup per distinct
    top-level source in the graph (``L['self']``), not one per layer."""
    tops = set()
    for layer in converted:
        top = _compat.top_source_name(sources[layer.weight.tensor])
        if top in tops:
            continue
        tops.add(top)
        root = _compat.root_module(sources[layer.weight.tensor])
        if root is not None and root not in _INDEXED:
            model = _compat.outermost_module(root)
            guards.refuse_offloading(model)
            _INDEXED.add(root)
            _index_model(model)


def _refuse_training(converted: list[Layer]) -> None:
    if not torch.is_grad_enabled():
        return
    needs_grad = [layer.weight.path for layer in converted if layer.weight.tensor.requires_grad]
    if needs_grad:
        raise RuntimeError(
            f"fp8pass is inference-only, but this graph runs with grad enabled and {len(needs_grad)} "
            f"weights to convert require grad (first: '{needs_grad[0]}'); FP8 weights would give wrong "
            "gradients. Call the model under torch.no_grad() or torch.inference_mode(), or call "
            "model.requires_grad_(False) first."
        )


#: The default backend, ready for ``torch.compile(model, backend=fp8_backend)``.
fp8_backend = FP8Backend()
