"""The model weights CLIPascene uses: where they come from and where they live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..paths import models_dir


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file.

    name: the registry key; role: what it is for, in the user's words; size: bytes (approximate
    where the source does not state it); md5: the published checksum, or None.
    """

    name: str
    role: str
    filename: str
    url: str
    size: int
    md5: str | None
    required: bool

    def path(self, directory: Path | None = None) -> Path:
        return (directory or models_dir()) / self.filename

    def present(self, directory: Path | None = None) -> bool:
        return self.path(directory).is_file()


U2NET = WeightsFile(
    name="u2net",
    role="foreground mask (U²-Net saliency, ONNX)",
    filename="u2net.onnx",
    url="https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",
    size=175_997_641,
    md5="60024c5c889badc19c04ad937298a77b",
    required=False,
)
LAMA = WeightsFile(
    name="big-lama",
    role="background inpainting (LaMa big-lama, TorchScript)",
    filename="big-lama.pt",
    url="https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
    size=205_669_692,
    md5="e3aa4aaa15225a33ec84f9f4bc47e500",
    required=False,
)

#: Optional weights by registry name. CLIP is fetched through open_clip (see models.load_clip).
WEIGHTS = {entry.name: entry for entry in (U2NET, LAMA)}
