"""Prompt text to CLIP embeddings for the generator.

One entry point, ``encode_prompt_pair``, so the engine does not care how a prompt is read: it
gets the prompt's and the negative prompt's embeddings, each ``(1, tokens, width)`` in the text
encoder's dtype, with the same number of tokens (classifier-free guidance batches them).
"""

from __future__ import annotations


def encode_text(tokenizer, text_encoder, text: str, device):
    """CLIP's last hidden state for ``text`` padded to the tokenizer's 77 tokens (longer text is
    cut: see ``truncation_warning``); the same computation as diffusers' ``encode_prompt``."""
    tokens = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    hidden = text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
    return hidden.to(dtype=text_encoder.dtype, device=device)


def encode_prompt_pair(tokenizer, text_encoder, prompt: str, negative: str, guided: bool, device):
    """(prompt embeddings, negative embeddings or None when unguided)."""
    positive = encode_text(tokenizer, text_encoder, prompt, device)
    return positive, (encode_text(tokenizer, text_encoder, negative, device) if guided else None)


def truncation_warning(tokenizer, prompt: str, what: str = "prompt") -> str | None:
    """CLIP reads at most 77 tokens (75 of text); the tokenizer silently drops the rest, so the
    user is told which words were ignored."""
    if not prompt:
        return None
    limit = tokenizer.model_max_length
    ids = tokenizer(prompt, truncation=False, verbose=False).input_ids
    if len(ids) <= limit:
        return None
    dropped = tokenizer.decode(ids[limit - 1 : -1]).strip()
    return f"{what} is {len(ids) - 2} tokens; CLIP reads only the first {limit - 2}, so this part is ignored: {dropped!r}"


def token_count(tokenizer, text: str) -> int:
    """CLIP tokens of ``text``, without the start and end tokens."""
    return len(tokenizer(text, truncation=False, verbose=False).input_ids) - 2 if text else 0
