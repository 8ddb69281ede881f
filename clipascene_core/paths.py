"""Where the project keeps its data: model weights, caches, backend jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path

APP_NAME = "clipascene"
#: Settings install.py records in the data folder, e.g. {"models_dir": "/data/weights"}.
SETTINGS_FILE = "settings.json"


def data_dir() -> Path:
    """The data folder: $CLIPASCENE_DATA_DIR, else the platform's user data folder."""
    override = os.environ.get("CLIPASCENE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def settings() -> dict:
    try:
        return json.loads((data_dir() / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def models_dir() -> Path:
    """Model weights: $CLIPASCENE_MODELS_DIR, else the folder install.py recorded
    (--weights-dir), else models/ in the data folder."""
    override = os.environ.get("CLIPASCENE_MODELS_DIR") or settings().get("models_dir")
    return Path(override).expanduser() if override else data_dir() / "models"
