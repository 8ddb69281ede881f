"""From an image file to sketch files: the fidelity row (one full sketch per CLIP layer)."""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import __version__
from .config import SketchConfig, config_dict
from .engine import Progress
from .fidelity import FidelityCell, FidelityResult, loss_terms, train_fidelity
from .files import atomic_write_bytes, atomic_write_json
from .imageio import CanvasFrame, InputImage, load_image, to_canvas_tensor
from .init import initialise_strokes, saliency_map
from .models import ClipEncoder
from .strokes import StrokeSet
from .targets import TargetBank

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = (
    "CLIP ran with random weights: these sketches only exercise the mechanics and do not "
    "depict the image."
)


@dataclass
class ColumnSketch:
    """The chosen (best-seed) fidelity sketch of one layer, in the image frame."""

    layer: int
    strokes: StrokeSet
    result: FidelityResult


def fidelity_cells(
    config: SketchConfig, region: str, sampling_map: torch.Tensor
) -> list[FidelityCell]:
    """One cell per (layer, seed); a seed's initial strokes are shared by its layers."""
    initial = {
        seed: initialise_strokes(
            sampling_map, config.strokes, seed, config.init_temperature, config.init_step
        )
        for seed in config.seeds
    }
    return [
        FidelityCell(region, layer, seed, initial[seed], config.fidelity_iterations(region, layer))
        for layer in config.layers
        for seed in config.seeds
    ]


def best_per_layer(results: list[FidelityResult]) -> dict[int, FidelityResult]:
    """For each layer, the seed whose best clean loss is lowest (the reference keeps the best)."""
    chosen: dict[int, FidelityResult] = {}
    for result in results:
        current = chosen.get(result.cell.layer)
        if current is None or result.best_loss < current.best_loss:
            chosen[result.cell.layer] = result
    return chosen


def to_image_strokes(result: FidelityResult, frame: CanvasFrame, stroke_width: float) -> StrokeSet:
    """A result's on-canvas strokes mapped to the input image's pixel frame."""
    keep = result.on_canvas
    names = [f"stroke-{index}" for index in np.flatnonzero(keep)]
    return StrokeSet(
        frame.to_image(result.points[keep]),
        frame.width_to_image(stroke_width),
        frame.image_width,
        frame.image_height,
        names,
    )


def _save_map(path: Path, values: torch.Tensor) -> None:
    import io

    array = (values.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def versions() -> dict[str, str]:
    import open_clip

    return {
        "clipascene": __version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
    }


def sketch_fidelity_row(
    image: str | Path | InputImage,
    out_dir: str | Path,
    config: SketchConfig,
    encoder: ClipEncoder,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Sketch the whole image once per fidelity layer; write SVG, PNG and manifest.json.

    Files appear in `out_dir` only once training has finished, each written atomically, the
    manifest last. Returns the manifest.
    """
    started = time.perf_counter()
    source = image if isinstance(image, InputImage) else load_image(image)
    out_dir = Path(out_dir)
    device = next(encoder.buffers()).device
    frame = source.frame
    target = to_canvas_tensor(source.pixels, config.canvas_size).to(device)

    attention, sampling = saliency_map(encoder, target)
    cells = fidelity_cells(config, "scene", sampling)
    layers_needed = {layer for cell in cells
                     for layer, _ in loss_terms(config, cell.region, cell.layer)}
    generator = torch.Generator().manual_seed(min(config.seeds))
    bank = TargetBank(
        encoder, {"scene": target}, {"scene": layers_needed}, config.augmentations,
        config.augment_pool, generator, config.perspective_distortion, config.crop_scale,
    )
    prepared = time.perf_counter()
    results = train_fidelity(encoder, bank, cells, config, on_progress, should_stop)
    trained = time.perf_counter()

    columns = []
    for layer in config.layers:
        result = best_per_layer(results)[layer]
        strokes = to_image_strokes(result, frame, config.stroke_width)
        stem = f"fidelity_L{layer}"
        strokes.write_svg(out_dir / f"{stem}.svg", group_id="scene")
        strokes.write_png(out_dir / f"{stem}.png")
        columns.append({
            "layer": layer,
            "svg": f"{stem}.svg",
            "png": f"{stem}.png",
            "strokes": len(strokes),
            "dropped_off_canvas": int((~result.on_canvas).sum()),
            "seed": result.cell.seed,
            "iterations": result.cell.iterations,
            "initial_loss": result.initial_loss,
            "best_loss": result.best_loss,
            "best_step": result.best_step,
            "eval_losses": [[step, loss] for step, loss in result.eval_losses],
            "seconds": round(result.seconds, 3),
            "seeds_tried": {
                str(other.cell.seed): other.best_loss
                for other in results if other.cell.layer == layer
            },
        })
    _save_map(out_dir / "attention.png", attention)
    _save_map(out_dir / "init_sampling_map.png", sampling / sampling.max().clamp_min(1e-12))
    warnings = [] if encoder.info.meaningful else [RANDOM_WEIGHTS_WARNING]
    manifest = {
        "kind": "clipascene-fidelity-row",
        "image": {
            "file": Path(image).name if not isinstance(image, InputImage) else None,
            "width": frame.image_width,
            "height": frame.image_height,
            "format": source.format,
        },
        "frame": {
            "svg_units": "input image pixels",
            "canvas_size": frame.canvas_size,
            "canvas_scale": frame.scale,
            "canvas_offset": list(frame.offset),
        },
        "model": {
            "clip": encoder.info.model,
            "weights": encoder.info.weights,
            "meaningful": encoder.info.meaningful,
            "device": str(device),
        },
        "columns": columns,
        "attention_map": "attention.png",
        "warnings": warnings,
        "timings": {
            "preparation_s": round(prepared - started, 3),
            "training_s": round(trained - prepared, 3),
            "total_s": round(time.perf_counter() - started, 3),
            "steps": sum(cell.iterations for cell in cells),
        },
        "parameters": config_dict(config),
        "versions": versions(),
        "command": " ".join(sys.argv),
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest
