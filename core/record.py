"""The run record: what a generation actually ran, kept beside its request.

The request says what was asked; the record says what ran: the sizes, the exact prompt and
negative prompt texts the text encoder read (the quality negative included), their token
counts, the sampler's eta, and whatever else a stage wants a reader of the history to know.
Stages add keys with ``note``; storage keeps the record as one JSON value, so a stage adds a
key without a schema change. Model ids and revisions are the generation's ``models``.

Keys written today: ``input_size`` ([width, height]); for AI backgrounds the ``bucket`` the
sampler ran at ("768x512") and the photo's ``content`` size in it (core.engine.buckets), ``prompt`` and
``negative_prompt`` (as encoded), ``prompt_tokens`` and ``negative_prompt_tokens`` (CLIP tokens
of text, without start and end), the sampling that ran: ``scheduler`` (its diffusers class) and
its ``timestep_spacing``, ``steps``, ``guidance``, ``eta``, ``fast_lora`` (the fused LoRA's id in
fast mode, else null), ``guided`` (whether the unguided row ran beside the prompt's: only at
guidance above 1) and ``rows`` (network rows per step), ``fused_now`` and ``weights_switch_s``
(fast mode's LoRA fused, or the model's own weights put back, before this run),
``depth_control`` (whether the ControlNet ran), ``step`` and ``vae_decode`` (how the engine ran;
"tiny": TAESD encoded and decoded, the request's tiny autoencoder);
from the prompt stage (core.prompting.stage) ``prompt_assistant`` (the assistant's words, text,
model, revision, tokens and seconds), ``prompt_removed`` (what the deny-list took out of the
prompt as typed) and ``denylist`` (a hash of the list's terms). A framed result
(core.look.framing: any canvas, fill or anchor that moves or scales the photo) adds ``canvas`` ([width, height]), ``subject_scale`` and ``resample_filter`` (``lanczos``, or
``none`` at scale 1: copied), ``photo_offset`` (the photo's top-left corner on the canvas),
``subject_box`` (the subject's box there) and ``new_area`` (the share of the canvas the photo does
not cover). Generations stored before the record existed have ``input_size``, ``work_size`` (the
size they ran at) and, for a picture
background, ``background_path`` (storage migration 0003).
"""

from __future__ import annotations

import math
from typing import Any


def note(record: dict[str, Any] | None, **values: Any) -> None:
    """Add ``values`` to ``record`` (a no-op when there is none). Tuples become lists and
    everything must be JSON, so the record reads back from storage exactly as it was written."""
    if record is None:
        return
    for key, value in values.items():
        record[key] = _plain(value, key)


def _plain(value: Any, key: str) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, key) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"run record {key!r}: {value!r} is not a JSON number")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"run record {key!r}: a {type(value).__name__} cannot be kept as JSON")
