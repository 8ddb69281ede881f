"""The records that cross the seams: what a matrix run writes and reports, typed once.

The matrix pipeline (`scene/matrix.py`'s `sketch_matrix`) writes an `OutputFolder` holding a
`Manifest` with one `CellRecord` per finished cell, and reports `MatrixEvent`s while it works;
the backend's worker stores the same `CellRecord`s and a `Progress` per job, and its API serves
them (backend/schemas.py builds its HTTP models from these records' fields, or carries the
record itself; tests/test_api_records.py holds the models written out to them). Each record
reads and writes its JSON form (`to_dict` / `from_dict`), so manifest.json, the job store and
the Ray transport carry one schema, spelled here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SketchConfig, StepCounts, step_counts

#: Version of manifest.json's layout: 2 added `preset`, per-layer losses, expected stroke
#: counts, `pieces` beside `strokes`, `model.precision` and this field.
MANIFEST_SCHEMA_VERSION = 2

@dataclass(frozen=True)
class Layout:
    """The shape of a job's matrix: rows (the fidelity row 0 and the simplicity rows), the
    CLIP layers of its columns, and whether it is planned as two regions."""

    rows: int
    layers: tuple[int, ...]
    split: bool

    @classmethod
    def of(cls, config: SketchConfig) -> Layout:
        return cls(config.simplicity_rows + 1, tuple(config.layers), config.split)

    @property
    def cells_total(self) -> int:
        return self.rows * len(self.layers)

    def planned_regions(self) -> list[str]:
        """The region labels the layout plans (a run may fall back to one, see Manifest)."""
        return ["background", "foreground"] if self.split else ["scene"]

    def to_dict(self) -> dict:
        return {"rows": self.rows, "layers": list(self.layers), "split": self.split}

    @classmethod
    def from_dict(cls, values: dict) -> Layout:
        return cls(int(values["rows"]), tuple(int(layer) for layer in values["layers"]),
                   bool(values["split"]))


class OutputFolder:
    """The files of one matrix in its folder, by name; all SVGs in the input image's px.

        manifest.json                   every cell, its files, counts, losses; notices; timings
        cells/r{row}_L{layer}.svg       combined: background cut at the object outline + object
        cells/r{row}_L{layer}.{part}.svg   each region alone (foreground; background as cut)
        cells/r{row}_L{layer}.png       the combined cell rasterised
        grid.png                        overview of the matrix with row/column labels
        mask.png, attention_{region}.png, target_{region}.png   for inspection

    Names are relative to the folder (as the manifest records them); `path` resolves one.
    """

    MANIFEST = "manifest.json"
    GRID = "grid.png"
    MASK = "mask.png"
    CELLS = "cells"
    #: What a run writes (and an interrupted write's leftovers), for replacing earlier results.
    PATTERNS = (MANIFEST, GRID, MASK, "target_*.png", "attention_*.png", "cells/r*_L*.svg",
                "cells/r*_L*.png", ".*.part", "cells/.*.part")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    @staticmethod
    def attention(region: str) -> str:
        return f"attention_{region}.png"

    @staticmethod
    def target(region: str) -> str:
        return f"target_{region}.png"

    @classmethod
    def region_svg(cls, row: int, layer: int, label: str) -> str:
        return f"{cls.CELLS}/r{row}_L{layer}.{label}.svg"

    @classmethod
    def cell_files(cls, row: int, layer: int, split: bool) -> dict[str, str]:
        """The files of cell (row, layer) by part ("combined", "png", and for a split one its
        "foreground" and "background")."""
        stem = f"{cls.CELLS}/r{row}_L{layer}"
        files = {"combined": f"{stem}.svg", "png": f"{stem}.png"}
        if split:
            files.update({label: cls.region_svg(row, layer, label)
                          for label in ("foreground", "background")})
        return files

    def read_manifest(self) -> Manifest | None:
        """The manifest as last written, or None before the first cell (or if unreadable)."""
        try:
            return Manifest.from_dict(json.loads(self.path(self.MANIFEST).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Preset:
    """The preset of a run: the one asked for ("auto" included), the one that runs, and its
    training steps (`StepCounts`)."""

    requested: str
    ran: str
    steps: StepCounts

    @classmethod
    def of(cls, config: SketchConfig, regions: Iterable[str] | None = None) -> Preset:
        """The preset `config` runs, sketching `regions` (by default those it plans)."""
        return cls(config.preset_requested, config.preset, step_counts(config, regions))

    def to_dict(self) -> dict:
        return {"requested": self.requested, "ran": self.ran, "steps": self.steps.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> Preset:
        return cls(str(values["requested"]), str(values["ran"]), StepCounts.from_dict(values["steps"]))


@dataclass(frozen=True)
class Timings:
    """How long a finished run took, in seconds, and its training steps (the draft pass's
    included). A figure an earlier version did not write (`drafts_s`) reads as 0."""

    preparation_s: float = 0.0
    drafts_s: float = 0.0
    training_s: float = 0.0
    total_s: float = 0.0
    steps: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Timings:
        return cls(**_known(cls, values))


@dataclass(frozen=True)
class ModelInfo:
    """The CLIP a run used: its model, weights (a file, a tag, or "random"), whether they
    depict anything (`meaningful`: false for random weights), the device, the precision it
    ran in and how that was chosen (`models.precision.PrecisionChoice`'s dict). Fields an
    earlier manifest lacks read as None."""

    clip: str | None = None
    weights: str | None = None
    meaningful: bool | None = None
    device: str | None = None
    precision: str | None = None
    precision_choice: dict | None = None

    #: What decides the strokes (not, e.g., how a precision choice was measured): two runs
    #: whose `decisive` fields differ draw different cells.
    DECISIVE = ("clip", "weights", "meaningful", "device", "precision")

    def decisive(self) -> dict:
        return {name: getattr(self, name) for name in self.DECISIVE}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelInfo:
        return cls(**_known(cls, values))


@dataclass(frozen=True)
class Drafts:
    """The draft pass of a progressive run (sketch/progressive.py): the fraction of the
    training steps it drew with, and its steps."""

    fraction: float
    steps: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Drafts:
        return cls(float(values["fraction"]), int(values["steps"]))


@dataclass
class CellRecord:
    """One finished cell of the matrix.

    files: part -> file name in the OutputFolder; strokes: per group (scene, or background
    and foreground) the strokes drawn in the cell, the same in the combined file's group and
    in that part's own file (a background stroke cut in pieces at the object outline counts
    once; one wholly under the object is gone); pieces: the paths after that cut; regions:
    per region label, how its sketch was made (strokes it kept, losses, seed, chosen step, …).
    """

    row: int
    layer: int
    column: int
    files: dict[str, str]
    strokes: dict[str, int]
    pieces: dict[str, int] = field(default_factory=dict)
    regions: dict[str, dict] = field(default_factory=dict)
    #: A draft: an early, rough version of the cell (progressive.py); its final cell
    #: replaces it (same files, this false) when the training reaches it.
    draft: bool = False

    @property
    def stroke_total(self) -> int:
        return sum(self.strokes.values())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> CellRecord:
        """A cell as stored; one written before schema 2 has no `pieces`."""
        return cls(**_known(cls, values))


@dataclass
class Manifest:
    """manifest.json: what the matrix is, how it was made, and its cells so far."""

    layers: list[int]
    rows: int
    regions: list[str]
    image: dict = field(default_factory=dict)
    frame: dict = field(default_factory=dict)
    model: ModelInfo = field(default_factory=ModelInfo)
    #: None in a manifest written before schema 2.
    preset: Preset | None = None
    preprocessing: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    cells: list[CellRecord] = field(default_factory=list)
    grid: str | None = None
    timings: Timings | None = None
    #: The draft pass, when the run drew one.
    drafts: Drafts | None = None
    kind: str = "clipascene-matrix"
    schema_version: int = MANIFEST_SCHEMA_VERSION

    @property
    def cells_total(self) -> int:
        return self.rows * len(self.layers)

    @property
    def cells_done(self) -> int:
        """Final cells (drafts not counted)."""
        return sum(not cell.draft for cell in self.cells)

    @property
    def split(self) -> bool:
        """Whether the run drew two regions (a split may fall back to one scene)."""
        return self.regions != ["scene"]

    def to_dict(self) -> dict:
        values: dict[str, Any] = {
            "kind": self.kind, "schema_version": self.schema_version, "image": self.image,
            "frame": self.frame, "model": self.model.to_dict(),
            "preset": self.preset.to_dict() if self.preset is not None else {},
            "layers": list(self.layers), "rows": self.rows, "regions": self.regions,
            "preprocessing": self.preprocessing, "notices": self.notices,
            "cells_total": self.cells_total, "cells_done": self.cells_done,
            "cells": [cell.to_dict() for cell in self.cells],
            "parameters": self.parameters, "versions": self.versions, "command": self.command,
        }
        if self.grid is not None:
            values["grid"] = self.grid
        if self.timings is not None:
            values["timings"] = self.timings.to_dict()
        if self.drafts is not None:
            values["drafts"] = self.drafts.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> Manifest:
        """A manifest as written, by this version or an earlier one (fields it lacks keep
        their defaults; cells_total and cells_done follow from layers, rows and cells)."""
        known = _known(cls, values)
        known.setdefault("schema_version", 1)  # the first layout had no version field
        known["cells"] = [CellRecord.from_dict(cell) for cell in known.get("cells", [])]
        known["model"] = ModelInfo.from_dict(known.get("model") or {})
        known["preset"] = Preset.from_dict(known["preset"]) if known.get("preset") else None
        known["timings"] = Timings.from_dict(known["timings"]) if known.get("timings") else None
        known["drafts"] = Drafts.from_dict(known["drafts"]) if known.get("drafts") else None
        return cls(**known)


@dataclass
class Progress:
    """A job's progress as its run reports it: the stage ("preprocessing", "fidelity",
    "simplicity", "done", …), the fraction of its training steps done, and the run's own
    estimate of the seconds left (None until it has one)."""

    stage: str | None = None
    fraction: float = 0.0
    steps_done: int | None = None
    steps_total: int | None = None
    eta_s: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Progress:
        return cls(**{item.name: values.get(item.name, item.default)
                      for item in dataclasses.fields(cls)})


def _known(cls, values: dict) -> dict:
    """The values of a record's fields in `values` (other keys ignored)."""
    return {item.name: values[item.name] for item in dataclasses.fields(cls) if item.name in values}


# --- what sketch_matrix reports while it works ------------------------------------------------

@dataclass(frozen=True)
class StageEvent:
    """A stage began ("preprocessing", "training", "done", or a runner's own, e.g. waiting
    for a cluster)."""

    stage: str


@dataclass(frozen=True)
class NoticeEvent:
    """A sentence for the user (a fallback taken, random weights, a retry)."""

    text: str


@dataclass(frozen=True)
class ProgressEvent:
    """Training progress after a step: steps done of steps in all, and the current stage."""

    stage: str
    steps_done: int
    steps_total: int

    @property
    def fraction(self) -> float:
        return self.steps_done / max(self.steps_total, 1)


@dataclass(frozen=True)
class CellEvent:
    """A cell is written, final or a draft (cell.draft): its files are written and the
    manifest lists it."""

    cell: CellRecord


MatrixEvent = StageEvent | NoticeEvent | ProgressEvent | CellEvent

