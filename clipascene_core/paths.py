"""Where the project keeps its data: model weights, caches, backend jobs."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "clipascene"


def data_dir() -> Path:
    """The data folder: $CLIPASCENE_DATA_DIR, else the platform's user data folder."""
    override = os.environ.get("CLIPASCENE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def models_dir() -> Path:
    """Model weights: $CLIPASCENE_MODELS_DIR, else models/ in the data folder."""
    override = os.environ.get("CLIPASCENE_MODELS_DIR")
    return Path(override).expanduser() if override else data_dir() / "models"
