"""Which model weights this machine has, for /v1/health and the extension's messages."""

from __future__ import annotations

from pathlib import Path

from clipascene_core.paths import models_dir
from clipascene_core.registry import WEIGHTS

from .worker import ModelSettings

#: Folder name the Hugging Face cache gives OpenAI's ViT-B/32 as open_clip fetches it.
CLIP_CACHE_NAME = "models--timm--vit_base_patch32_clip_224.openai"


def clip_weights_present(folder: Path) -> bool:
    snapshots = folder / CLIP_CACHE_NAME / "snapshots"
    return snapshots.is_dir() and any(path.is_file() for path in snapshots.rglob("*"))


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
