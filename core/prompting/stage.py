"""The prompt stage of an AI background: the prompt the text encoder will read.

The user's prompt loses the deny-list's terms; when the request asks for it (``enhance_prompt``),
the prompt assistant rewrites it first (core.prompting.assistant). The stored request stays as
the user asked (their words, ``enhance_prompt`` on); the rest of the run gets a request with the
prompt that runs, and the run record keeps what happened: the assistant's words, text, model and
revision (``prompt_assistant``), what the deny-list removed (``prompt_removed``) and which list
it was (``denylist``: a hash of its terms).
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
        from core.models.device import resolve_device
        from core.prompting.assistant import propose

        proposal = propose(request.prompt, request.prompt_model, resolve_device(request.device), denylist,
                           registry, progress, cancel)
        text, removed = proposal.text, proposal.removed_before
        run.record["prompt_assistant"] = proposal.record()
        run.model = {"id": proposal.model, "revision": proposal.revision}
        if proposal.removed_after:
            run.warnings.append(f"the deny-list removed {_quoted(proposal.removed_after)} from the prompt assistant's text")
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


def _quoted(terms) -> str:
    return ", ".join(f"'{term}'" for term in terms)
