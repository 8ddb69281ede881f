"""Shared fixtures. Nothing here touches the network: weights are tiny and random."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.scenes import draw_scene  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own data folder, so no test sees a user's weights or jobs."""
    monkeypatch.setenv("CLIPASCENE_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def tiny_encoder():
    from clipascene_core.models.clip import load_clip

    return load_clip("tiny-test", "random", "cpu")


@pytest.fixture
def scene_png(tmp_path) -> Path:
    path = tmp_path / "scene.png"
    draw_scene().save(path)
    return path
