"""The prompt stage of an AI background: the prompt the text encoder will read.

The user's prompt loses the deny-list's terms; when the request asks for it (``enhance_prompt``),
the prompt assistant rewrites it first (core.prompting.assistant). The stored request stays as
the user asked (their words, ``enhance_prompt`` on); the rest of the run gets a request with the
prompt that runs, and the run record keeps what happened: the assistant's words, text, model and
revision (``prompt_assistant``), what the deny-list removed (``prompt_removed``) and which list
it was (``denylist``: a hash of its terms).

The assistant's text is kept in the stage cache (core.cache) by model, revision, device, words
and list: a batch of photos with one recipe, or a re-run in the same process, writes it once
(greedy decoding would write the same text again); the record then says ``cached``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.prompting.denylist import DenyList
from core.request import GenerationRequest


@dataclass
class PromptRun:
    """The request the rest of the run uses, and what the record, the warnings and the
    generation's models keep (``model``: the assistant's id and revision, when it ran)."""

    request: GenerationRequest
    record: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model: dict[str, str] | None = None


def prepare(request: GenerationRequest, denylist: DenyList | None = None, registry=None, progress=None,
            cancel=None) -> PromptRun:
    """The prompt ``request`` runs with; runs the assistant when the request asks for it."""
    denylist = denylist or DenyList()
    run = PromptRun(request)
    if denylist:
        run.record["denylist"] = denylist.digest
    if request.enhance_prompt:
        proposal, cached = _proposal(request, denylist, registry, progress, cancel)
        text, removed = proposal.text, proposal.removed_before
        run.record["prompt_assistant"] = {**proposal.record(), "cached": cached}
        run.model = {"id": proposal.model, "revision": proposal.revision}
        if proposal.removed_after:
            run.warnings.append(f"the deny-list removed {_quoted(proposal.removed_after)} from the prompt "
                                "assistant's text")
        if proposal.empty:
            run.warnings.append("the prompt assistant gave no usable text: the prompt ran as typed")
    else:
        filtered = denylist.apply(request.prompt)
        text, removed = filtered.text, filtered.removed
    if removed:
        run.record["prompt_removed"] = list(removed)
        run.warnings.insert(0, f"the deny-list removed {_quoted(removed)} from the prompt")
    run.request = request.replace(prompt=text, enhance_prompt=False)
    return run


def _proposal(request: GenerationRequest, denylist: DenyList, registry, progress, cancel):
    """(the assistant's proposal for the request's words, whether it came from the cache)."""
    from core.cache import get_cache
    from core.models.device import resolve_device
    from core.models.registry import get_registry
    from core.prompting.assistant import propose

    registry = registry or get_registry()
    device = resolve_device(request.device)
    registry.load("prompt", request.prompt_model, device)  # its revision is part of the key
    written = []

    def write():
        written.append(propose(request.prompt, request.prompt_model, device, denylist, registry, progress, cancel))
        return written[0]

    key = (request.prompt_model, registry.revision(request.prompt_model), device, request.prompt, denylist.terms)
    proposal = get_cache().get_or_compute("proposal", key, write)
    return proposal, not written


def _quoted(terms) -> str:
    return ", ".join(f"'{term}'" for term in terms)
