"""The whole CLIPascene matrix: fidelity columns x simplicity rows, foreground and background.

`sketch_matrix` runs preprocessing, then trains every cell of both regions in one batched
engine, and writes each cell the moment it is final (atomically), updating manifest.json.

Output folder layout (all SVGs in the input image's pixel frame):
    manifest.json                      every cell, its files, counts, losses; notices; timings
    cells/r{row}_L{layer}.svg          combined: background cut at the object outline + foreground
    cells/r{row}_L{layer}.foreground.svg, .background.svg   each region alone
    cells/r{row}_L{layer}.png          the combined cell rasterised
    grid.png                           overview of the matrix with row/column labels
    mask.png, attention_{region}.png, target_{region}.png   for inspection
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

from . import __version__
from .config import SketchConfig, config_dict, region_label, step_counts
from .engine import Engine, Progress
from .fidelity import FidelityCell, FidelityResult, FidelityTask, loss_terms
from .files import atomic_write_bytes, atomic_write_json, atomic_write_png
from .imageio import CanvasFrame, InputImage, load_image, to_canvas_tensor
from .init import initialise_strokes, saliency_map
from .models import ClipEncoder
from .simplicity import RowRun, SimplicityColumn
from .strokes import StrokeSet, svg_document
from .targets import TargetBank

logger = logging.getLogger(__name__)

#: Version of manifest.json's layout: 2 added `preset`, per-layer losses, expected stroke
#: counts, `pieces` beside `strokes`, `model.precision` and this field.
MANIFEST_SCHEMA_VERSION = 2

RANDOM_WEIGHTS_NOTICE = (
    "CLIP ran with random weights: these sketches only exercise the mechanics and do not "
    "depict the image."
)


@dataclass
class MatrixEvent:
    """What `sketch_matrix` reports while it works.

    kind: "stage" (text = stage name), "notice" (text = a sentence for the user),
    "progress" (progress = engine Progress), "cell" (cell = the manifest entry now final).
    """

    kind: str
    text: str = ""
    progress: Progress | None = None
    cell: dict | None = None


@dataclass
class RegionPlan:
    """One region's target and how its canvas maps to the input image.

    to_image: canvas px of this region -> input image px (points (..., 2)); width_scale:
    canvas px -> input px for stroke widths: the scene canvas's scale for every region, so a
    re-framed object's lines keep the weight they were drawn with, like the background's
    (the reference maps the object's points back, not its widths).
    """

    name: str
    target: torch.Tensor
    to_image: Callable
    width_scale: float
    attention: torch.Tensor | None = None
    sampling: torch.Tensor | None = None


@dataclass
class MatrixState:
    """Finished sketches by (region, row, layer) as StrokeSets in the input image's pixel
    frame (mapped from each region's canvas), fidelity results by (region, layer), and the
    cells written by (row, layer)."""

    sketches: dict[tuple[str, int, int], dict] = field(default_factory=dict)
    fidelity: dict[tuple[str, int], list[FidelityResult]] = field(default_factory=dict)
    cells: dict[tuple[int, int], dict] = field(default_factory=dict)


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
    """Writes cells as they become final, and the manifest after each one."""

    def __init__(self, out_dir: Path, frame: CanvasFrame, config: SketchConfig,
                 regions: dict[str, RegionPlan], outline: list[np.ndarray] | None,
                 manifest: dict, on_event: Callable[[MatrixEvent], None] | None) -> None:
        self.out_dir = out_dir
        self.frame = frame
        self.config = config
        self.regions = regions
        self.outline = outline
        self.manifest = manifest
        self.on_event = on_event
        self.state = MatrixState()
        (out_dir / "cells").mkdir(parents=True, exist_ok=True)

    def image_strokes(self, region: str, points: np.ndarray, keep: np.ndarray) -> StrokeSet:
        plan = self.regions[region]
        names = [f"stroke-{index}" for index in np.flatnonzero(keep)]
        return StrokeSet(plan.to_image(points[keep]), self.config.stroke_width * plan.width_scale,
                         self.frame.image_width, self.frame.image_height, names)

    def add(self, region: str, row: int, layer: int, points: np.ndarray, keep: np.ndarray,
            details: dict) -> None:
        strokes = self.image_strokes(region, points, keep)
        self.state.sketches[(region, row, layer)] = {"strokes": strokes, "details": details}
        stem = f"r{row}_L{layer}"
        if region != "scene":
            label = region_label(region)
            strokes.write_svg(self.out_dir / "cells" / f"{stem}.{label}.svg", group_id=label)
        if all((name, row, layer) in self.state.sketches for name in self.regions):
            self._write_cell(row, layer)

    def _write_cell(self, row: int, layer: int) -> None:
        stem = f"r{row}_L{layer}"
        per_region = {name: self.state.sketches[(name, row, layer)] for name in self.regions}
        groups = []
        if "scene" in per_region:
            groups.append(("scene", per_region["scene"]["strokes"]))
        else:
            from .compose import cut_strokes

            background = per_region["background"]["strokes"]
            if self.outline:
                background = cut_strokes(background, self.outline)
            groups += [("background", background), ("foreground", per_region["object"]["strokes"])]
        atomic_write_bytes(self.out_dir / "cells" / f"{stem}.svg",
                           svg_document(self.frame.image_width, self.frame.image_height,
                                        groups).encode())
        combined = StrokeSet.merged([strokes for _, strokes in groups], self.frame.image_width,
                                    self.frame.image_height)
        combined.write_png(self.out_dir / "cells" / f"{stem}.png")
        files = {"combined": f"cells/{stem}.svg", "png": f"cells/{stem}.png"}
        if "scene" not in per_region:
            files["foreground"] = f"cells/{stem}.foreground.svg"
            files["background"] = f"cells/{stem}.background.svg"
        cell = {
            "row": row,
            "layer": layer,
            "column": self.config.layers.index(layer),
            "files": files,
            # Strokes, not cut pieces: a background stroke cut at the object outline counts
            # once, so counts never exceed what was asked and never grow down a column.
            "strokes": {name: strokes.stroke_count for name, strokes in groups},
            "pieces": {name: len(strokes) for name, strokes in groups},
            "regions": {
                region_label(name): entry["details"] for name, entry in per_region.items()
            },
        }
        self.state.cells[(row, layer)] = cell
        self.manifest["cells"] = [self.state.cells[key] for key in sorted(self.state.cells)]
        self.manifest["cells_done"] = len(self.state.cells)
        atomic_write_json(self.out_dir / "manifest.json", self.manifest)
        if self.on_event is not None:
            self.on_event(MatrixEvent("cell", cell=cell))

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
                with Image.open(self.out_dir / cell["files"]["png"]) as rendered:
                    sheet.paste(rendered.convert("L").resize((cell_w, cell_h), Image.LANCZOS),
                                (left, top))
                caption = f"{sum(cell['strokes'].values())} strokes"
                box = draw.textbbox((left + 4, top + cell_h - 14), caption)
                # On a white box, so the caption stays readable over the strokes.
                draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=255)
                draw.text((left + 4, top + cell_h - 14), caption, fill=60)
        atomic_write_png(self.out_dir / "grid.png", sheet)


def _by_layer(losses: dict[int, float]) -> dict[str, float]:
    return {str(layer): value for layer, value in losses.items()}


def plan_regions(source: InputImage, config: SketchConfig, device: torch.device, *,
                 models_dir: Path | None, user_mask: Path | None,
                 notices: list[str]) -> tuple[dict[str, RegionPlan], list[np.ndarray] | None, dict]:
    """Targets of the regions to sketch, their frames, the object outline, and split facts."""
    frame = source.frame
    if not config.split:
        target = to_canvas_tensor(source.pixels, config.canvas_size).to(device)
        scene = RegionPlan("scene", target, frame.to_image, frame.scale)
        return {"scene": scene}, None, {"split": False}
    from .compose import mask_outline
    from .preprocess import background_target, foreground_target, split_scene

    split = split_scene(source, models_dir=models_dir, user_mask=user_mask, device=device)
    notices.extend(split.notices)
    info = {"split": True, "mask_method": split.mask_method, "inpaint_method": split.inpaint_method,
            "reframed": split.reframed, "mask": split.mask}
    if not split.mask.any():
        notices.append("No foreground object was found: the image is sketched as one region.")
        target = to_canvas_tensor(source.pixels, config.canvas_size).to(device)
        info["split"] = False
        return {"scene": RegionPlan("scene", target, frame.to_image, frame.scale)}, None, info
    object_frame = split.object_frame
    regions = {
        "background": RegionPlan("background", background_target(split).to(device), frame.to_image,
                                 frame.scale),
        "object": RegionPlan("object", foreground_target(split, frame).to(device),
                             lambda points: frame.to_image(object_frame.apply(points)),
                             frame.scale),
    }
    outline = mask_outline(split.mask, frame.image_width, frame.image_height)
    info["object_frame"] = {"scale": object_frame.scale, "tx": object_frame.tx, "ty": object_frame.ty}
    return regions, outline, info


def sketch_matrix(
    image: str | Path | InputImage,
    out_dir: str | Path,
    config: SketchConfig,
    encoder: ClipEncoder,
    *,
    models_dir: Path | None = None,
    user_mask: Path | None = None,
    on_event: Callable[[MatrixEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    image_name: str | None = None,
) -> dict:
    """Sketch the full matrix of `image` into `out_dir`; returns the final manifest.

    Cells are written as they become final; the manifest is rewritten atomically after each
    one, so a reader always sees complete files. Raises engine.Cancelled when should_stop().
    image_name: the file name the manifest records when `image` is already loaded.
    """
    started = time.perf_counter()

    def emit(kind: str, **values) -> None:
        if on_event is not None:
            on_event(MatrixEvent(kind, **values))

    source = image if isinstance(image, InputImage) else load_image(image)
    out_dir = Path(out_dir)
    device = next(encoder.buffers()).device
    frame = source.frame
    notices = [] if encoder.info.meaningful else [RANDOM_WEIGHTS_NOTICE]

    emit("stage", text="preprocessing")
    regions, outline, split_info = plan_regions(source, config, device, models_dir=models_dir,
                                                user_mask=user_mask, notices=notices)
    for notice in notices:
        emit("notice", text=notice)
    out_dir.mkdir(parents=True, exist_ok=True)
    if split_info.get("mask") is not None:
        _save_map(out_dir / "mask.png", split_info.pop("mask").astype(np.float64))

    cells: list[FidelityCell] = []
    for name, plan in regions.items():
        plan.attention, plan.sampling = saliency_map(encoder, plan.target)
        _save_map(out_dir / f"attention_{name}.png", plan.attention)
        _save_map(out_dir / f"target_{name}.png", plan.target)
        initial = {seed: initialise_strokes(plan.sampling, config.strokes, seed, config.init_temperature,
                                            config.init_step) for seed in config.seeds}
        cells += [FidelityCell(name, layer, seed, initial[seed], config.fidelity_iterations(name, layer))
                  for layer in config.layers for seed in config.seeds]
    layers_needed = {name: {layer for cell in cells if cell.region == name
                            for layer, _ in loss_terms(config, name, cell.layer)} for name in regions}
    bank = TargetBank(encoder, {name: plan.target for name, plan in regions.items()}, layers_needed,
                      config.augmentations, config.augment_pool,
                      torch.Generator().manual_seed(min(config.seeds)),
                      config.perspective_distortion, config.crop_scale)

    manifest = {
        "kind": "clipascene-matrix",
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "image": {"file": image_name or (None if isinstance(image, InputImage) else Path(image).name),
                  "width": frame.image_width, "height": frame.image_height, "format": source.format},
        "frame": {"svg_units": "input image pixels", "canvas_size": frame.canvas_size,
                  "canvas_scale": frame.scale, "canvas_offset": list(frame.offset)},
        "model": {"clip": encoder.info.model, "weights": encoder.info.weights,
                  "meaningful": encoder.info.meaningful, "device": str(device),
                  "precision": encoder.precision},
        "preset": {"requested": config.preset_requested, "ran": config.preset,
                   "steps": step_counts(config, regions)},
        "layers": list(config.layers),
        "rows": config.simplicity_rows + 1,
        "regions": [region_label(name) for name in regions],
        "preprocessing": split_info,
        "notices": notices,
        "cells_total": (config.simplicity_rows + 1) * len(config.layers),
        "cells_done": 0,
        "cells": [],
        "parameters": config_dict(config),
        "versions": versions(),
        "command": " ".join(sys.argv),
    }
    writer = MatrixWriter(out_dir, frame, config, regions, outline, manifest, on_event)
    pending_seeds = {(cell.region, cell.layer): len(config.seeds) for cell in cells}

    def on_finished(result) -> list:
        if isinstance(result, RowRun):
            level, tasks = result.column.receive(result)
            if level is not None:
                writer.add(level.region, level.row, level.layer, level.points, level.keep, {
                    "strokes": level.strokes, "expected_strokes": round(level.expected_strokes, 3),
                    "probability_sum": round(level.probability_sum, 3), "ratio": level.ratio,
                    "clip_loss": level.clip_loss, "layer_losses": _by_layer(level.layer_losses),
                    "sparsity": level.sparsity, "seed": level.seed,
                    "chosen_step": level.chosen_step, "eval_losses": level.eval_losses,
                    "seconds": round(level.seconds, 3)})
            return tasks
        key = (result.cell.region, result.cell.layer)
        writer.state.fidelity.setdefault(key, []).append(result)
        pending_seeds[key] -= 1
        if pending_seeds[key]:
            return []
        tried = writer.state.fidelity[key]
        best = min(tried, key=lambda item: item.best_loss)
        writer.add(best.cell.region, 0, best.cell.layer, best.points, best.on_canvas, {
            "strokes": int(best.on_canvas.sum()),
            "dropped_off_canvas": int((~best.on_canvas).sum()), "seed": best.cell.seed,
            "iterations": best.cell.iterations, "initial_loss": best.initial_loss,
            "clip_loss": best.best_loss, "layer_losses": _by_layer(best.best_layer_losses),
            "best_step": best.best_step,
            "eval_losses": [[step, loss] for step, loss in best.eval_losses],
            "seeds_tried": {str(item.cell.seed): item.best_loss for item in tried},
            "seconds": round(best.seconds, 3)})
        return SimplicityColumn(best, config, device).start()

    emit("stage", text="training")
    prepared = time.perf_counter()
    chain_steps = (len(regions) * len(config.layers) * len(config.seeds) * config.simplicity_rows
                   * config.simplicity_steps)
    Engine.for_config(encoder, bank, config).run(
        [FidelityTask(cell, config, device) for cell in cells], on_finished=on_finished,
        on_progress=lambda progress: emit("progress", progress=progress), should_stop=should_stop,
        extra_steps=chain_steps)
    writer.write_grid()
    manifest["grid"] = "grid.png"
    manifest["timings"] = {
        "preparation_s": round(prepared - started, 3),
        "training_s": round(time.perf_counter() - prepared, 3),
        "total_s": round(time.perf_counter() - started, 3),
        "steps": sum(cell.iterations for cell in cells) + chain_steps,
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    emit("stage", text="done")
    return manifest
