"""The prompt assistant and the deny-list, on a tiny random Qwen2 chat model in the real format
(tests/tiny_models.py) loaded through the product's loader: the proposal is exactly what
transformers' own ``generate`` gives with the same settings; the deny-list works on the words
before the model reads them and on its text after; a generation records the words, the text,
the model and its revision, its PNG says so, the text is what the encoder read, and a re-run is
identical. Only the plumbing: no real language model's weights reach this machine."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError, ModelMissingError
from core.models.registry import ModelRegistry
from core.prompting import assistant
from core.prompting.assistant import propose, tidy
from core.prompting.denylist import DenyList, Filtered
from core.request import GenerationRequest


# ---------------------------------------------------------------- the deny-list

def test_denylist_takes_out_whole_words_and_phrases_in_any_case():
    deny = DenyList.parse("# brands and people\nNike\ncoca cola\nTaylor   Swift  # a person\n\nNIKE\n")
    assert deny.terms == ("nike", "coca cola", "taylor swift") and len(deny) == 3
    out = deny.apply("a NIKE shoe, Coca-Cola bottle and Taylor Swift's guitar, (Nike:1.3), nikes, unnike")
    assert out == Filtered("a shoe, bottle and guitar, nikes, unnike", ("NIKE", "Coca-Cola", "Taylor Swift's", "Nike"))
    assert deny.apply("[coca_cola] on a beach") == Filtered("on a beach", ("coca_cola",))
    assert deny.apply("a beach at sunset, (soft light:1.2)") == Filtered("a beach at sunset, (soft light:1.2)")
    assert DenyList().apply("Nike") == Filtered("Nike") and not DenyList()
    assert deny.digest == DenyList.parse("Nike\nCoca Cola\ntaylor swift").digest != DenyList.parse("nike").digest


def test_denylist_file_missing_is_empty_unreadable_is_an_error(tmp_path):
    assert DenyList.read(tmp_path / "none.txt") == DenyList()
    (tmp_path / "latin1.txt").write_bytes("Nestl\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="cannot be read"):
        DenyList.read(tmp_path / "latin1.txt")
    with pytest.raises(InputError, match="cannot be read"):
        DenyList.read(tmp_path)  # a folder


def test_the_data_folders_denylist_round_trips(tmp_path):
    from storage.settings import denylist_path, prompt_denylist, save_denylist

    assert prompt_denylist(tmp_path) == DenyList()
    text = "# brands\nNike\nAdidas\n"
    assert save_denylist(text, tmp_path) == DenyList(("nike", "adidas"))
    assert denylist_path(tmp_path).read_text() == text and prompt_denylist(tmp_path).terms == ("nike", "adidas")


# ---------------------------------------------------------------- the model's text as a prompt

def test_tidy_makes_one_clean_paragraph():
    assert tidy('Background: "A sunlit beach,\nwet sand."\n\nSecond paragraph.', False) == "A sunlit beach, wet sand."
    assert tidy("**Prompt:** marble\x00 table\ufffd, soft light\u200b", False) == "marble table, soft light"
    # stopped by the token limit mid-way: back to the last full sentence, else the last phrase
    assert tidy("A beach at dusk. Wet sand, soft bok", True) == "A beach at dusk."
    assert tidy("a beach at dusk, wet sand, soft bok", True) == "a beach at dusk, wet sand"
    assert tidy("a beach at dusk, wet sand, soft bok", False) == "a beach at dusk, wet sand, soft bok"
    assert tidy("\n\n \x01", False) == ""


# ---------------------------------------------------------------- the model, through the loader

@pytest.fixture(scope="module")
def reference(tiny_prompt_lm):
    """transformers alone, not the product's loader: the tokenizer and the model from the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_prompt_lm), AutoModelForCausalLM.from_pretrained(tiny_prompt_lm).eval()


