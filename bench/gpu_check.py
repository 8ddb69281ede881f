"""Everything worth measuring on a GPU, in one run of a few minutes (bench/gpu_check.sh).

Prints a Markdown report:
1. ViT-B/32 forward+backward per batch size, float32 and bfloat16;
2. the engine's training step for 1, 6 and 12 cells in one batch;
3. a `paper` matrix at reduced steps: wall time, time to the first complete cell, and the
   full-size time extrapolated;
4. peak GPU memory.

Real ViT-B-32 architecture, random weights (the real compute; no download). On a machine
without a GPU, `--device cpu --quick` runs the same code small, as a check that it works.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from bench.fidelity_bench import SAMPLE, machine, time_clip_floor, time_plan_step
from bench.matrix_bench import run_matrix
from clipascene_core.config import FIDELITY_LAYERS, make_config
from clipascene_core.models.clip import load_clip, resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clip_table(encoders: dict, batches: list[int], repeats: int, device) -> list[str]:
    lines = ["| ViT-B/32 forward+backward to layer 11 | " + " | ".join(encoders) + " |",
             "|---|" + "---|" * len(encoders)]
    for batch in batches:
        cells = []
        for encoder in encoders.values():
            seconds = time_clip_floor(encoder, batch, 11, repeats, device)
            cells.append(f"{seconds * 1000:.1f} ms ({batch / seconds:.0f} img/s)")
        lines.append(f"| batch {batch} | " + " | ".join(cells) + " |")
    return lines


def engine_step(encoder, cells: int, steps: int) -> float:
    """Median seconds of one lock-step engine step with `cells` fidelity cells in one batch
    (fresh augmentations, 64 strokes): the layers of the paper's columns, then a second seed."""
    layers = FIDELITY_LAYERS[:cells] if cells <= len(FIDELITY_LAYERS) else FIDELITY_LAYERS
    seeds = (0,) if cells <= len(FIDELITY_LAYERS) else (0, 1000)
    assert len(layers) * len(seeds) == cells, f"{cells} cells: up to 6, or 12"
    return time_plan_step(encoder, make_config(
        "standard", layers=layers, seeds=seeds, iterations=steps + 1, schedule="lockstep",
        cells_per_batch=0, split=False, simplicity_rows=0))


def paper_matrix(encoder, fidelity_steps: int, row_steps: int, rows: int) -> list[str]:
    config = make_config("paper", iterations=fidelity_steps, simplicity_steps=row_steps,
                         simplicity_rows=rows)
    with tempfile.TemporaryDirectory() as out:
        result = run_matrix(encoder, config, Path(out))
    full = make_config("paper")
    # Lock-step on a GPU: the matrix takes as many engine steps as its longest column chain
    # (the background: 1500 fidelity steps, then 8 rows of 400); the two seeds and every
    # column run beside it in the same batches.
    reduced_chain = fidelity_steps + rows * row_steps
    full_chain = full.scene_iterations + full.simplicity_rows * full.simplicity_steps
    scale = full_chain / reduced_chain
    first_scale = full.scene_iterations / fidelity_steps
    return [
        f"| paper matrix, {len(config.layers)} columns x {rows + 1} rows x 2 regions x 2 seeds, "
        f"{fidelity_steps} fidelity + {rows}x{row_steps} row steps | {result['wall']:.1f} s "
        f"(preprocessing {result['preparation']:.1f} s) |",
        f"| time to the first complete cell (reduced) | {result['first']:.1f} s |",
        f"| full paper matrix ({full_chain} steps per chain), extrapolated | "
        f"{(result['preparation'] + result['training'] * scale) / 60:.1f} min |",
        f"| full paper matrix, first complete cell, extrapolated | "
        f"{(result['preparation'] + (result['first'] - result['preparation']) * first_scale) / 60:.1f}"
        " min |",
    ]


def run(device_name: str, quick: bool) -> str:
    device = resolve_device(device_name)
    started = time.perf_counter()
    fp32 = load_clip("ViT-B-32", "random", device)
    encoders = {"fp32": fp32, "bf16": copy.deepcopy(fp32).use_precision("bf16")}
    choice = load_clip("ViT-B-32", "random", device, precision="auto").precision_choice
    auto = encoders[choice.precision]
    batches = [5, 10] if quick else [5, 10, 30, 60, 120, 240]
    repeats = 2 if quick else 10
    lines = [f"Machine: {machine()}; device {device}"
             + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
             + f"; --precision auto runs {choice.describe()}. Sample: {SAMPLE.name}.", ""]
    lines += clip_table(encoders, batches, repeats, device)
    lines += ["", f"| engine step (lock-step, one batch, {auto.precision}) | time |", "|---|---|"]
    for cells in ([1, 2] if quick else [1, 6, 12]):
        seconds = engine_step(auto, cells, 2 if quick else 8)
        lines.append(f"| {cells} cell(s), {cells * 5} sketch images | {seconds * 1000:.1f} ms |")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    lines += ["", "| whole matrix | value |", "|---|---|"]
    lines += paper_matrix(auto, 4 if quick else 40, 2 if quick else 10, 1 if quick else 8)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        lines.append(f"| peak GPU memory during the matrix | {peak:.2f} GiB |")
    lines += ["", f"Total time of this check: {time.perf_counter() - started:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes: a check that it runs")
    args = parser.parse_args()
    print(run(args.device, args.quick), flush=True)


if __name__ == "__main__":
    main()
