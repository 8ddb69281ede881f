"""Which model weights this machine has, for /v1/health and the extension's messages."""

from __future__ import annotations

from pathlib import Path

from clipascene_core.models import clip_weights_present
from clipascene_core.paths import models_dir
from clipascene_core.registry import WEIGHTS

from .worker import ModelSettings


def weights_report(models: ModelSettings) -> dict[str, str]:
    """{weights name: "present" | "missing" | "not needed"} for the configured models."""
    folder = models.models_dir or models_dir()
    if models.weights == "random":
        clip = "not needed"
    elif models.weights == "openai":
        clip = "present" if clip_weights_present(folder) else "missing"
    else:
        clip = "present" if Path(models.weights).expanduser().is_file() else "missing"
    report = {"clip": clip}
    for name, entry in WEIGHTS.items():
        report[name] = "present" if entry.present(folder) else "missing"
    return report