def reference_output(reference, words: str, max_new_tokens: int = assistant.MAX_NEW_TOKENS) -> str:
    """transformers' own greedy ``generate`` on the chat of the fixed instruction and ``words``."""
    import torch

    tokenizer, model = reference
    chat = [{"role": "system", "content": assistant.INSTRUCTION}, {"role": "user", "content": words}]
    inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        ids = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                             repetition_penalty=assistant.REPETITION_PENALTY)
    return tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_proposal_is_transformers_greedy_generate(tiny_prompt_lm, reference, one_torch_thread):
    registry = ModelRegistry()
    proposal = propose("beach at sunset", tiny_prompt_lm, "cpu", registry=registry)
    assert proposal.output == reference_output(reference, "beach at sunset")
    assert proposal.text == tidy(proposal.output, proposal.limited) and len(proposal.text.split()) > 10
    assert proposal.tokens == assistant.MAX_NEW_TOKENS and proposal.limited  # a random model never ends itself
    assert proposal.words == proposal.asked == "beach at sunset" and not proposal.empty
    assert proposal.model == tiny_prompt_lm and proposal.revision == registry.revision(tiny_prompt_lm)
    assert proposal.revision.startswith("local:") and proposal.seconds > 0
    assert [key[0] for key in registry.loaded()] == ["prompt"]
    # the same words give the same text: again, and from a fresh load of the weights
    for again in (propose("beach at sunset", tiny_prompt_lm, "cpu", registry=registry),
                  propose("beach at sunset", tiny_prompt_lm, "cpu", registry=ModelRegistry())):
        assert again == dataclasses.replace(proposal, seconds=again.seconds)
    assert propose("kitchen", tiny_prompt_lm, "cpu", registry=registry).output != proposal.output


