"""Shared fixtures. Nothing here touches the network: weights are tiny and random."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own data folder, so no test sees a user's weights or jobs."""
    monkeypatch.setenv("CLIPASCENE_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def tiny_encoder():
    from clipascene_core.models.clip import load_clip

    return load_clip("tiny-test", "random", "cpu")


def draw_scene(width: int = 160, height: int = 96) -> Image.Image:
    """A small synthetic photo: a dark disc and a bar on a light gradient."""
    gradient = np.linspace(200, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    image = Image.fromarray(np.stack([gradient] * 3, axis=-1), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.2, height * 0.2, width * 0.5, height * 0.8), fill=(40, 60, 90))
    draw.rectangle((width * 0.6, height * 0.3, width * 0.9, height * 0.45), fill=(120, 30, 30))
    return image


@pytest.fixture
def scene_png(tmp_path) -> Path:
    path = tmp_path / "scene.png"
    draw_scene().save(path)
    return path
