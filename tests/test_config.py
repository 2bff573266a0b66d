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


@pytest.mark.parametrize(
    "name",
    [
        "conv_in",
        "conv_out",
        "proj_out",
        "x_embedder",
        "context_embedder",
        "pos_embed.proj",
        "patch_embedding",
        "time_embedding.linear_1",
        "time_text_embed.timestep_embedder.linear_2",
        "add_embedding.linear_1",
        "condition_embedder.time_embedder.linear_1",
        "norm_out.linear",
    ],
)
def test_default_skip_keeps_input_and_output_layers(name):
    assert FP8Config().skip_reason(name)


@pytest.mark.parametrize(
    "name",
    [
        # AdaLN modulation linears are converted on purpose (FIELD_NOTES 2.3)
        "transformer_blocks.0.norm1.linear",
        "transformer_blocks.0.norm1_context.linear",
        "single_transformer_blocks.3.norm.linear",
        # per-block projections share names with the top-level ones
        "single_transformer_blocks.3.proj_out",
        "down_blocks.0.attentions.0.proj_in",
        "down_blocks.0.attentions.0.proj_out",
        "down_blocks.0.resnets.0.conv1",
        "down_blocks.0.resnets.0.time_emb_proj",
        "blocks.0.attn1.to_q",
    ],
)
def test_default_skip_converts_block_layers(name):
    assert FP8Config().skip_reason(name) == ""


def test_skip_is_replaceable_and_extendable():
    c = FP8Config(skip=(*DEFAULT_SKIP, r"\.ff\."))
    assert c.skip_reason("blocks.0.ff.net.2") == r"matches skip pattern '\\.ff\\.'"
    assert FP8Config(skip=[]).skip_reason("conv_in") == ""
    assert isinstance(FP8Config(skip=["a"]).skip, tuple)