def test_the_token_limit_bounds_the_text_and_progress_follows_it(tiny_prompt_lm, reference, monkeypatch,
                                                                  one_torch_thread):
    monkeypatch.setattr(assistant, "MAX_NEW_TOKENS", 6)
    seen = []
    proposal = propose("beach", tiny_prompt_lm, "cpu", progress=lambda *report: seen.append(report))
    assert proposal.tokens == 6 and proposal.limited and proposal.output == reference_output(reference, "beach", 6)
    assert seen[-1] == ("prompt", 6, 6) and [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    from core.errors import Cancelled

    with pytest.raises(Cancelled, match="prompt assistant"):
        propose("beach", tiny_prompt_lm, "cpu", cancel=lambda: True)


def test_the_denylist_runs_before_and_after_the_model(tiny_prompt_lm, one_torch_thread):
    registry = ModelRegistry()
    first = propose("a Nike shoe on a beach", tiny_prompt_lm, "cpu", DenyList.parse("nike"), registry)
    assert first.asked == "a shoe on a beach" and first.removed_before == ("Nike",) and first.removed_after == ()
    # before: the model read the words without the name
    assert first.output == propose("a shoe on a beach", tiny_prompt_lm, "cpu", registry=registry).output
    # after: a word the model wrote, put on the list, leaves its text
    word = next(w for w in first.text.split() if len(w) > 4 and w not in first.asked.split())
    second = propose("a Nike shoe on a beach", tiny_prompt_lm, "cpu", DenyList.parse(f"nike\n{word.upper()}"), registry)
    assert second.output == first.output and second.removed_after == (word,)
    assert word not in second.text.split() and second.text == DenyList.parse(word).apply(first.text).text


def test_missing_weights_name_the_command_and_nothing_else_needs_them(monkeypatch):
    from core.models.hub import fetch_command
    from core.models.slots import explain_missing, needed, readiness

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    request = GenerationRequest(background="ai", prompt="beach", enhance_prompt=True, prompt_model="nobody/no-such-lm")
    (row,) = readiness(request, "prompt").blocking
    assert row["fetch"] == f"{fetch_command()} nobody/no-such-lm"
    message = explain_missing([row])
    assert message.startswith("Improve prompt cannot run") and "Write the prompt yourself" in message
    with pytest.raises(ModelMissingError, match=f"fetch it with: {fetch_command()} nobody/no-such-lm"):
        propose("beach", "nobody/no-such-lm", "cpu", registry=ModelRegistry())
    assert "prompt" not in needed(request.replace(enhance_prompt=False))  # without the option, never needed
    assert "prompt" not in needed(request.replace(background="color:#ffffff"))


def test_a_model_that_is_not_a_causal_lm_is_refused(tiny_sam):
    with pytest.raises(ModelMissingError, match="not usable"):
        propose("beach", tiny_sam, "cpu", registry=ModelRegistry())


# ---------------------------------------------------------------- a generation with the stage

@pytest.mark.slow
def test_a_generation_records_the_stage_and_reruns_identically(tiny_models, tiny_prompt_lm, astronaut, tmp_path,
                                                               one_torch_thread):
    """Through storage, as the command line and the workers run it: the deny-list from the data
    folder, the assistant's text as the prompt the encoder read (the same pixels as that text
    typed by hand), the user's words kept in the request, the record, the models, the timings,
    the warnings and the PNG's parameters; a re-run gives the same text and the same image."""
    from storage import history, service
    from storage.db import Database
    from storage.settings import save_denylist

    from core.cache import get_cache

    get_cache().clear()  # the assistant's text is cached per process: written afresh here
    db = Database(None, tmp_path / "data")
    save_denylist("nike\n", db.data_dir)
    photo = astronaut.resize((96, 64))
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (30, 10, 70, 64))
    request = GenerationRequest(background="ai", prompt="a Nike shoe by the sea", enhance_prompt=True,
                                prompt_model=tiny_prompt_lm, inpaint_model=tiny_models["inpaint"],
                                controlnet_model=tiny_models["controlnet"], depth_model=tiny_models["depth"],
                                steps=2, seed=3, device="cpu")
    registry = ModelRegistry()
    gid, result = service.generate_and_record(photo, request, mask, db=db, registry=registry)
    view = history.get(gid, db=db)
    expected = propose("a Nike shoe by the sea", tiny_prompt_lm, "cpu", DenyList.parse("nike"), registry)
    ran = view.record["prompt_assistant"]
    assert view.request == request.to_dict()  # the user's words and the option, as asked
    assert view.record["prompt"] == ran["text"] == expected.text != request.prompt
    assert (ran["words"], ran["asked"], ran["output"]) == (request.prompt, "a shoe by the sea", expected.output)
    assert ran["model"] == tiny_prompt_lm and ran["revision"] == registry.revision(tiny_prompt_lm)
    assert ran["max_new_tokens"] == assistant.MAX_NEW_TOKENS and ran["tokens"] == expected.tokens
    assert ran["cached"] is False
    assert view.record["prompt_removed"] == ["Nike"] and view.record["denylist"] == DenyList.parse("nike").digest
    assert view.models["prompt"] == {"id": tiny_prompt_lm, "revision": ran["revision"]}
    assert view.timings["prompt"] > 0 and "the deny-list removed 'Nike' from the prompt" in view.warnings
    parameters = Image.open(db.images.path(view.output("result").sha256)).text["parameters"]
    assert parameters.startswith(expected.text + "\n")
    assert "Prompt as typed: a Nike shoe by the sea" in parameters and f"Prompt assistant: {tiny_prompt_lm}" in parameters
    assert "Removed from prompt: Nike" in parameters

    # the assistant's text is what the encoder read: typed by hand, it gives the same pixels
    typed, typed_result = service.generate_and_record(photo, request.replace(enhance_prompt=False, prompt=expected.text),
                                                      mask, db=db, registry=registry)
    assert np.array_equal(np.asarray(typed_result.images[0]), np.asarray(result.images[0]))
    assert "prompt_assistant" not in history.get(typed, db=db).record
    # a re-run: the same text, taken from the process's cache, then written afresh; the same image
    for cached in (True, False):
        if not cached:
            get_cache().clear()
        again, again_result = service.rerun(gid, db=db, registry=ModelRegistry())
        record = history.get(again, db=db).record
        assert record["prompt"] == expected.text and record["prompt_assistant"]["cached"] is cached
        assert np.array_equal(np.asarray(again_result.images[0]), np.asarray(result.images[0]))


