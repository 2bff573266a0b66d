"""LoRA on an FP8 model, every way diffusers loads one, before compile, after compile and after
load_model: on real diffusers classes (tiny Flux, SD3, SDXL-style UNet, Wan), with LoRA files in
the layouts people have (diffusers/peft as ``save_lora_adapter`` and ``save_lora_weights`` write
them; kohya ``lora_unet_*`` keys that diffusers converts; a LoRA that also targets norm, embedder
and output layers). Each output is compared with the bf16 model after the same calls: within the
FP8 floor (FLOORS_DB) and nearer it than the same model without the change."""

import atexit
import copy
import inspect
import json
import os
import re

import pytest
import torch

import fp8pass
from fp8pass import FP8Backend, FP8Config

from . import lora_files as lf
from .helpers import sqnr

peft = pytest.importorskip("peft")

#: FP8 output against bf16, per model, with or without a LoRA (min_weight_numel=0, the zoo's
#: weights): measured 51.6 / 36.9 dB (flux, keep_boundary True / False), 53.2 / 32.5 (sd3), 53.5
#: (wan); the issue's bar is 27 dB. The SDXL-style UNet adds e4m3 rounding over 119 layers: 23.2
#: dB without any LoRA, hence 21 there. A dropped or unapplied adapter lands at the LoRA's own
#: effect (11-26 dB, lora_files.SCALE) and fails the "nearer than without" check.
FLOORS_DB = {"flux": 27, "sd3": 27, "wan": 27, "sdxl": 21}
CONFIG = FP8Config(min_weight_numel=0)  # the tiny models' layers are all below the default size

#: FP8PASS_RECORD_LORA=path: every check's numbers go to that JSON (benchmarks/lora_operations.py
#: runs this file so, and docs/lora.md's table is generated from the file it writes)
_RECORD: list[dict] = []
if os.environ.get("FP8PASS_RECORD_LORA"):
    atexit.register(lambda: open(os.environ["FP8PASS_RECORD_LORA"], "w").write(json.dumps(_RECORD, indent=1)))


def _compiled(model, config=CONFIG):
    be = FP8Backend(config, inner="aot_eager")
    return torch.compile(model, backend=be), be


def _base_is_fp8(model, be):
    """Every converted base layer still holds FP8 only: released original, about half the bytes."""
    rows = [r for r in be.report(model) if r.converted]
    assert rows and all(r.released for r in rows)
    assert sum(r.bytes_after for r in rows) < 0.6 * sum(r.bytes_before for r in rows)
    for r in rows:
        assert model.get_parameter(r.weight).untyped_storage().nbytes() == 0, r.name


class Twin:
    """A model under fp8pass and its bf16 reference, driven through the same diffusers calls."""

    def __init__(self, kind, timing, tmp_path, config=CONFIG):
        self.kind = kind
        self.ref, self.inputs = lf.tiny_model(kind)
        self.timing, self.config = timing, config
        if timing == "load_model":
            self.ref.save_pretrained(tmp_path / "model")
            self.model, self.config = fp8pass.load_model(type(self.ref), tmp_path / "model", config=config)
        else:
            self.model = copy.deepcopy(self.ref)
        self.cm = self.be = None
        self.last = "compile"
        if timing == "after compile":
            self.compile()

    def compile(self):
        self.cm, self.be = _compiled(self.model, self.config)
        self.out()

    def pipe(self, which):
        return lf.tiny_pipeline(self.kind, self.ref if which == "ref" else self.model)

    def both(self, call):
        """``call(model, which)`` on the reference and the FP8 model."""
        source = inspect.getsource(call).strip()
        self.last = re.sub(r"^.*?lambda [^:]*: ", "", source).removesuffix(")").replace("t.pipe(w)", "pipe")
        call(self.ref, "ref")
        call(self.model, "fp8")

    def out(self):
        return lf.run(self.cm, self.inputs)

    def check(self, without=None):
        """The FP8 output against the reference's: within the floor, and, when ``without`` (an
        output before the change) is given, nearer the changed reference than ``without`` is."""
        if self.cm is None:
            self.compile()
        ref, out = lf.run(self.ref, self.inputs), self.out()
        db = sqnr(ref, out)
        _RECORD.append(
            dict(
                model=self.kind,
                when=self.timing,
                operation=self.last,
                sqnr_db=round(db, 2),
                without_db=None if without is None else round(sqnr(ref, without), 2),
            )
        )
        assert db >= FLOORS_DB[self.kind], db
        if without is not None:
            assert db > sqnr(ref, without) + 3, (db, sqnr(ref, without))
        _base_is_fp8(self.model, self.be)
        return out


