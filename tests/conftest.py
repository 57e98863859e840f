"""Shared fixtures: real photos (the lemur copied from shared data, scikit-image's photos), the
synthetic quality set and tiny models."""

import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def lemur_path() -> Path:
    return DATA / "lemur" / "lemur.png"


@pytest.fixture(scope="session")
def lemur_alpha() -> np.ndarray:
    return np.asarray(Image.open(DATA / "lemur" / "lemur_alpha_fba.png").convert("L"))


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    """The synthetic quality set (core/quality/testset.py): NAME.png + NAME_alpha.png with exact truth."""
    from core.quality.testset import build

    folder = tmp_path_factory.mktemp("synthetic")
    build(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """Tiny random inpainting UNet/VAE/CLIP, ControlNet and DPT depth model saved as local folders
    (tests/tiny_models.py): {"inpaint": path, "controlnet": path, "depth": path}."""
    from tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine torch's spinning
    worker threads made these tests 10x slower (measured: 0.4 s vs 5 s CPU per generation)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def inpaint_inputs(astronaut) -> tuple:
    """(photo, repaint mask, depth map) at 96x64 for the generator: a real photo, a rectangle
    kept as the subject, a left-to-right depth ramp."""
    size = (96, 64)
    photo = astronaut.resize(size, Image.Resampling.LANCZOS)
    repaint = Image.new("L", size, 255)
    repaint.paste(0, (30, 10, 70, 64))
    depth = Image.fromarray(np.tile(np.linspace(0, 255, size[0]).astype(np.uint8), (size[1], 1)), "L")
    return photo, repaint, depth


@pytest.fixture(scope="session")
def peft_unet():
    """The tiny UNet's architecture with a random LoRA adapter made by peft (tests/tiny_models.py)."""
    from tiny_models import lora_unet

    return lora_unet()


@pytest.fixture(scope="session")
def tiny_lora_cache(tmp_path_factory, peft_unet) -> Path:
    """A Hugging Face cache holding every fast-mode recipe's LoRA file under its real id
    (tests/tiny_models.py: ``tiny_lora_cache``)."""
    from tiny_models import build_lora_cache

    return build_lora_cache(tmp_path_factory.mktemp("lora-hub"), peft_unet, tmp_path_factory.mktemp("loras"))


@pytest.fixture
def lora_hub(tiny_lora_cache, monkeypatch) -> Path:
    """The tiny LoRAs' cache as this test's Hugging Face cache, offline (other hub ids are missing)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_lora_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tiny_lora_cache


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory) -> str:
    """A tiny random Segment Anything (SamModel + SamProcessor, saved with save_pretrained) as a
    local folder, for core.masks.click_select through the real loader."""
    from tiny_models import build_sam

    return str(build_sam(tmp_path_factory.mktemp("tiny_sam")))


@pytest.fixture(scope="session")
def tiny_prompt_lm(tmp_path_factory) -> str:
    """A tiny random Qwen2 chat model (Qwen2ForCausalLM, its byte-level BPE tokenizer and chat
    template, saved with save_pretrained) as a local folder, for the prompt assistant through the
    real loader."""
    from tiny_models import build_prompt_lm

    return str(build_prompt_lm(tmp_path_factory.mktemp("tiny_prompt_lm")))


@pytest.fixture(autouse=True, scope="session")
def _isolated_data_dir(tmp_path_factory):
    """Generations the tests record (``backdrop replace`` records every one) go to a
    temporary data directory and SQLite, never to ./data or a configured database."""
    patch = pytest.MonkeyPatch()
    patch.setenv("BACKDROP_DATA_DIR", str(tmp_path_factory.mktemp("backdrop-data")))
    patch.delenv("BACKDROP_DATABASE_URL", raising=False)
    yield
    patch.undo()


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection reads the markers
def pytest_collection_modifyitems(items):
    """Tiers found from what a test uses, so a new test cannot land in the fast tier by
    forgetting a marker: ``postgres`` for every test that reaches the PostgreSQL server (directly
    or through a fixture parametrised over the two databases), ``browser`` (and ``slow``) for
    every test whose own source drives Chromium (one that drives it through a helper is marked
    by hand)."""
    for item in items:
        if "postgres_server" in item.fixturenames or "[postgresql" in item.nodeid:
            item.add_marker("postgres")
        if "browser" in item.fixturenames or "playwright" in inspect.getsource(item.obj):
            item.add_marker("browser")
            item.add_marker("slow")


@pytest.fixture(scope="session")
def tiny_taesd(tmp_path_factory) -> str:
    """A tiny random TAESD (AutoencoderTiny, saved with save_pretrained) as a local folder, for
    the live preview's optional decoder through the real loader."""
    from tiny_models import build_taesd

    return str(build_taesd(tmp_path_factory.mktemp("tiny_taesd")))
