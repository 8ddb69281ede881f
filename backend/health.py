"""Which model weights this machine has, for /v1/health and the extension's messages."""

from __future__ import annotations

from pathlib import Path

from clipascene_core.models.clip import clip_weights_present
from clipascene_core.models.downloads import verify
from clipascene_core.models.weights import WEIGHTS, WeightsFile
from clipascene_core.paths import models_dir

from .settings import ModelSettings


def _clip_state(models: ModelSettings, folder: Path) -> str:
    if models.weights == "random":
        return "not needed"
    if models.weights == "openai":
        return "present" if clip_weights_present(folder) else "missing"
    return "present" if Path(models.weights).expanduser().is_file() else "missing"


#: Checksums already verified: (path, size, mtime) -> state, so each file is read once.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _file_state(entry: WeightsFile, folder: Path) -> str:
    """"present" when the file has the registry's size and checksum, "corrupt" when it has
    not (a partial download, another file of that name), "missing" when there is none. The
    checksum is computed once per file version."""
    path = entry.path(folder)
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    if not path.is_file():
        return "missing"
    if stat.st_size != entry.size:
        return "corrupt"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = verify(entry, folder)
    return _VERIFIED[key]


def weights_report(models: ModelSettings) -> dict[str, str]:
    """{weights name: "present" | "missing" | "corrupt" | "not needed"} for the configured
    models."""
    folder = models.models_dir or models_dir()
    report = {"clip": _clip_state(models, folder)}
    for name, entry in WEIGHTS.items():
        report[name] = _file_state(entry, folder)
    return report


def missing_clip_weights(models: ModelSettings) -> str | None:
    """Why no job can run here (CLIP's weights are missing, and without CLIP there is no
    sketch), or None. U²-Net and LaMa are optional: their fallbacks run and say so."""
    folder = models.models_dir or models_dir()
    if _clip_state(models, folder) != "missing":
        return None
    if models.weights == "openai":
        return (f"the CLIP {models.clip_model} OpenAI weights are not in {folder}, so no sketch "
                "can be made. Run `python3 install.py` (or `clipascene models download`) with "
                "internet access, or start the backend with --weights PATH to a local copy.")
    return (f"the CLIP weights file {models.weights} that the backend was started with does not "
            "exist, so no sketch can be made. Restart it with --weights pointing to the file.")
