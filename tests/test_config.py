import re

import pytest
import torch

from fp8pass import DEFAULT_SKIP, FP8Config


def test_defaults():
    c = FP8Config()
    assert (c.compute, c.granularity, c.dtype) == ("auto", "channel", torch.float8_e4m3fn)
    assert c.skip == DEFAULT_SKIP and c.release_weights


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"compute": "fp8"}, "compute"),
        ({"granularity": "row"}, "granularity"),
        ({"dtype": torch.bfloat16}, "dtype"),
        ({"skip": "conv_in"}, "skip"),
        ({"skip": ("conv_in", 3)}, "skip"),
        ({"skip": ("(unclosed",)}, "skip"),
        ({"min_weight_numel": -1}, "min_weight_numel"),
        ({"min_weight_numel": 1.5}, "min_weight_numel"),
        ({"release_weights": "yes"}, "release_weights"),
        ({"release_weights": 1}, "release_weights"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=re.escape(f"FP8Config.{field}")):
        FP8Config(**kwargs)


def test_error_lists_allowed_values():
    with pytest.raises(ValueError, match="'auto', 'cast', 'scaled_mm'"):
        FP8Config(compute="fast")


def test_default_skip_keeps_only_lora_adapters_by_name():
    """Boundary layers are kept by the model's structure (tests/test_structure.py), not by name:
    the one default pattern keeps PEFT's LoRA matrices."""
    c = FP8Config()
    assert c.skip_reason("transformer_blocks.0.attn.to_q.lora_A.default")
    for name in ("conv_in", "x_embedder", "proj_out", "transformer_blocks.0.norm1.linear"):
        assert c.skip_reason(name) == ""


def test_boundary_layers_are_kept_unless_converted_on_purpose():
    why = "input layer: reads only the model's inputs ('timestep'), no block's output"
    assert FP8Config().boundary_reason("time_embedding.linear_1", why) == why
    assert FP8Config().boundary_reason("down_blocks.0.resnets.0.conv1", "") == ""
    assert FP8Config(keep_boundary=False).boundary_reason("time_embedding.linear_1", why) == ""
    assert FP8Config(convert=(r"^time_embedding\.",)).boundary_reason("time_embedding.linear_1", why) == ""
    assert FP8Config(convert=(r"^time_embedding\.",)).boundary_reason("conv_in", why) == why


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"keep_boundary": "yes"}, "keep_boundary"),
        ({"convert": "conv_in"}, "convert"),
        ({"convert": ("(",)}, "convert"),
    ],
)
def test_boundary_options_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=re.escape(f"FP8Config.{field}")):
        FP8Config(**kwargs)


def test_skip_is_replaceable_and_extendable():
    c = FP8Config(skip=(*DEFAULT_SKIP, r"\.ff\."))
    assert c.skip_reason("blocks.0.ff.net.2") == r"matches skip pattern '\\.ff\\.'"
    assert FP8Config(skip=[]).skip_reason("to_q.lora_A.default") == ""
    assert isinstance(FP8Config(skip=["a"]).skip, tuple)


def test_to_dict_and_back_keeps_every_field():
    c = FP8Config(
        compute="cast",
        granularity="tensor",
        dtype=torch.float8_e5m2,
        skip=(r"^a$",),
        keep_boundary=False,
        convert=(r"^b$",),
        min_weight_numel=7,
        release_weights="cpu",
    )
    data = c.to_dict()
    assert data["dtype"] == "float8_e5m2" and data["release_weights"] == "cpu"
    assert FP8Config.from_dict(data) == c
    with pytest.raises(ValueError, match="unknown fields \\['nope'\\]"):
        FP8Config.from_dict({"nope": 1})