def test_the_denylist_applies_without_the_assistant(tiny_models, astronaut, one_torch_thread):
    """No language model: the user's prompt loses the listed names, and the run says so."""
    from core.pipeline import run

    request = GenerationRequest(background="ai", prompt="a (Coca-Cola:1.2) bottle on a beach", steps=1, device="cpu",
                                inpaint_model=tiny_models["inpaint"], control_scale=0.0)
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (30, 10, 70, 64))
    result = run(astronaut.resize((96, 64)), request, mask=mask, denylist=DenyList.parse("coca cola"))
    assert result.record["prompt"] == "a bottle on a beach" and result.record["prompt_removed"] == ["Coca-Cola"]
    assert "prompt" not in result.models and "prompt" not in result.timings
    assert result.warnings[0] == "the deny-list removed 'Coca-Cola' from the prompt"


# ---------------------------------------------------------------- the command line

def test_command_line_option_runs_and_shows_the_stage(tiny_models, tiny_prompt_lm, astronaut, tmp_path, capsys,
                                                      one_torch_thread):
    import json

    from backdrop.cli import main

    photo, mask, out = tmp_path / "photo.png", tmp_path / "mask.png", tmp_path / "out.png"
    astronaut.resize((96, 64)).save(photo)
    box = Image.new("L", (96, 64), 0)
    box.paste(255, (30, 10, 70, 64))
    box.save(mask)
    models = ["--inpaint-model", tiny_models["inpaint"], "--control-scale", "0", "--device", "cpu", "--steps", "1"]
    assert main(["replace", str(photo), "-o", str(out), "--mask", str(mask), "-b", "ai", "--prompt", "beach",
                 "--enhance-prompt", "--prompt-model", tiny_prompt_lm, *models, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    text = propose("beach", tiny_prompt_lm, "cpu").text
    assert report["request"]["enhance_prompt"] is True and report["request"]["prompt"] == "beach"
    assert report["record"]["prompt"] == report["record"]["prompt_assistant"]["text"] == text
    assert report["models"]["prompt"]["id"] == tiny_prompt_lm and "prompt" in report["timings"]
    assert f"prompt assistant ({tiny_prompt_lm}, {assistant.MAX_NEW_TOKENS} tokens in " in captured.err
    assert captured.err.rstrip().endswith(text)
    assert Image.open(out).text["parameters"].startswith(text + "\n")
    assert main(["show", str(report["generation_id"])]) == 0
    shown = capsys.readouterr().out
    assert "Describe the new background: beach" in shown and f"  prompt: {text}" in shown
    assert f"    model: {tiny_prompt_lm}" in shown


def test_command_line_errors_say_what_to_do(astronaut, tmp_path, capsys, monkeypatch):
    from backdrop.cli import main
    from core.models.hub import fetch_command

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo, out = tmp_path / "photo.png", tmp_path / "out.png"
    astronaut.resize((96, 64)).save(photo)
    assert main(["replace", str(photo), "-o", str(out), "-b", "color:#ffffff", "--prompt", "x", "--enhance-prompt"]) == 2
    assert "--enhance-prompt: only the AI background reads a prompt" in capsys.readouterr().err
    assert main(["replace", str(photo), "-o", str(out), "-b", "ai", "--enhance-prompt"]) == 2
    assert "enhance prompt needs a prompt to improve" in capsys.readouterr().err
    assert main(["replace", str(photo), "-o", str(out), "-b", "ai", "--prompt", "beach", "--enhance-prompt",
                 "--prompt-model", "nobody/no-such-lm"]) == 2
    assert f"fetch it with: {fetch_command()} nobody/no-such-lm" in capsys.readouterr().err
    assert not out.exists()
