"""The prompt assistant in the app, through Streamlit's AppTest: the Studio's Improve prompt
fills a proposal the user edits and then uses (never the prompt box by itself), says what to
run without its model, History shows the prompt as typed and as it ran, and a remix of a
generation whose prompt the assistant wrote says so; the Models page edits the deny-list."""

from __future__ import annotations

import pytest
from PIL import Image

from core.prompting.assistant import propose
from core.prompting.denylist import DenyList
from storage import settings as user_settings
from test_app import app, data_dir, generate_button, pressable, upload_lemur, wait_done  # noqa: F401 - fixture

WORDS = "a Nike shoe on a beach"


@pytest.fixture
def assistant_here(data_dir, tiny_models, tiny_prompt_lm, monkeypatch):  # noqa: F811 - the imported fixture
    """The tiny models as the saved defaults' environment, and a deny-list naming Nike."""
    for name, folder in (("INPAINT", tiny_models["inpaint"]), ("CONTROLNET", tiny_models["controlnet"]),
                         ("DEPTH", tiny_models["depth"]), ("PROMPT", tiny_prompt_lm)):
        monkeypatch.setenv(f"BACKDROP_{name}_MODEL", folder)
    monkeypatch.setenv("BACKDROP_DEVICE", "cpu")
    user_settings.save_denylist("nike\n")
    yield tiny_prompt_lm
    user_settings.denylist_path().unlink()


def studio_with_words(lemur_path, words: str):
    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    at.slider(key="studio_f_steps").set_value(1).run()
    at.text_area(key="studio_f_prompt").input(words).run()
    return at


@pytest.mark.slow
def test_improve_prompt_fills_a_proposal_the_user_edits_and_uses(assistant_here, lemur_path, one_torch_thread):
    at = studio_with_words(lemur_path, "")
    pressable(at, "studio_improve").click().run()
    assert "Type a few words in the prompt box first" in " ".join(e.value for e in at.error)
    at.text_area(key="studio_f_prompt").input(WORDS).run()
    pressable(at, "studio_improve").click().run()
    assert not at.exception, at.exception
    expected = propose(WORDS, assistant_here, "cpu", DenyList.parse("nike"))
    shown_proposal = at.session_state["studio_proposal"]
    assert (shown_proposal.output, shown_proposal.text, shown_proposal.removed_before) == \
        (expected.output, expected.text, ("Nike",))
    assert at.text_area(key="studio_proposal_text").value == expected.text
    assert at.text_area(key="studio_f_prompt").value == WORDS  # a proposal, not a rewrite
    shown = " ".join(c.value for c in at.caption)  # the model, and what the deny-list took out
    assert f"Written by `{assistant_here}` in " in shown and "Taken out by the deny-list: `Nike`." in shown
    edited = "on wet sand, " + " ".join(expected.text.split()[:8])
    at.text_area(key="studio_proposal_text").input(edited).run()
    at.button(key="studio_proposal_use").click().run()
    assert at.text_area(key="studio_f_prompt").value == edited and "studio_proposal" not in at.session_state
    generate_button(at).click().run()
    view = wait_done(at, at.session_state["studio_job"], timeout=120)
    assert view.status == "done" and view.request["prompt"] == edited and view.request["enhance_prompt"] is False
    assert view.record["prompt"] == edited and "prompt_assistant" not in view.record
    # Keep mine: the proposal goes, the words stay
    pressable(at, "studio_improve").click().run()
    at.button(key="studio_proposal_discard").click().run()
    assert at.text_area(key="studio_f_prompt").value == edited and "studio_proposal" not in at.session_state


def test_without_its_weights_the_button_says_what_to_run(data_dir, lemur_path, tiny_models, monkeypatch):  # noqa: F811
    from core.models.hub import fetch_command

    monkeypatch.setenv("BACKDROP_INPAINT_MODEL", tiny_models["inpaint"])
    monkeypatch.setenv("BACKDROP_PROMPT_MODEL", "nobody/no-such-lm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = studio_with_words(lemur_path, "beach")
    assert pressable(at, "studio_improve").disabled
    captions = " ".join(c.value for c in at.caption)
    assert "Improve prompt cannot run" in captions and f"`{fetch_command()} nobody/no-such-lm`" in captions
    assert "Write the prompt yourself" in captions
    assert not generate_button(at).disabled and not at.warning  # everything else works


@pytest.mark.slow
def test_history_shows_both_prompts_and_a_remix_says_generate_rewrites(assistant_here, lemur_path, astronaut,
                                                                      one_torch_thread):
    from storage import history, service

    request = user_settings.base_request().replace(background="ai", prompt=WORDS, enhance_prompt=True, steps=1)
    mask = Image.new("L", (680, 440), 0)
    mask.paste(255, (200, 100, 480, 440))
    gid, _ = service.generate_and_record(lemur_path.read_bytes(), request, mask)
    ran = history.get(gid).record["prompt"]
    at = app("history")
    at.button(key=f"history_open_{gid}").click().run()
    codes = [c.value for c in at.code]
    assert WORDS in codes and ran in codes and ran != WORDS
    texts = " ".join(t.value for t in at.text)
    assert f"{assistant_here} @ local:" in texts and "Taken out by the deny-list: Nike" in texts

    pressable(at, "history_remix").click().run()
    at.switch_page("app_pages/studio.py").run()
    assert any("Generate does it again" in i.value for i in at.info)
    at.button(key="studio_use_ran_prompt").click().run()
    assert at.text_area(key="studio_f_prompt").value == ran and not at.info
    generate_button(at).click().run()
    remix = history.get(at.session_state["studio_job"])
    assert remix.request["prompt"] == ran and remix.request["enhance_prompt"] is False and remix.parent_id == gid
    wait_done(at, remix.id, timeout=120)


def test_the_models_page_edits_the_denylist(data_dir):  # noqa: F811
    at = app("models")
    (area,) = [a for a in at.text_area if a.label.startswith("Words and phrases taken out")]
    area.input("# brands\nNike\nAdidas\n")
    (save,) = [b for b in at.button if b.label == "Save the deny-list"]
    save.click().run()
    assert any("Deny-list saved: 2 word(s)" in s.value for s in at.success)
    assert user_settings.prompt_denylist().terms == ("nike", "adidas")
    user_settings.denylist_path().unlink()
