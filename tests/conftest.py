"""Shared fixtures: real photos (the lemur copied from shared data, scikit-image's photos)."""

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
def tiny_models(tmp_path_factory) -> dict:
    """Tiny random inpainting UNet/VAE/CLIP, ControlNet and DPT depth model saved as local folders
    (tests/tiny_models.py): {"inpaint": path, "controlnet": path, "depth": path}."""
    from tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))
