"""fp8pass.kinds: the layer-kind table, proven on the kind added last, ``nn.Embedding``, with a real
transformers class (a tiny T5EncoderModel: T5-XXL's token embedding, 131M parameters, is its
largest tensor) on every path: compile, hooks, save_fp8 / load_fp8 and convert."""

import copy

import pytest
import torch

import fp8pass
from fp8pass import DEFAULT_SKIP, FP8Backend, FP8Config
from fp8pass.hooks import apply_fp8_hooks
from fp8pass.kinds import KINDS

from .helpers import BF16, sqnr

transformers = pytest.importorskip("transformers")

#: a T5 small enough for CI whose embedding is, as in T5-XXL, its largest tensor. Measured (aot_eager,
#: seeds 0 and 1, output SQNR against bf16): all FP8 25.8 / 25.8 dB, linears only 27.1 / 27.0 dB,
#: the embedding alone 30.9 / 31.3 dB; a 2-layer d_model=128 twin loses 2.0 dB, a 6-layer gated one
#: 1.4-1.5 dB. Random weights: real checkpoints' fidelity is still to be measured.
_T5 = dict(
    vocab_size=4096, d_model=256, d_kv=32, d_ff=512, num_layers=4, num_heads=8, decoder_start_token_id=0
)
LINEARS_ONLY = FP8Config(skip=(*DEFAULT_SKIP, r"(^|\.)(shared|embed_tokens)$"))


def _t5():
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(transformers.T5Config(**_T5)).to(BF16).eval().requires_grad_(False)
    ids = torch.randint(0, _T5["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(1))
    return model, ids


def _out(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state


def _compiled_out(model, ids, config):
    be = FP8Backend(config, inner="aot_eager")
    return _out(torch.compile(model, backend=be), ids), be


def test_embedding_is_a_row_of_the_kind_table():
    kind = KINDS["embedding"]
    assert not kind.keep_at_boundary  # a lookup: no error accumulates through it
    assert torch.nn.Embedding in kind.modules


def test_t5_token_embedding_converts_at_half_the_bytes_within_its_fidelity():
    """Compiled with the defaults, T5's token embedding (a boundary layer, converted anyway: an
    embedding is a lookup) is held in FP8 at ~0.5x its bytes, and the encoder's output is within
    1.5 dB of the same model with only its linears in FP8."""
    model, ids = _t5()
    ref = _out(copy.deepcopy(model), ids)
    linears_only, _ = _compiled_out(copy.deepcopy(model), ids, LINEARS_ONLY)
    torch._dynamo.reset()
    out, be = _compiled_out(model, ids, FP8Config())
    rows = {r.name: r for r in be.report()}
    embedding = next(r for r in rows.values() if r.kind == "embedding")
    assert embedding.converted and embedding.released, embedding
    assert 0.5 <= embedding.bytes_after / embedding.bytes_before <= 0.51  # + one float32 scale per row
    assert model.shared.weight.untyped_storage().nbytes() == 0
    assert sum(r.converted and r.kind == "linear" for r in rows.values()) >= 12
    db, db_linears = sqnr(ref, out), sqnr(ref, linears_only)
    assert db >= db_linears - 1.5 and db > 25, (db, db_linears)
    assert not torch.equal(out, linears_only)  # the embedding did take part


def test_t5_embedding_with_hooks_and_through_a_file(tmp_path):
    """The hook baseline converts the same embedding into the same bytes; save_fp8 writes it in
    FP8, load_fp8 reads it back into a meta skeleton, and the compiled loaded model matches."""
    model, ids = _t5()
    ref = _out(copy.deepcopy(model), ids)
    compiled, be = _compiled_out(copy.deepcopy(model), ids, FP8Config())
    hooked = copy.deepcopy(model)
    hooks = apply_fp8_hooks(hooked, FP8Config())
    assert any(r.converted and r.kind == "embedding" for r in hooks.report())
    torch.testing.assert_close(_out(hooked, ids), compiled, rtol=0, atol=0)

    fp8pass.save_fp8(model, tmp_path / "t5-fp8.safetensors")
    with torch.device("meta"):
        skeleton = transformers.T5EncoderModel(transformers.T5Config(**_T5)).to(BF16)
    config = fp8pass.load_fp8(skeleton, tmp_path / "t5-fp8.safetensors")
    torch._dynamo.reset()
    loaded, be2 = _compiled_out(skeleton.eval().requires_grad_(False), ids, config)
    assert any(r.converted and r.kind == "embedding" for r in be2.report())
    assert sqnr(compiled, loaded) > 60 and sqnr(ref, loaded) > 25
