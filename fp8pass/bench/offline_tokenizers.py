"""Real tokenizer classes (CLIP, T5 / UMT5, Qwen2) over tiny vocabularies built in memory.

Pipelines tokenize a prompt before anything else runs, so a pipeline test needs the tokenizer
class the pipeline expects, with its real pre-tokenization, special tokens and padding; only the
vocabulary can be small. No file or hub is involved: transformers 5 tokenizers take ``vocab`` and
``merges`` directly.

Every vocabulary covers all bytes (CLIP, Qwen2) or printable ASCII (T5), so any prompt tokenizes,
and holds whole-word tokens for :data:`CORPUS`, so "a photo of a cat" and Qwen-Image's prompt
template come out as one token per word, as they do with the published vocabularies.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

__all__ = ["CORPUS", "PROMPT", "QWEN_IMAGE_TEMPLATE", "clip_tokenizer", "qwen2_tokenizer", "t5_tokenizer"]

PROMPT = "a photo of a cat"

#: ``QwenImagePipeline.prompt_template_encode`` (diffusers 0.42). The pipeline drops the first
#: ``prompt_template_encode_start_idx`` = 34 tokens of it, the count the published Qwen2.5
#: vocabulary gives its system part; whole-word tokens for it make the tiny vocabulary give 34 too.
QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
    "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
    "<|im_end|>\n<|im_start|>assistant\n"
)

#: Text whose words get whole-word tokens.
CORPUS = QWEN_IMAGE_TEMPLATE.format(PROMPT)

_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CLIP_BOS, _CLIP_EOS = "<|startoftext|>", "<|endoftext|>"


def clip_tokenizer(pad_token: str = _CLIP_EOS, model_max_length: int = 77):
    """A ``CLIPTokenizer``: byte-level BPE with the ``</w>`` end-of-word suffix, lower-cased, and
    77 positions as CLIP's text models have. SDXL's and SD3's second tokenizer (OpenCLIP bigG)
    pads with ``"!"`` rather than ``<|endoftext|>``; pass ``pad_token="!"`` for those."""
    from transformers import CLIPTokenizer

    words = sorted({w.lower() for w in re.findall(r"[A-Za-z]+", CORPUS)})
    pieces = [[*w[:-1], w[-1] + "</w>"] for w in words]
    tokens, merges = _chain_merges(pieces)
    alphabet = _byte_alphabet()
    vocab = _index([*alphabet, *(c + "</w>" for c in alphabet), *tokens, _CLIP_BOS, _CLIP_EOS])
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad_token, model_max_length=model_max_length)


def t5_tokenizer(model_max_length: int = 512):
    """A ``T5Tokenizer`` (T5 and UMT5 share it): a Unigram model over ``▁word`` pieces and single
    printable characters, ``<pad>`` / ``</s>`` / ``<unk>`` at ids 0 / 1 / 2 as in the published
    vocabularies; no sentinel (``<extra_id_*>``) tokens, which text encoding never uses."""
    from transformers import T5Tokenizer

    words = sorted(set(re.findall(r"[A-Za-z]+", CORPUS)))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -5.0) for w in words]  # whole words beat any split into characters
    pieces += [(c, -10.0) for c in ["▁", *string.printable.strip()]]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def qwen2_tokenizer(model_max_length: int = 32768):
    """A ``Qwen2Tokenizer`` as Qwen2.5-VL configures it: byte-level BPE without a word suffix,
    ``<|im_end|>`` ends a turn (eos), ``<|endoftext|>`` pads, ``<|im_start|>`` is special."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    split = ByteLevel(add_prefix_space=False, use_regex=True)
    segments = re.split("|".join(map(re.escape, _QWEN_SPECIALS)), CORPUS)
    words = sorted({p for seg in segments for p, _ in split.pre_tokenize_str(seg) if len(p) > 1})
    tokens, merges = _chain_merges([list(w) for w in words])
    vocab = _index([*_byte_alphabet(), *tokens, *_QWEN_SPECIALS])
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>"],
        model_max_length=model_max_length,
    )


def _chain_merges(pieces: Iterable[list[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """BPE merges that glue each piece's symbols left to right into one token: the tokens they
    make and the merges, in first-seen order (a merge's rank is its position)."""
    tokens: list[str] = []
    merges: list[tuple[str, str]] = []
    for symbols in pieces:
        left = symbols[0]
        for symbol in symbols[1:]:
            if (left, symbol) not in merges:
                merges.append((left, symbol))
            left += symbol
            if left not in tokens:
                tokens.append(left)
    return tokens, merges


def _byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE maps bytes to, so every string has a tokenization."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _index(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab
