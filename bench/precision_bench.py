"""Benchmark of CLIP's precision: float32 against bfloat16, per CLIP pass and per training step.

The real ViT-B-32 architecture with random weights (the real compute cost; no weights
needed). Rows: CLIP forward + backward to layer 8 for a batch of 5 (a sketch and its four
augmentations) through open_clip's own blocks and through ours (`models.residual_block`),
in each precision; then a whole fidelity step (64 strokes, the product's own plan and run)
in fp32, bf16 and what `--precision auto` chose on this machine, against the fp32 floor.
Run alone, from the repository root:

    .venv/bin/python -m bench.precision_bench [--repeats 6] [--write docs/performance.md]
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from bench.fidelity_bench import machine, time_clip_floor, time_fidelity_step
from bench.report import main as report_main
from clipascene_core.models.clip import load_clip
from clipascene_core.models.precision import choose_precision
from clipascene_core.models.precision import measure as measure_precisions


def run(repeats: int) -> str:
    device = torch.device("cpu")
    fp32 = load_clip("ViT-B-32", "random", device, precision="fp32")
    encoders = {"fp32": fp32, "bf16": copy.deepcopy(fp32).use_precision("bf16")}
    with tempfile.TemporaryDirectory() as data:  # measured afresh, as a new machine would
        auto = choose_precision("auto", device, "ViT-B-32",
                                lambda: measure_precisions(encoders),
                                cache=Path(data) / "precision.json")
    lines = [f"Machine: {machine()}.", f"`--precision auto` chose {auto.describe()}.", "",
             "| CLIP forward+backward to layer 8, batch 5 | open_clip's blocks | ours | ours / fp32 floor |",
             "|---|---|---|---|"]
    floor = None
    for name, encoder in encoders.items():
        timings = {}
        for plain in (False, True):
            encoder.plain_blocks = plain
            timings[plain] = time_clip_floor(encoder, 5, 8, repeats, device)
        floor = floor or timings[True]
        lines.append(f"| {name} | {timings[False] * 1000:.0f} ms | {timings[True] * 1000:.0f} ms | "
                     f"{timings[True] / floor:.2f} |")
    lines += ["", "| fidelity step, 1 cell, 64 strokes, preview's augmentation pool | time | "
              "ratio to fp32 step |", "|---|---|---|"]
    steps = {name: time_fidelity_step(encoder, [8], 128, repeats) for name, encoder in encoders.items()}
    for name, seconds in steps.items():
        lines.append(f"| {name} | {seconds * 1000:.0f} ms | {seconds / steps['fp32']:.2f} |")
    lines.append(f"| auto ({auto.precision}) | {steps[auto.precision] * 1000:.0f} ms | "
                 f"{steps[auto.precision] / steps['fp32']:.2f} |")
    return "\n".join(lines)


def _arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=6, help="timed repeats per measurement")


if __name__ == "__main__":
    report_main(__doc__, "CLIP precision: fp32 against bf16", "bench.precision_bench", run, _arguments)
