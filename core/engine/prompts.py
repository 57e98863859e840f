"""Prompt text to CLIP embeddings for the generator: any length, with AUTOMATIC1111's weights.

One entry point, ``encode_prompt_pair``, so the engine does not care how a prompt is read: it
gets the prompt's and the negative prompt's embeddings, each ``(1, tokens, width)`` in the text
encoder's dtype, with the same number of tokens (classifier-free guidance batches them).

How a prompt is read, as AUTOMATIC1111's web UI reads it (and InvokeAI's and ComfyUI's users
write it):

- Emphasis: ``(words)`` multiplies their weight by 1.1, ``[words]`` divides it by 1.1,
  ``(words:1.4)`` multiplies it by 1.4; brackets nest and multiply; ``\\(`` ``\\)`` ``\\[``
  ``\\]`` are literal brackets; a bracket left open closes at the end of the prompt.
- Length: CLIP reads 75 tokens at a time, so the prompt is cut into chunks of 75 tokens (at the
  last comma of a chunk when one is at most 20 tokens back, so a phrase is not split), each
  encoded on its own with CLIP's start and end tokens and the results joined: 77 embeddings per
  chunk. ``BREAK`` ends a chunk early. The shorter of prompt and negative prompt is padded with
  the encoding of an empty chunk.
- A weight scales its tokens' embeddings; then the chunk's embeddings are rescaled so their
  mean is what it was unweighted (A1111's "original" emphasis).

A prompt of at most 75 tokens without weights is encoded exactly as diffusers' pipelines encode
it. More than ``MAX_CHUNKS`` chunks are not read: ``truncation_warning`` says what was dropped.
(``compel`` chunks and weights prompts too, but with its own syntax, ``(word)1.2`` and
``word++``, and not A1111's arithmetic, so AUTOMATIC1111's parse is done here.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CHUNK = 75  # text tokens CLIP reads at once (77 with its start and end tokens)
MAX_CHUNKS = 8  # 600 tokens: more would be read by nobody, and each length is another CUDA graph shape
QUOTED_CHARS = 200  # how much of the ignored text a truncation warning quotes
ROUND = 1.1  # (words)
SQUARE = 1 / 1.1  # [words]
COMMA_BACKTRACK = 20  # a chunk ends at its last comma when that is at most this many tokens back
BREAK = -1.0  # the weight that marks BREAK in parse_weights' runs

_WEIGHT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


def parse_weights(text: str) -> list[tuple[str, float]]:
    """``text`` as runs of (text, weight) in AUTOMATIC1111's emphasis syntax; a BREAK is the run
    ("BREAK", -1). Runs of equal weight are merged; an empty prompt is [("", 1.0)]."""
    runs: list[list] = []
    rounds: list[int] = []  # where each open "(" started, in runs
    squares: list[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    def add_text(piece: str) -> None:
        for i, part in enumerate(_BREAK.split(piece)):
            if i:
                runs.append(["BREAK", BREAK])
            if part:
                runs.append([part, 1.0])

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "()[]\\":
            runs.append([text[i + 1], 1.0])
            i += 2
        elif char == "(":
            rounds.append(len(runs))
            i += 1
        elif char == "[":
            squares.append(len(runs))
            i += 1
        elif char == ":" and rounds and (match := _WEIGHT.match(text, i)) and _number(match.group(1)) is not None:
            scale(rounds.pop(), _number(match.group(1)))
            i = match.end()
        elif char == ")" and rounds:
            scale(rounds.pop(), ROUND)
            i += 1
        elif char == "]" and squares:
            scale(squares.pop(), SQUARE)
            i += 1
        else:  # plain text up to the next character with a meaning (or this one, taken literally)
            end = i + 1
            while end < len(text) and text[end] not in "\\()[]:":
                end += 1
            add_text(text[i:end])
            i = end
    for start in rounds:
        scale(start, ROUND)
    for start in squares:
        scale(start, SQUARE)
    merged: list[list] = []
    for run in runs:
        if merged and merged[-1][1] == run[1] and run[1] != BREAK:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(text, weight) for text, weight in merged] or [("", 1.0)]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class Chunk:
    """Up to CHUNK text tokens and their weights (without CLIP's start and end tokens)."""

    ids: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def chunks(tokenizer, text: str) -> list[Chunk]:
    """``text`` parsed and tokenized into chunks of at most CHUNK tokens, every chunk read
    (``MAX_CHUNKS`` is applied by the encoder); always at least one chunk."""
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    comma = comma if comma != tokenizer.unk_token_id else None
    done: list[Chunk] = []
    current = Chunk()
    last_comma = -1

    def close() -> None:
        nonlocal current, last_comma
        done.append(current)
        current, last_comma = Chunk(), -1

    for piece, weight in parse_weights(text):
        if weight == BREAK:
            close()
            continue
        for token in tokenizer(piece, add_special_tokens=False, truncation=False, verbose=False).input_ids:
            if token == comma:
                last_comma = len(current.ids)
            elif len(current.ids) == CHUNK and last_comma != -1 and len(current.ids) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1  # the comma stays with the words before it
                moved = Chunk(current.ids[cut:], current.weights[cut:])
                current.ids, current.weights = current.ids[:cut], current.weights[:cut]
                close()
                current = moved
            if len(current.ids) == CHUNK:
                close()
            current.ids.append(token)
            current.weights.append(weight)
    if current.ids or not done:
        close()
    return done


def _window(tokenizer, chunk: Chunk) -> tuple[list[int], list[float], int]:
    """CLIP's 77 positions for a chunk: start, the tokens, end, padding (diffusers' layout);
    their weights (1 at start, end and padding) and how many are not padding."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id]
    weights = [1.0, *chunk.weights, 1.0]
    used = len(ids)
    return ids + [pad] * (CHUNK + 2 - used), weights + [1.0] * (CHUNK + 2 - used), used


def _encode_chunks(tokenizer, text_encoder, pieces: list[Chunk], device):
    """(1, 77 * len(pieces), width) embeddings, each chunk encoded on its own and weighted."""
    import torch

    windows = [_window(tokenizer, chunk) for chunk in pieces]
    ids = torch.tensor([w[0] for w in windows], device=device)
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = torch.tensor([[1] * w[2] + [0] * (CHUNK + 2 - w[2]) for w in windows], device=device)
    hidden = text_encoder(ids, attention_mask=mask)[0]
    weights = torch.tensor([w[1] for w in windows], device=device)
    if bool((weights != 1.0).any()):  # A1111's "original" emphasis, per chunk, in fp32
        raw = hidden.float()
        weighted = raw * weights[..., None]
        scale = raw.mean(dim=(1, 2), keepdim=True) / weighted.mean(dim=(1, 2), keepdim=True)
        hidden = weighted * scale
    return hidden.to(dtype=text_encoder.dtype, device=device).reshape(1, -1, hidden.shape[-1])


def encode_text(tokenizer, text_encoder, text: str, device, min_chunks: int = 1):
    """The embeddings of ``text``: (1, 77 * chunks, width), at least ``min_chunks`` chunks (the
    extra ones are empty chunks), at most MAX_CHUNKS."""
    pieces = chunks(tokenizer, text)[:MAX_CHUNKS]
    pieces += [Chunk() for _ in range(min_chunks - len(pieces))]
    return _encode_chunks(tokenizer, text_encoder, pieces, device)


def encode_prompt_pair(tokenizer, text_encoder, prompt: str, negative: str, guided: bool, device):
    """(prompt embeddings, negative embeddings or None when unguided), both (1, N, width) with
    the same N."""
    if not guided:
        return encode_text(tokenizer, text_encoder, prompt, device), None
    count = max(min(len(chunks(tokenizer, text)), MAX_CHUNKS) for text in (prompt, negative))
    return (encode_text(tokenizer, text_encoder, prompt, device, count),
            encode_text(tokenizer, text_encoder, negative, device, count))


def truncation_warning(tokenizer, prompt: str, what: str = "prompt") -> str | None:
    """The part of ``prompt`` that is not read (beyond MAX_CHUNKS chunks), said to the user; None
    when everything is read."""
    if not prompt:
        return None
    pieces = chunks(tokenizer, prompt)
    if len(pieces) <= MAX_CHUNKS:
        return None
    dropped = tokenizer.decode([token for chunk in pieces[MAX_CHUNKS:] for token in chunk.ids]).strip()
    quoted = repr(dropped[:QUOTED_CHARS])  # the warning is shown, printed and stored: it quotes the start only
    if len(dropped) > QUOTED_CHARS:
        quoted += f" and {len(dropped) - QUOTED_CHARS} more characters"
    return (f"{what} is {token_count(tokenizer, prompt)} tokens; Backdrop reads {MAX_CHUNKS} chunks of {CHUNK} "
            f"({MAX_CHUNKS * CHUNK} tokens), so this part is ignored: {quoted}")


def token_count(tokenizer, text: str) -> int:
    """CLIP tokens of ``text``'s words (the weighting syntax and BREAK not counted)."""
    return sum(len(chunk.ids) for chunk in chunks(tokenizer, text)) if text else 0
