"""Benchmark of a whole matrix: wall time and time to the first complete cell, per schedule.

Runs `sketch_matrix` itself (the product's own pipeline) on the sample photo with the real
ViT-B-32 architecture and random weights (the real compute; no weights needed), at the
`preview` preset's shape (3 columns x 9 rows x 2 regions, 64 strokes) with its step counts
scaled down, once with each schedule:

- lockstep: every cell advances every step (one big batch: the GPU default);
- column: one column (both regions, fidelity sketch then rows) before the next (the CPU
  default), so the first complete cell arrives after one column's fidelity sketches.

Run from the repository root (nothing else heavy beside it: two torch processes on two
cores slow each other down):

    .venv/bin/python -m bench.matrix_bench [--fidelity-steps 10] [--row-steps 5] [--write F]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench import report
from bench.fidelity_bench import SAMPLE, machine, peak_memory_mb
from clipascene_core.config import make_config
from clipascene_core.io.records import CellEvent, ProgressEvent
from clipascene_core.models.clip import load_clip, resolve_device
from clipascene_core.scene.matrix import sketch_matrix


def run_matrix(encoder, config, out: Path) -> dict:
    """One matrix: seconds to the first complete cell and to the whole matrix, and the
    cell-steps trained before that first cell."""
    begin = time.perf_counter()
    first: dict = {}
    steps_done = 0

    def on_event(event) -> None:
        nonlocal steps_done
        if isinstance(event, ProgressEvent):
            steps_done = event.steps_done
        elif isinstance(event, CellEvent) and not first:
            first.update(seconds=time.perf_counter() - begin, steps=steps_done)

    with tempfile.TemporaryDirectory() as models:  # no U2-Net/LaMa: the fallbacks, announced
        manifest = sketch_matrix(SAMPLE, out, config, encoder, models_dir=Path(models),
                                 on_event=on_event)
    timings = manifest.timings
    return {"wall": time.perf_counter() - begin, "first": first["seconds"],
            "first_steps": first["steps"], "steps": timings["steps"],
            "preparation": timings["preparation_s"], "training": timings["training_s"],
            "notices": manifest.notices}


def run(fidelity_steps: int, row_steps: int, device: str) -> str:
    device = resolve_device(device)
    encoder = load_clip("ViT-B-32", "random", device, precision="auto")
    full = make_config("preview")
    results = {}
    for schedule in ("lockstep", "column"):
        config = make_config("preview", iterations=fidelity_steps, simplicity_steps=row_steps,
                             schedule=schedule)
        with tempfile.TemporaryDirectory() as out:
            results[schedule] = run_matrix(encoder, config, Path(out))
    fidelity_scale = full.iterations / fidelity_steps
    row_scale = full.simplicity_steps / row_steps
    lines = [
        f"Machine: {machine()}; device {device}; CLIP precision {encoder.precision}.",
        f"Matrix: {len(full.layers)} columns x {full.simplicity_rows + 1} rows x 2 regions, "
        f"{full.strokes} strokes; {fidelity_steps} fidelity steps and {row_steps} per simplicity "
        f"row (the preview's {full.iterations} and {full.simplicity_steps}, scaled down).",
        "",
        "| measurement | lock-step | column-first |",
        "|---|---|---|",
    ]

    def row(label, key, fmt="{:.1f} s"):
        lines.append(f"| {label} | {fmt.format(results['lockstep'][key])} | "
                     f"{fmt.format(results['column'][key])} |")

    row("cell-steps trained (all regions and columns)", "steps", "{}")
    row("preprocessing (split, attention, targets)", "preparation")
    row("time to the first complete cell", "first")
    row("cell-steps before the first complete cell", "first_steps", "{}")
    row("whole matrix", "wall")
    extrapolated = {}
    for schedule, result in results.items():
        per_step = result["training"] / result["steps"]
        full_steps = 2 * len(full.layers) * (full.iterations
                                             + full.simplicity_rows * full.simplicity_steps)
        extrapolated[schedule] = (
            per_step,
            (result["preparation"] + result["first_steps"] * fidelity_scale * per_step) / 60,
            (result["preparation"] + full_steps * per_step) / 60,
        )
    lines.append(f"| time per cell-step | {extrapolated['lockstep'][0] * 1000:.0f} ms | "
                 f"{extrapolated['column'][0] * 1000:.0f} ms |")
    lines.append(f"| full preview matrix: first complete cell, extrapolated | "
                 f"{extrapolated['lockstep'][1]:.0f} min | {extrapolated['column'][1]:.0f} min |")
    lines.append(f"| full preview matrix: whole, extrapolated | "
                 f"{extrapolated['lockstep'][2]:.0f} min | {extrapolated['column'][2]:.0f} min |")
    lines += ["", f"Peak memory: {peak_memory_mb(device)}. Row steps scale by {row_scale:.0f}x "
              "and fidelity steps by "
              f"{fidelity_scale:.0f}x in the extrapolation; the first cell needs fidelity "
              "steps only."]
    lines += [f"Preprocessing notice: {notice}" for notice in results["column"]["notices"]]
    return "\n".join(lines)


def _arguments(parser) -> None:
    parser.add_argument("--fidelity-steps", type=int, default=10)
    parser.add_argument("--row-steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")


def main() -> None:
    report.main(__doc__, "Whole matrix", "bench.matrix_bench", run, _arguments)


if __name__ == "__main__":
    main()
