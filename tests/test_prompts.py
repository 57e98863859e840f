"""Long and weighted prompts: AUTOMATIC1111's emphasis syntax, 75-token chunks, and what the
encoder gives the engine, with the tiny CLIP loaded through the real loader."""

import numpy as np
import pytest
import torch

from core.models.registry import ModelRegistry
from core.engine.prompts import (CHUNK, MAX_CHUNKS, QUOTED_CHARS, chunks, encode_prompt_pair, encode_text, parse_weights,
                          token_count, truncation_warning)


@pytest.mark.parametrize("text, runs", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * 1.1 * 1.1), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
    ("[soft] edge", [("soft", 1 / 1.1), (" edge", 1.0)]),
    ("ratio 16:9 and (word:x)", [("ratio 16:9 and ", 1.0), ("word:x", 1.1)]),  # not a weight: literal
    ("stray ) and ]", [("stray ) and ]", 1.0)]),
    ("a sea BREAK a sky", [("a sea", 1.0), ("BREAK", -1.0), ("a sky", 1.0)]),
    ("", [("", 1.0)]),
])
def test_parse_follows_automatic1111(text, runs):
    parsed = parse_weights(text)
    assert [t for t, _ in parsed] == [t for t, _ in runs]
    assert np.allclose([w for _, w in parsed], [w for _, w in runs])


@pytest.fixture(scope="module")
def clip(tiny_models):
    base = ModelRegistry().load("inpaint", tiny_models["inpaint"], "cpu")
    return base.tokenizer, base.text_encoder


def _diffusers_encode(tokenizer, text_encoder, text):
    """How diffusers' pipelines encode a prompt (one 77-token window, cut)."""
    ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids)[0]


def long_prompt(tail: str) -> str:
    return ", ".join(["soft warm light on a wooden table"] * 14) + ", " + tail


@torch.inference_mode()
def test_short_unweighted_prompts_encode_exactly_as_diffusers(clip):
    tokenizer, encoder = clip
    for text in ("a photo of a beach at sunset", "", "marble table, studio light"):
        assert torch.equal(encode_text(tokenizer, encoder, text, "cpu"), _diffusers_encode(tokenizer, encoder, text))


@torch.inference_mode()
def test_a_long_prompt_is_read_beyond_the_75th_token(clip):
    tokenizer, encoder = clip
    a, b = long_prompt("a city street at night"), long_prompt("a forest with the sea")
    assert token_count(tokenizer, a) > CHUNK and len(chunks(tokenizer, a)) == 2
    ea, eb = encode_text(tokenizer, encoder, a, "cpu"), encode_text(tokenizer, encoder, b, "cpu")
    assert ea.shape == (1, 2 * (CHUNK + 2), encoder.config.hidden_size)
    # CLIP cut at 77 tokens cannot tell these apart: the chunked encoding can, after the first chunk
    assert torch.equal(_diffusers_encode(tokenizer, encoder, a), _diffusers_encode(tokenizer, encoder, b))
    assert torch.equal(ea[:, : CHUNK + 2], eb[:, : CHUNK + 2]) and not torch.equal(ea[:, CHUNK + 2 :], eb[:, CHUNK + 2 :])
    assert truncation_warning(tokenizer, a) is None  # nothing is dropped any more


def test_chunks_end_at_a_comma_and_at_break(clip):
    tokenizer, _ = clip
    pieces = chunks(tokenizer, long_prompt("the sea"))
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    assert len(pieces[0].ids) <= CHUNK and pieces[0].ids[-1] == comma  # a phrase is not split
    assert sum(len(p.ids) for p in pieces) == token_count(tokenizer, long_prompt("the sea"))
    assert len(chunks(tokenizer, "a beach BREAK a sky")) == 2


@torch.inference_mode()
def test_weights_change_the_embeddings(clip):
    tokenizer, encoder = clip
    plain = encode_text(tokenizer, encoder, "a photo of a beach", "cpu")
    stressed = encode_text(tokenizer, encoder, "a photo of a (beach:1.5)", "cpu")
    assert plain.shape == stressed.shape and not torch.equal(plain, stressed)
    changed = (plain - stressed).abs().amax(dim=-1)[0]
    assert changed.max() > 0 and torch.allclose(stressed.mean(), plain.mean(), atol=1e-5)  # the mean is kept
    assert torch.equal(encode_text(tokenizer, encoder, "a photo of a (beach:1.0)", "cpu"), plain)
    assert not torch.equal(encode_text(tokenizer, encoder, "a photo of a [beach]", "cpu"), plain)


@torch.inference_mode()
def test_prompt_and_negative_get_the_same_length(clip):
    tokenizer, encoder = clip
    positive, negative = encode_prompt_pair(tokenizer, encoder, long_prompt("the sea"), "blurry", True, "cpu")
    assert positive.shape == negative.shape == (1, 2 * (CHUNK + 2), encoder.config.hidden_size)
    # the negative's second chunk is an empty chunk: the encoding of ""
    assert torch.equal(negative[:, CHUNK + 2 :], encode_text(tokenizer, encoder, "", "cpu"))
    positive, none = encode_prompt_pair(tokenizer, encoder, "a beach", long_prompt("x"), False, "cpu")
    assert none is None and positive.shape[1] == CHUNK + 2


@torch.inference_mode()
def test_only_text_beyond_the_last_chunk_is_dropped_and_said(clip):
    tokenizer, encoder = clip
    huge = ", ".join(["soft warm light on a wooden table"] * 80) + ", unusual tail words"
    assert len(chunks(tokenizer, huge)) > MAX_CHUNKS
    assert encode_text(tokenizer, encoder, huge, "cpu").shape[1] == MAX_CHUNKS * (CHUNK + 2)
    message = truncation_warning(tokenizer, huge, "prompt")
    assert message and f"{MAX_CHUNKS * CHUNK} tokens" in message and "soft warm light" in message


def test_truncation_warning_quotes_only_the_start_of_a_huge_prompt(clip):
    """Issue 12: a 20 KB prompt was quoted whole into stderr and the stored warnings."""
    tokenizer, _ = clip
    huge = " ".join(f"word{i}" for i in range(3000))
    assert len(huge) > 20_000
    message = truncation_warning(tokenizer, huge, "prompt")
    assert len(message) < QUOTED_CHARS + 300, len(message)
    assert "more characters" in message and "word2999" not in message