def _lora_dir(kind, tmp_path, name, targets=None, seed=1, layout="peft", rank=4):
    src, _ = lf.tiny_model(kind)
    lf.add_random_lora(src, targets or lf.ATTN_TARGETS[kind], rank=rank, seed=seed, scale=lf.SCALE[kind])
    if layout == "peft":
        return lf.save_peft_lora(src, tmp_path / name).parent
    return lf.save_pipeline_lora(kind, src, tmp_path / name).parent


@pytest.mark.parametrize("timing", ["before compile", "after compile", "load_model"])
def test_every_adapter_operation_on_flux(tmp_path, timing):
    """load_lora_adapter, pipe.load_lora_weights, set_adapters with weights, disable/enable,
    delete_adapters, unload_lora_weights: each follows the bf16 model with the same LoRA."""
    t = Twin("flux", timing, tmp_path)
    plain = lf.run(t.ref, t.inputs)
    a = _lora_dir("flux", tmp_path, "a", seed=1)
    b = _lora_dir("flux", tmp_path, "b", seed=2, layout="pipeline")
    t.both(lambda m, _: m.load_lora_adapter(str(a), prefix=None, adapter_name="a", use_safetensors=True))
    with_a = t.check(without=plain)
    t.both(lambda m, w: t.pipe(w).load_lora_weights(str(b), adapter_name="b"))
    t.check(without=with_a)
    t.both(lambda m, w: t.pipe(w).set_adapters(["a", "b"], adapter_weights=[0.5, 1.5]))
    t.check()
    t.both(lambda m, w: t.pipe(w).disable_lora())
    torch.testing.assert_close(t.check(), lf.run(t.cm, t.inputs))
    assert sqnr(plain, t.out()) >= FLOORS_DB["flux"]  # disabled: the base model
    t.both(lambda m, w: t.pipe(w).enable_lora())
    t.check()
    t.both(lambda m, w: t.pipe(w).delete_adapters("a"))
    t.check()
    rows = {r.name: r.note for r in t.be.report(t.model)}
    assert "carries LoRA adapter(s) b" in rows["transformer_blocks.0.attn.to_q.base_layer"]
    t.both(lambda m, w: t.pipe(w).unload_lora_weights())
    assert not lf.adapted_modules(t.model)
    assert sqnr(plain, t.check()) >= FLOORS_DB["flux"]


@pytest.mark.parametrize("kind", ["sd3", "sdxl", "wan"])
def test_other_models_load_set_and_unload_after_compile(tmp_path, kind):
    t = Twin(kind, "after compile", tmp_path)
    plain = lf.run(t.ref, t.inputs)
    a = _lora_dir(kind, tmp_path, "a", layout="pipeline")
    t.both(lambda m, w: t.pipe(w).load_lora_weights(str(a), adapter_name="a"))
    t.check(without=plain)
    t.both(lambda m, w: t.pipe(w).set_adapters(["a"], adapter_weights=[0.5]))
    t.check()
    t.both(lambda m, w: t.pipe(w).unload_lora_weights())
    assert sqnr(plain, t.check()) >= FLOORS_DB[kind]


def test_kohya_files_load_through_the_pipelines(tmp_path):
    """kohya ``lora_unet_*`` keys, which diffusers converts, for SDXL (sgm paths) and Flux (BFL
    names, fused q/k/v), and ComfyUI's spelling of a Flux one."""
    for kind in ("sdxl", "flux"):
        t = Twin(kind, "after compile", tmp_path / kind)
        plain = lf.run(t.ref, t.inputs)
        src, _ = lf.tiny_model(kind)
        lf.add_random_lora(src, lf.ATTN_TARGETS[kind], seed=3, scale=lf.SCALE[kind])
        sd, meta = lf.read_lora(lf.save_peft_lora(src, tmp_path / kind / "peft"))
        if kind == "sdxl":
            kohya = lf.kohya_sdxl_state_dict(sd, lf.TINY_SDXL["layers_per_block"], alpha=2.0, meta=meta)
        else:
            kohya = lf.comfy_flux_state_dict(lf.kohya_flux_state_dict(sd, meta=meta, alpha=2.0))
        path = lf.save_safetensors(kohya, tmp_path / kind / "kohya", "lora.safetensors")
        assert any(k.startswith(("lora_unet_", "diffusion_model.")) for k in kohya)
        t.both(
            lambda m, w, t=t, path=path: t.pipe(w).load_lora_weights(str(path.parent), weight_name=path.name)
        )
        assert lf.adapted_modules(t.model)
        t.check(without=plain)


@pytest.mark.parametrize("keep_boundary", [True, False])
def test_a_lora_on_norm_embedder_and_output_layers(tmp_path, keep_boundary):
    """``norm1.linear``, ``x_embedder``, ``proj_out``, the timestep embedders: boundary layers stay
    in bf16 by default (their LoRA runs over bf16 weights); with keep_boundary=False they are FP8
    too, wrapped by the adapter."""
    config = FP8Config(min_weight_numel=0, keep_boundary=keep_boundary)
    t = Twin("flux", "after compile", tmp_path, config)
    plain = lf.run(t.ref, t.inputs)
    extra = _lora_dir("flux", tmp_path, "extra", targets=lf.FLUX_EXTRA_TARGETS, seed=4)
    t.both(lambda m, _: m.load_lora_adapter(str(extra), prefix=None, adapter_name="e", use_safetensors=True))
    t.check(without=plain)
    rows = {r.name: r for r in t.be.report(t.model)}
    assert rows["x_embedder.base_layer"].converted is not keep_boundary
    assert rows["transformer_blocks.0.norm1.linear.base_layer"].converted  # a block's layer: FP8 either way


@pytest.mark.parametrize("first", ["before compile", "after compile"])
def test_hotswap_makes_no_new_graph_and_follows_the_second_adapter(tmp_path, first):
    """enable_lora_hotswap, a first adapter, compile, then load_lora_adapter(hotswap=True): the
    second adapter's tensors are copied into the first's, and no graph is compiled again."""
    t = Twin("flux", "after compile" if first == "after compile" else "before compile", tmp_path)
    a = _lora_dir("flux", tmp_path, "a", seed=1)
    b = _lora_dir("flux", tmp_path, "b", seed=2, rank=2)
    t.both(lambda m, _: m.enable_lora_hotswap(target_rank=4))
    t.both(lambda m, _: m.load_lora_adapter(str(a), prefix=None, adapter_name="x", use_safetensors=True))
    with_a = t.check()
    graphs = t.be.num_graphs
    t.both(
        lambda m, _: m.load_lora_adapter(
            str(b), prefix=None, adapter_name="x", use_safetensors=True, hotswap=True
        )
    )
    t.check(without=with_a)
    assert t.be.num_graphs == graphs  # hot-swapped without a new graph


def test_fuse_and_unfuse_requantize_into_fp8_and_report_the_cost(tmp_path):
    """fuse_lora merges the adapter into the FP8 weight: the merged weight is requantized in place
    (no bf16 copy kept), the report says at what weight SQNR; unfuse_lora takes it back out,
    requantized again. fuse_lora(lora_scale=0.7) scales the adapter first, as in bf16."""
    t = Twin("flux", "after compile", tmp_path)
    plain = lf.run(t.ref, t.inputs)
    a = _lora_dir("flux", tmp_path, "a", seed=1)
    t.both(lambda m, _: m.load_lora_adapter(str(a), prefix=None, adapter_name="a", use_safetensors=True))
    unfused = t.check(without=plain)
    t.both(lambda m, w: t.pipe(w).fuse_lora(lora_scale=0.7))
    t.check(without=plain)
    notes = {r.name: r.note for r in t.be.report(t.model)}
    note = notes["transformer_blocks.0.attn.to_q.base_layer"]
    assert "requantized, weight SQNR" in note and float(note.split("weight SQNR ")[1].split(" dB")[0]) > 25
    assert t.model.transformer_blocks[0].attn.to_q.base_layer.weight.untyped_storage().nbytes() == 0
    t.both(lambda m, w: t.pipe(w).unfuse_lora())
    t.check(without=plain)
    assert sqnr(unfused, t.out()) >= FLOORS_DB["flux"]  # back to the unfused model, within the FP8 floor
