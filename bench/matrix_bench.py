"""Benchmark of a whole matrix: time to every cell's draft, to the first final cell, and to the end.

Runs `sketch_matrix` itself (the product's own pipeline) on the sample photo with the real
ViT-B-32 architecture and random weights (the real compute; no weights needed), at the
`preview` preset's shape (3 columns x 9 rows x 2 regions, 64 strokes) with its step counts
scaled down, column-first (the CPU's schedule), without drafts and with them (the CPU
default): every cell drafted from a tenth of its steps, then the final cells; and, for the
question whether batching several columns into one CLIP batch pays on this machine, with all
columns in lock-step (every column's fidelity sketches, then every column's rows, in one
batch a step).

Run from the repository root (nothing else heavy beside it: two torch processes on two
cores slow each other down):

    .venv/bin/python -m bench.matrix_bench [--fidelity-steps 20] [--row-steps 10] [--write F]
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
from clipascene_core.sketch.progressive import draft_config


def run_matrix(encoder, config, out: Path) -> dict:
    """One matrix: seconds until every cell had a draft, to the first final cell and to the
    whole matrix, and the cell-steps trained before that first final cell."""
    begin = time.perf_counter()
    first: dict = {}
    drafted: dict = {}
    drafts = 0
    steps_done = 0

    def on_event(event) -> None:
        nonlocal steps_done, drafts
        if isinstance(event, ProgressEvent):
            steps_done = event.steps_done
        elif isinstance(event, CellEvent) and event.cell.draft:
            drafts += 1
            if drafts == manifest_cells:
                drafted.update(seconds=time.perf_counter() - begin, steps=steps_done)
        elif isinstance(event, CellEvent) and not first:
            first.update(seconds=time.perf_counter() - begin, steps=steps_done)

    manifest_cells = (config.simplicity_rows + 1) * len(config.layers)
    with tempfile.TemporaryDirectory() as models:  # no U2-Net/LaMa: the fallbacks, announced
        manifest = sketch_matrix(SAMPLE, out, config, encoder, models_dir=Path(models),
                                 on_event=on_event)
    timings = manifest.timings
    draft_steps = manifest.drafts.steps if manifest.drafts else 0
    return {"wall": time.perf_counter() - begin, "first": first["seconds"],
            "first_steps": first["steps"] - draft_steps, "steps": timings.steps,
            "draft_steps": draft_steps, "drafted": drafted.get("seconds"),
            "preparation": timings.preparation_s,
            "training": timings.training_s + timings.drafts_s,
            "notices": manifest.notices}


#: The matrices the bench can run: name -> (label, schedule, progressive).
VARIANTS = {"plain": ("column-first, no drafts", "column", False),
            "drafts": ("column-first, drafts first (the CPU default)", "column", True),
            "lockstep": ("all columns batched (lock-step), drafts first", "lockstep", True)}


def run(fidelity_steps: int, row_steps: int, device: str, variants: str) -> str:
    device = resolve_device(device)
    encoder = load_clip("ViT-B-32", "random", device, precision="auto")
    full = make_config("preview")
    full_drafts = draft_config(full)
    results = {}
    for name in variants.split(","):
        label, schedule, progressive = VARIANTS[name]
        config = make_config("preview", iterations=fidelity_steps, simplicity_steps=row_steps,
                             schedule=schedule, progressive=progressive)
        with tempfile.TemporaryDirectory() as out:
            results[label] = run_matrix(encoder, config, Path(out))
    fidelity_scale = full.iterations / fidelity_steps
    row_scale = full.simplicity_steps / row_steps
    choice = encoder.precision_choice
    lines = [
        f"Machine: {machine()}; device {device}; CLIP precision {choice.describe()}.",
        f"Matrix: {len(full.layers)} columns x {full.simplicity_rows + 1} rows x 2 regions, "
        f"{full.strokes} strokes; {fidelity_steps} fidelity steps and {row_steps} "
        f"per simplicity row (the preview's {full.iterations} and {full.simplicity_steps}, "
        "scaled down).",
        "",
        "| measurement | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]

    def row(label, key, fmt="{:.1f} s"):
        values = [results[name][key] for name in results]
        lines.append(f"| {label} | " + " | ".join("–" if value is None else fmt.format(value)
                                                   for value in values) + " |")

    row("cell-steps trained (drafts, then finals)", "draft_steps", "{}")
    row("cell-steps trained (final cells)", "steps", "{}")
    row("preprocessing (split, attention, targets)", "preparation")
    row("time until every cell has a draft", "drafted")
    row("time to the first final cell", "first")
    row("whole matrix", "wall")
    per_column = 2 * (full.iterations + full.simplicity_rows * full.simplicity_steps)
    full_steps = len(full.layers) * per_column
    full_draft_steps = len(full.layers) * 2 * (full_drafts.iterations
                                               + full.simplicity_rows * full_drafts.simplicity_steps)
    extrapolated = {}
    for name, result in results.items():
        per_step = result["training"] / (result["steps"] + result["draft_steps"])
        drafts = full_draft_steps * per_step if result["draft_steps"] else 0.0
        prep = result["preparation"]
        extrapolated[name] = {
            "per_step": f"{per_step * 1000:.0f} ms",
            "drafted": f"{(prep + drafts) / 60:.1f} min" if drafts else "–",
            "first": f"{(prep + drafts + result['first_steps'] * fidelity_scale * per_step) / 60:.1f} min",
            "whole": f"{(prep + drafts + full_steps * per_step) / 60:.0f} min",
        }
    for label, key in (("time per cell-step", "per_step"),
                       ("full preview matrix: every cell drafted, extrapolated", "drafted"),
                       ("full preview matrix: first final cell, extrapolated", "first"),
                       ("full preview matrix: whole, extrapolated", "whole")):
        lines.append(f"| {label} | " + " | ".join(extrapolated[name][key] for name in results) + " |")
    lines += ["", f"Peak memory: {peak_memory_mb(device)}. Row steps scale by {row_scale:.0f}x "
              f"and fidelity steps by {fidelity_scale:.0f}x in the extrapolation "
              f"({full_draft_steps} draft and {full_steps} final cell-steps in the full matrix); "
              "the first final cell needs its column's fidelity steps only."]
    lines += [f"Preprocessing notice: {notice}" for notice in next(iter(results.values()))["notices"]]
    return "\n".join(lines)


def _arguments(parser) -> None:
    parser.add_argument("--fidelity-steps", type=int, default=20)
    parser.add_argument("--row-steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="plain,drafts,lockstep",
                        help=f"which matrices, comma-separated: {', '.join(VARIANTS)}")


def main() -> None:
    report.main(__doc__, "Whole matrix", "bench.matrix_bench", run, _arguments)


if __name__ == "__main__":
    main()
