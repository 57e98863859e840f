"""The prompt assistant: a few words in, a described background out.

People type "beach"; Stable Diffusion 1.5 gives its best with a described surface, setting,
light and camera. A small instruct language model (the ``prompt`` model slot: Qwen2.5-0.5B-Instruct
by default, any causal language model selectable) rewrites the words under a fixed instruction.
Decoding is greedy (no sampling), so the same words, model and device give the same text and a
re-run is identical; it stops after MAX_NEW_TOKENS new tokens, which keeps the text within
CLIP's reading (75 tokens a chunk) and bounds the stage's time on a CPU. A time limit would
bound it too, but would make the text depend on the machine's load. The deny-list
(core.prompting.denylist) runs on the words before the model reads them and on its text after.

The Studio's *Improve prompt* button shows the proposal for the user to edit; the command line's
and the API's ``enhance_prompt`` run it as a stage of the generation (core.prompting.stage).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Callable

from core.errors import Cancelled
from core.prompting.denylist import DenyList

INSTRUCTION = (
    "You write prompts for Stable Diffusion that describe the background behind a product or subject photo. "
    "The subject is already in the photo: do not describe it. From the user's words, write one short paragraph "
    "of at most 50 words: the surface the subject stands on, the setting, the light and the camera (lens, depth "
    "of field), as comma-separated phrases. No people, no faces, no hands, no text, no letters, no logos, no "
    "brands, no names of real people, products or companies. Reply with the paragraph only."
)
MAX_NEW_TOKENS = 75  # CLIP reads 75 tokens at a time; Qwen's tokens are about as long as CLIP's
REPETITION_PENALTY = 1.1  # greedy decoding of a small model otherwise tends to repeat a phrase
SEED = 0
_ONE_AT_A_TIME = threading.Lock()  # two proposals at once would each take twice as long on a CPU

_LABEL = re.compile(r"^\W*(?:background|prompt|description|answer)\W*:\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@dataclass(frozen=True)
class Proposal:
    """One run of the assistant: the user's ``words``, what the model was given (``asked``: the
    words without the deny-list's terms), its decoded ``output``, and the proposal ``text``
    (tidied to one paragraph, without the deny-list's terms; the asked words themselves when the
    model gave no usable text: ``empty``). ``limited``: it stopped at the token limit."""

    words: str
    asked: str
    output: str
    text: str
    removed_before: tuple[str, ...]
    removed_after: tuple[str, ...]
    model: str
    revision: str
    tokens: int
    limited: bool
    empty: bool
    seconds: float

    def record(self) -> dict[str, Any]:
        """What the run record keeps of it (core.record: JSON values only)."""
        return {**asdict(self), "max_new_tokens": MAX_NEW_TOKENS, "seed": SEED}


def messages(words: str) -> list[dict[str, str]]:
    """The chat the model reads: the fixed instruction, then the user's words."""
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": words}]


def model_inputs(tokenizer, words: str):
    """Token ids (and attention mask) of the chat, in the model's own chat template; a model
    without one (a base language model) reads the instruction and the words as plain text."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages(words), add_generation_prompt=True, return_tensors="pt",
                                             return_dict=True)
    return tokenizer(f"{INSTRUCTION}\n\nThe user's words: {words}\nThe paragraph:", return_tensors="pt")


def generation_config(model, tokenizer):
    """Greedy search, at most MAX_NEW_TOKENS, with a light repetition penalty; the end tokens
    are the model's own (its generation_config.json), else its tokenizer's."""
    from transformers import GenerationConfig

    eos = _eos(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _as_list(eos)[0]
    return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS,
                            repetition_penalty=REPETITION_PENALTY, eos_token_id=eos, pad_token_id=pad,
                            temperature=None, top_p=None, top_k=None)


def propose(words: str, model_id: str, device: str, denylist: DenyList = DenyList(), registry=None,
            progress: Callable[[str, int, int], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> Proposal:
    """The assistant's proposal for ``words`` with the model ``model_id`` on ``device``, loaded
    through the registry's one loader (ModelMissingError naming the command that fetches it).
    ``progress("prompt", tokens, MAX_NEW_TOKENS)`` follows the tokens; ``cancel()`` returning
    True stops it with Cancelled."""
    import torch

    from core.models.registry import get_registry

    registry = registry or get_registry()
    before = denylist.apply(words)
    tokenizer, model = registry.load("prompt", model_id, device)
    inputs = model_inputs(tokenizer, before.text).to(model.device)
    start = inputs["input_ids"].shape[1]
    watch = _watch(start, progress, cancel)
    with _ONE_AT_A_TIME, torch.inference_mode(), _seeded():
        began = time.perf_counter()
        ids = model.generate(**inputs, generation_config=generation_config(model, tokenizer),
                             stopping_criteria=[watch])[0, start:]
        seconds = time.perf_counter() - began
    if watch.cancelled:
        raise Cancelled("cancelled while the prompt assistant was writing")
    output = tokenizer.decode(ids, skip_special_tokens=True)
    limited = len(ids) >= MAX_NEW_TOKENS and int(ids[-1]) not in _as_list(_eos(model, tokenizer))
    after = denylist.apply(tidy(output, limited))
    empty = not after.text
    return Proposal(words=words, asked=before.text, output=output, text=before.text if empty else after.text,
                    removed_before=before.removed, removed_after=after.removed, model=model_id,
                    revision=registry.revision(model_id), tokens=len(ids), limited=limited, empty=empty,
                    seconds=round(seconds, 3))


def tidy(output: str, limited: bool) -> str:
    """The model's text as a prompt: printable characters only, the first paragraph on one line,
    without a leading label ("Background:") or quotes; cut at its last full sentence (or
    phrase) when the token limit stopped it mid-way."""
    printable = "".join(c for c in output if c in "\n\t" or unicodedata.category(c)[0] != "C").replace("\ufffd", "")
    paragraph = next((part for part in re.split(r"\n\s*\n", printable) if part.strip()), "")
    text = _LABEL.sub("", " ".join(paragraph.split())).strip(" \"'“”*")
    if limited:
        ends = [m.end() for m in _SENTENCE_END.finditer(text)] or [i for i, c in enumerate(text) if c == ","]
        if ends and ends[-1] > len(text) // 3:
            text = text[:ends[-1]].rstrip(" ,")
    return text


def _eos(model, tokenizer):
    """The model's end tokens (its generation_config.json), else its tokenizer's: an id or a list."""
    eos = model.generation_config.eos_token_id
    return eos if eos is not None else tokenizer.eos_token_id


def _as_list(ids) -> list:
    return ids if isinstance(ids, list) else [ids]


@contextlib.contextmanager
def _seeded():
    """Greedy decoding draws no random numbers; the seed is set anyway, for a model whose forward
    pass would, in a forked random state, so no other stage's random numbers move."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(SEED)
        yield


def _watch(start: int, progress, cancel):
    """A stopping criterion that stops nothing by itself: it reports each new token and stops
    the search when the caller cancels (``.cancelled`` says whether it did)."""
    import torch
    from transformers import StoppingCriteria

    class Watch(StoppingCriteria):
        cancelled = False

        def __call__(self, input_ids, scores, **kwargs):
            if progress is not None:
                progress("prompt", input_ids.shape[1] - start, MAX_NEW_TOKENS)
            self.cancelled = self.cancelled or bool(cancel is not None and cancel())
            return torch.full((input_ids.shape[0],), self.cancelled, dtype=torch.bool, device=input_ids.device)

    return Watch()
