"""Benchmark of the whole matrix: batched training against the same cells one at a time.

Real ViT-B-32 architecture with random weights (the real compute cost), the preview preset's
structure (3 columns x 8 simplicity rows x 2 regions, 64 strokes), with the step counts
scaled down by --fidelity-steps / --row-steps so that a CPU finishes in minutes; the table
gives the per-step cost and extrapolates the full preview matrix from it.

    .venv/bin/python -m bench.matrix_bench [--fidelity-steps 10] [--row-steps 5] [--write FILE]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from bench.fidelity_bench import machine
from clipascene_core.config import make_config
from clipascene_core.engine import Engine
from clipascene_core.fidelity import FidelityCell, FidelityResult, FidelityTask, loss_terms
from clipascene_core.imageio import load_image
from clipascene_core.init import initialise_strokes, saliency_map
from clipascene_core.matrix import plan_regions
from clipascene_core.models import load_clip, resolve_device
from clipascene_core.simplicity import RowRun, SimplicityColumn
from clipascene_core.targets import TargetBank

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "images" / "chelsea.png"


def _prepare(config, encoder, device):
    if SAMPLE.exists():
        source = load_image(SAMPLE)
    else:
        import sys
        import tempfile

        sys.path.insert(0, str(ROOT))
        from tests.conftest import draw_scene

        path = Path(tempfile.mkdtemp()) / "scene.png"
        draw_scene(451, 300).save(path)
        source = load_image(path)
    notices: list[str] = []
    regions, _, _ = plan_regions(source, config, device, models_dir=None, user_mask=None,
                                 notices=notices)
    cells = []
    for name, plan in regions.items():
        _, sampling = saliency_map(encoder, plan.target)
        points = initialise_strokes(sampling, config.strokes, 0)
        cells += [FidelityCell(name, layer, 0, points, config.fidelity_iterations(name, layer))
                  for layer in config.layers]
    needed = {name: {layer for cell in cells if cell.region == name
                     for layer, _ in loss_terms(config, name, cell.layer)} for name in regions}
    return regions, cells, needed, notices


def _run(encoder, config, regions, cells, needed, device, cells_per_batch=None) -> tuple[float, int]:
    bank = TargetBank(encoder, {name: plan.target for name, plan in regions.items()},
                      {name: needed[name] for name in regions}, config.augmentations,
                      config.augment_pool, torch.Generator().manual_seed(0))
    steps = 0

    def chain(result):
        if isinstance(result, RowRun):
            return result.column.receive(result)[1]
        if isinstance(result, FidelityResult):
            return SimplicityColumn(result, config, device).start()
        return []

    def count(progress):
        nonlocal steps
        steps = progress.step

    begin = time.perf_counter()
    Engine(encoder, bank, cells_per_batch=cells_per_batch).run(
        [FidelityTask(cell, config, device) for cell in cells],
                              on_finished=chain, on_progress=count)
    return time.perf_counter() - begin, steps


def run(fidelity_steps: int, row_steps: int, device_name: str) -> str:
    device = resolve_device(device_name)
    encoder = load_clip("ViT-B-32", "random", device)
    config = make_config("preview", iterations=fidelity_steps, simplicity_steps=row_steps)
    regions, cells, needed, notices = _prepare(config, encoder, device)
    cell_steps = len(cells) * (fidelity_steps + config.simplicity_rows * row_steps)
    batched, batched_steps = _run(encoder, config, regions, cells, needed, device, 0)
    chunked, _ = _run(encoder, config, regions, cells, needed, device, 1)
    alone_total = 0.0
    for cell in cells:
        seconds, _ = _run(encoder, config, regions, [cell], needed, device)
        alone_total += seconds
    full_preview = make_config("preview")
    full_cell_steps = len(cells) * (full_preview.iterations
                                    + full_preview.simplicity_rows * full_preview.simplicity_steps)
    per_cell_step = chunked / cell_steps
    cells_in_matrix = len(config.layers) * (config.simplicity_rows + 1)
    lines = [
        f"Machine: {machine()}; device {device}.",
        f"Matrix: {len(config.layers)} columns x {config.simplicity_rows + 1} rows x "
        f"{len(regions)} regions ({cells_in_matrix} cells), 64 strokes; {fidelity_steps} fidelity "
        f"steps and {row_steps} steps per simplicity row (scaled down from the preview's "
        f"{full_preview.iterations} and {full_preview.simplicity_steps}).",
        *(f"Preprocessing notice: {notice}" for notice in notices),
        "",
        "| measurement | value |",
        "|---|---|",
        f"| engine steps, batched (one CLIP batch per step) | {batched_steps} |",
        f"| cell-steps (sum over regions x columns) | {cell_steps} |",
        f"| wall time, all cells in one CLIP batch per step (the GPU default) | {batched:.1f} s |",
        f"| wall time, same steps, one cell per CLIP batch (the CPU default) | {chunked:.1f} s |",
        f"| wall time, each cell trained on its own, one after another | {alone_total:.1f} s |",
        f"| speed-up of one batch over one at a time | {alone_total / batched:.2f}x |",
        f"| speed-up of the CPU default over one at a time | {alone_total / chunked:.2f}x |",
        f"| time per cell-step, CPU default | {per_cell_step * 1000:.0f} ms |",
        f"| time per matrix cell, CPU default | {chunked / cells_in_matrix:.1f} s |",
        f"| full preview matrix ({full_cell_steps} cell-steps), extrapolated | "
        f"{full_cell_steps * per_cell_step / 60:.0f} min |",
        f"| peak memory (process RSS) | "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelity-steps", type=int, default=10)
    parser.add_argument("--row-steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    table = run(args.fidelity_steps, args.row_steps, args.device)
    print(table)
    if args.write:
        with args.write.open("a") as stream:
            stream.write(f"\n## Whole matrix\n\nWritten by `python -m bench.matrix_bench` on "
                         f"{time.strftime('%Y-%m-%d')}.\n\n{table}\n")


if __name__ == "__main__":
    main()
