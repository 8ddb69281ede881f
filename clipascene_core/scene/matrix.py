"""The whole CLIPascene matrix: fidelity columns x simplicity rows, foreground and background.

`sketch_matrix` plans the run (`plan_matrix`: preprocessing, targets, the columns' tasks),
then trains every cell of both regions in one batched engine (`run_plan`), and writes each
cell the moment it is final (atomically) into its `records.OutputFolder`, updating the
`records.Manifest` there.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..config import SketchConfig, config_dict, region_label
from ..io.frames import Affine2D, CanvasFrame
from ..io.images import InputImage, load_image, to_canvas_tensor
from ..io.outputs import atomic_write_bytes, atomic_write_json, atomic_write_png
from ..io.records import (
    CellEvent,
    CellRecord,
    Drafts,
    Manifest,
    MatrixEvent,
    ModelInfo,
    NoticeEvent,
    OutputFolder,
    Preset,
    ProgressEvent,
    StageEvent,
    Timings,
)
from ..models.clip import ClipEncoder
from ..sketch.column import ColumnChain
from ..sketch.engine import CellSketch, Engine, Progress
from ..sketch.fidelity import loss_terms
from ..sketch.progressive import DRAFT_FRACTION, draft_columns, draft_config, run_drafts, wants_drafts
from ..sketch.seeding import initialise_strokes, saliency_map
from ..sketch.strokes import StrokeSet, svg_document
from ..sketch.targets import TargetBank
from ..version import __version__
from .compose import cut_strokes, trim_to_frame

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS_NOTICE = (
    "CLIP ran with random weights: these sketches only exercise the mechanics and do not "
    "depict the image."
)


@dataclass
class RegionPlan:
    """One region's target and how its canvas maps to the input image.

    to_image: canvas px of this region -> input image px; width_scale:
    canvas px -> input px for stroke widths: the scene canvas's scale for every region, so a
    re-framed object's lines keep the weight they were drawn with, like the background's
    (the reference maps the object's points back, not its widths).
    """

    name: str
    target: torch.Tensor
    to_image: Affine2D
    width_scale: float
    attention: torch.Tensor | None = None
    sampling: torch.Tensor | None = None


@dataclass
class MatrixState:
    """Finished sketches by (region, row, layer) as StrokeSets in the input image's pixel
    frame (mapped from each region's canvas) with their details, and the cells written by
    (row, layer)."""

    sketches: dict[tuple[str, int, int], tuple[StrokeSet, dict]] = field(default_factory=dict)
    cells: dict[tuple[int, int], CellRecord] = field(default_factory=dict)


def _save_map(path: Path, values: torch.Tensor | np.ndarray) -> None:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    array = np.clip(array.astype(np.float64), 0, 1)
    if array.ndim == 3:
        array = np.transpose(array, (1, 2, 0))
    atomic_write_png(path, Image.fromarray((array * 255 + 0.5).astype(np.uint8)))


def versions() -> dict[str, str]:
    import open_clip

    return {"clipascene": __version__, "torch": torch.__version__,
            "open_clip": open_clip.__version__, "python": platform.python_version()}


class MatrixWriter:
    """Writes cells into the output folder as they become final, and the manifest after each."""

    def __init__(self, folder: OutputFolder, frame: CanvasFrame, config: SketchConfig,
                 regions: dict[str, RegionPlan], outline: list[np.ndarray] | None,
                 manifest: Manifest, on_event: Callable[[MatrixEvent], None] | None) -> None:
        self.folder = folder
        self.frame = frame
        self.config = config
        self.regions = regions
        self.outline = outline
        self.manifest = manifest
        self.on_event = on_event
        self.state = MatrixState()
        #: Cells written now are drafts (progressive.py), replaced by the final ones later.
        self.drafting = False
        folder.path(OutputFolder.CELLS).mkdir(parents=True, exist_ok=True)

    def image_strokes(self, region: str, points: np.ndarray, keep: np.ndarray,
                      widths: np.ndarray) -> StrokeSet:
        """The kept strokes in the image frame, each at its width (a fraction of the base
        width: 1 in row 0, the stroke's keep sample in the simplified rows)."""
        plan = self.regions[region]
        names = [f"stroke-{index}" for index in np.flatnonzero(keep)]
        # Trimmed at the image's edges, so every consumer gets what the thumbnails show.
        return trim_to_frame(StrokeSet(
            plan.to_image.apply(points[keep]),
            self.config.stroke_width * plan.width_scale * np.asarray(widths)[keep],
            self.frame.image_width, self.frame.image_height, names))

    def add(self, sketch: CellSketch) -> None:
        """A region's sketch of a cell is final: write it, and the cell once every region's is."""
        region, row, layer = sketch.region, sketch.row, sketch.layer
        known = self.state.cells.get((row, layer))
        if self.drafting and known is not None and not known.draft:
            return  # a final cell (of a resumed run, resume.py) is never replaced by a draft
        strokes = self.image_strokes(region, sketch.points, sketch.keep, sketch.widths)
        if region == "background" and self.outline:
            # The background as the cell shows it, cut exactly at the object's outline: the
            # background-alone file, the combined file's group and the counts hold the same
            # strokes, whichever strokes the outline happens to cross or cover.
            strokes = cut_strokes(strokes, self.outline)
        self.state.sketches[(region, row, layer)] = (strokes, sketch.details())
        if region != "scene":
            label = region_label(region)
            strokes.write_svg(self.folder.path(OutputFolder.region_svg(row, layer, label)),
                              group_id=label)
        if all((name, row, layer) in self.state.sketches for name in self.regions):
            self._write_cell(row, layer)

    def _write_cell(self, row: int, layer: int) -> None:
        per_region = {name: self.state.sketches[(name, row, layer)] for name in self.regions}
        groups = []
        if "scene" in per_region:
            groups.append(("scene", per_region["scene"][0]))
        else:
            groups += [("background", per_region["background"][0]),
                       ("foreground", per_region["object"][0])]
        files = OutputFolder.cell_files(row, layer, split="scene" not in per_region)
        atomic_write_bytes(self.folder.path(files["combined"]),
                           svg_document(self.frame.image_width, self.frame.image_height,
                                        groups).encode())
        combined = StrokeSet.merged([strokes for _, strokes in groups], self.frame.image_width,
                                    self.frame.image_height)
        combined.write_png(self.folder.path(files["png"]))
        cell = CellRecord(
            row=row, layer=layer, column=self.config.layers.index(layer), files=files,
            # Strokes, not cut pieces: a background stroke cut at the object outline counts
            # once, so counts never exceed what was asked and never grow down a column.
            strokes={name: strokes.stroke_count for name, strokes in groups},
            pieces={name: len(strokes) for name, strokes in groups},
            regions={region_label(name): details for name, (_, details) in per_region.items()},
            draft=self.drafting,
        )
        self.state.cells[(row, layer)] = cell
        self.manifest.cells = [self.state.cells[key] for key in sorted(self.state.cells)]
        self.write_manifest()
        if self.on_event is not None:
            self.on_event(CellEvent(cell))

    def end_drafts(self) -> None:
        """The drafts are written: what follows is final (each final cell replaces its draft)."""
        self.state.sketches.clear()
        self.drafting = False

    def write_manifest(self) -> None:
        atomic_write_json(self.folder.path(OutputFolder.MANIFEST), self.manifest.to_dict())

    def write_grid(self, thumb: int = 192) -> None:
        rows = self.config.simplicity_rows + 1
        columns = len(self.config.layers)
        label_w, label_h, pad = 110, 28, 6
        scale = thumb / max(self.frame.image_width, self.frame.image_height)
        cell_w = max(1, round(self.frame.image_width * scale))
        cell_h = max(1, round(self.frame.image_height * scale))
        sheet = Image.new("L", (label_w + columns * (cell_w + pad), label_h + rows * (cell_h + pad)), 235)
        draw = ImageDraw.Draw(sheet)
        for column, layer in enumerate(self.config.layers):
            draw.text((label_w + column * (cell_w + pad) + 4, 8), f"fidelity: layer {layer}", fill=0)
        for row in range(rows):
            top = label_h + row * (cell_h + pad)
            draw.text((6, top + cell_h // 2 - 6), "fidelity sketch" if row == 0 else f"simplicity {row}",
                      fill=0)
            for column, layer in enumerate(self.config.layers):
                left = label_w + column * (cell_w + pad)
                cell = self.state.cells.get((row, layer))
                if cell is None:
                    continue
                # The cell's own PNG: already rendered, and showing the background as cut.
                with Image.open(self.folder.path(cell.files["png"])) as rendered:
                    sheet.paste(rendered.convert("L").resize((cell_w, cell_h), Image.LANCZOS),
                                (left, top))
                caption = f"{cell.stroke_total} strokes"
                box = draw.textbbox((left + 4, top + cell_h - 14), caption)
                # On a white box, so the caption stays readable over the strokes.
                draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=255)
                draw.text((left + 4, top + cell_h - 14), caption, fill=60)
        atomic_write_png(self.folder.path(OutputFolder.GRID), sheet)


def plan_regions(source: InputImage, config: SketchConfig, device: torch.device, *,
                 models_dir: Path | None, user_mask: Path | None,
                 notices: list[str]) -> tuple[dict[str, RegionPlan], list[np.ndarray] | None, dict]:
    """Targets of the regions to sketch, their frames, the object outline, and split facts."""
    frame = source.frame
    if not config.split:
        target = to_canvas_tensor(source.pixels, config.canvas_size).to(device)
        scene = RegionPlan("scene", target, frame.canvas_to_image, frame.scale)
        return {"scene": scene}, None, {"split": False}
    from .compose import mask_outline
    from .split import background_target, foreground_target, split_scene

    split = split_scene(source, models_dir=models_dir, user_mask=user_mask, device=device)
    notices.extend(split.notices)
    info = {"split": True, "mask_method": split.mask_method, "inpaint_method": split.inpaint_method,
            "reframed": split.reframed, "mask": split.mask}
    if not split.mask.any():
        notices.append("No foreground object was found: the image is sketched as one region.")
        target = to_canvas_tensor(source.pixels, config.canvas_size).to(device)
        info["split"] = False
        return {"scene": RegionPlan("scene", target, frame.canvas_to_image, frame.scale)}, None, info
    object_frame = split.object_frame
    regions = {
        "background": RegionPlan("background", background_target(split).to(device),
                                 frame.canvas_to_image, frame.scale),
        "object": RegionPlan("object", foreground_target(split, frame).to(device),
                             object_frame.then(frame.canvas_to_image), frame.scale),
    }
    outline = mask_outline(split.mask, frame.image_width, frame.image_height)
    info["object_frame"] = {"scale": object_frame.scale, "tx": object_frame.tx, "ty": object_frame.ty}
    return regions, outline, info


@dataclass
class MatrixPlan:
    """A matrix ready to train: its regions, one chain per (region, layer) column, the
    target bank they share, and the writer holding the output folder and the manifest."""

    config: SketchConfig
    encoder: ClipEncoder
    regions: dict[str, RegionPlan]
    columns: list[ColumnChain]
    bank: TargetBank
    writer: MatrixWriter
    started: float
    #: A resumed run's (resume.py): region sketches final before it, of cells still to
    #: write, added before the final pass; and what to call with each final sketch after
    #: the writer (its checkpoint).
    restored: list[CellSketch] = field(default_factory=list)
    checkpoint: Callable[[CellSketch], None] | None = None

    @property
    def manifest(self) -> Manifest:
        return self.writer.manifest

    def tasks(self):
        """The tasks the training starts with (each column's fidelity runs)."""
        return [task for column in self.columns for task in column.tasks()]

    @property
    def steps(self) -> int:
        return sum(column.steps for column in self.columns)


def plan_matrix(
    image: str | Path | InputImage,
    out_dir: str | Path,
    config: SketchConfig,
    encoder: ClipEncoder,
    *,
    models_dir: Path | None = None,
    user_mask: Path | None = None,
    on_event: Callable[[MatrixEvent], None] | None = None,
    image_name: str | None = None,
) -> MatrixPlan:
    """Preprocess `image` (the split, targets, saliency, initial strokes) into `out_dir`
    and plan its matrix; see `sketch_matrix`."""
    started = time.perf_counter()
    emit = on_event or (lambda _event: None)
    source = image if isinstance(image, InputImage) else load_image(image)
    folder = OutputFolder(out_dir)
    device = next(encoder.buffers()).device
    frame = source.frame
    notices = [] if encoder.info.meaningful else [RANDOM_WEIGHTS_NOTICE]

    emit(StageEvent("preprocessing"))
    regions, outline, split_info = plan_regions(source, config, device, models_dir=models_dir,
                                                user_mask=user_mask, notices=notices)
    for notice in notices:
        emit(NoticeEvent(notice))
    folder.root.mkdir(parents=True, exist_ok=True)
    if split_info.get("mask") is not None:
        _save_map(folder.path(OutputFolder.MASK), split_info.pop("mask").astype(np.float64))

    columns: list[ColumnChain] = []
    for name, plan in regions.items():
        plan.attention, plan.sampling = saliency_map(encoder, plan.target)
        _save_map(folder.path(OutputFolder.attention(name)), plan.attention)
        _save_map(folder.path(OutputFolder.target(name)), plan.target)
        initial = {seed: initialise_strokes(plan.sampling, config.strokes, seed, config.init_temperature,
                                            config.init_step) for seed in config.seeds}
        columns += [ColumnChain(name, layer, initial, config, device) for layer in config.layers]
    layers_needed = {name: {layer for column in config.layers
                            for layer, _ in loss_terms(config, name, column)} for name in regions}
    bank = TargetBank(encoder, {name: plan.target for name, plan in regions.items()}, layers_needed,
                      config.augmentations, config.augment_pool,
                      torch.Generator().manual_seed(min(config.seeds)),
                      config.perspective_distortion, config.crop_scale)

    manifest = Manifest(
        image={"file": image_name or (None if isinstance(image, InputImage) else Path(image).name),
               "width": frame.image_width, "height": frame.image_height, "format": source.format},
        frame={"svg_units": "input image pixels", "canvas_size": frame.canvas_size,
               "canvas_scale": frame.scale, "canvas_offset": list(frame.offset)},
        model=ModelInfo(encoder.info.model, encoder.info.weights, encoder.info.meaningful,
                        str(device), encoder.precision, encoder.precision_choice.to_dict()),
        preset=Preset.of(config, regions),
        layers=list(config.layers), rows=config.simplicity_rows + 1,
        regions=[region_label(name) for name in regions], preprocessing=split_info,
        notices=notices, parameters=config_dict(config), versions=versions(),
        command=" ".join(sys.argv),
    )
    writer = MatrixWriter(folder, frame, config, regions, outline, manifest, on_event)
    return MatrixPlan(config, encoder, regions, columns, bank, writer, started)


def run_plan(plan: MatrixPlan, *, on_event: Callable[[MatrixEvent], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Manifest:
    """Train a planned matrix to its end, writing each cell as it becomes final; returns the
    final manifest. Raises engine.Cancelled when should_stop()."""
    emit = on_event or (lambda _event: None)
    prepared = time.perf_counter()
    device = next(plan.encoder.buffers()).device
    before, drafted = 0, prepared  # the draft pass's steps, and when it ended
    if wants_drafts(plan.config, device):
        emit(StageEvent("drafts"))
        settings = draft_config(plan.config)
        drafts = draft_columns(plan.columns, settings, device)
        before = sum(column.steps for column in drafts)
        plan.manifest.drafts = Drafts(DRAFT_FRACTION, before)
        plan.writer.drafting = True
        run_drafts(plan.encoder, plan.bank, drafts, settings, plan.writer.add,
                   lambda done, _total: emit(ProgressEvent("drafts", done, before + plan.steps)),
                   should_stop)
        plan.writer.end_drafts()
        drafted = time.perf_counter()
    emit(StageEvent("training"))
    for sketch in plan.restored:
        plan.writer.add(sketch)
    tasks = plan.tasks()

    def settle(sketch: CellSketch) -> None:
        plan.writer.add(sketch)
        if plan.checkpoint is not None:
            plan.checkpoint(sketch)

    def progress(report: Progress) -> None:
        emit(ProgressEvent(report.stage, before + report.steps_done, before + report.steps_total))

    Engine.for_config(plan.encoder, plan.bank, plan.config).run(
        tasks, on_sketch=settle, on_progress=progress, should_stop=should_stop,
        extra_steps=plan.steps - sum(task.total_steps for task in tasks))
    plan.writer.write_grid()
    manifest = plan.manifest
    manifest.grid = OutputFolder.GRID
    manifest.timings = Timings(
        preparation_s=round(prepared - plan.started, 3),
        drafts_s=round(drafted - prepared, 3),
        training_s=round(time.perf_counter() - drafted, 3),
        total_s=round(time.perf_counter() - plan.started, 3),
        steps=plan.steps,
    )
    plan.writer.write_manifest()
    emit(StageEvent("done"))
    return manifest


def sketch_matrix(image: str | Path | InputImage, out_dir: str | Path, config: SketchConfig,
                  encoder: ClipEncoder, *, on_event: Callable[[MatrixEvent], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, **planning) -> Manifest:
    """Sketch the full matrix of `image` into `out_dir`; returns the final manifest.

    Cells are written as they become final; the manifest is rewritten atomically after each
    one, so a reader always sees complete files. Raises engine.Cancelled when should_stop().
    planning: `plan_matrix`'s models_dir, user_mask (a drawn object mask) and image_name
    (the file name the manifest records when `image` is already loaded).
    """
    plan = plan_matrix(image, out_dir, config, encoder, on_event=on_event, **planning)
    return run_plan(plan, on_event=on_event, should_stop=should_stop)
