"""Loss curves of fidelity sketches, and what an early stop would have saved and cost.

Trains the `preview` preset's fidelity sketches (500 steps, 64 strokes, the augmentation
pool, both regions of the sample photo, columns 2, 8 and 11) with the product's own
`plan_matrix` / `run_plan` on the real ViT-B/32 architecture, recording the clean loss and
the mean control-point displacement every 10 steps. Then, for each candidate stopping rule,
the step it would have stopped at and how far the best loss found by then is from the best
of the whole run (what the preview keeps: the best checkpoint from step 300 on).

Weights: random unless --weights names a checkpoint (then the curves are the trained
CLIP's). A rule is worth adopting only where it saves steps on every curve at a loss gap
below the noise between two seeds. Run alone, from the repository root:

    .venv/bin/python -m bench.convergence_bench [--weights random] [--write docs/performance.md]
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.fidelity_bench import SAMPLE, machine
from bench.report import main as report_main
from clipascene_core.config import make_config
from clipascene_core.models.clip import load_clip
from clipascene_core.scene.matrix import plan_matrix, run_plan
from clipascene_core.sketch import fidelity

EVERY = 10
#: Candidate rules: (name, function(curve, moves) -> the step at which the run would stop).
#: curve: [(step, clean loss)] every EVERY steps; moves: [(step, mean px a control point
#: moved over the last EVERY steps)].


def plateau(window: int, tolerance: float, start: int) -> Callable:
    """Stop at the first step >= start where the best loss has improved by less than
    `tolerance` (relative) over the last `window` steps."""
    def rule(curve, _moves):
        best = {}
        running = float("inf")
        for step, loss in curve:
            running = min(running, loss)
            best[step] = running
        for step, _ in curve:
            earlier = best.get(step - window)
            if step >= start and earlier is not None and earlier - best[step] < tolerance * abs(earlier):
                return step
        return curve[-1][0]
    return rule


def displacement(pixels: float, start: int) -> Callable:
    """Stop at the first step >= start where control points moved less than `pixels` (mean,
    canvas px of 224) over the last EVERY steps."""
    def rule(_curve, moves):
        for step, moved in moves:
            if step >= start and moved < pixels:
                return step
        return moves[-1][0]
    return rule


RULES = [
    ("plateau: < 0.5 % better in 100 steps, from 300", plateau(100, 0.005, 300)),
    ("plateau: < 0.2 % better in 100 steps, from 300", plateau(100, 0.002, 300)),
    ("plateau: < 0.5 % better in 50 steps, from 200", plateau(50, 0.005, 200)),
    ("displacement: < 0.5 px in 10 steps, from 300", displacement(0.5, 300)),
    ("displacement: < 1 px in 10 steps, from 200", displacement(1.0, 200)),
]


def record_curves(weights: str, steps: int) -> dict[str, dict]:
    """{cell key: {"curve": [(step, loss)], "moves": [(step, px)]}} of a preview run's
    fidelity sketches."""
    encoder = load_clip("ViT-B-32", weights, torch.device("cpu"), precision="auto")
    config = make_config("preview", layers=(2, 8, 11), strokes=64, iterations=steps,
                         eval_start=EVERY, eval_every=EVERY, simplicity_rows=0,
                         progressive=False)
    moves: dict[str, list] = {}
    apply = fidelity.FidelityTask.apply

    def recording_apply(task, gradients, losses):
        points = task._points.detach()
        last = getattr(task, "_bench_points", None)
        step = task.steps_done + 1
        if last is None:
            task._bench_points = points.clone()
        elif step % EVERY == 0:
            moved = (points - last).norm(dim=-1).mean().item()
            moves.setdefault(task.cell.key, []).append((step, moved))
            task._bench_points = points.clone()
        return apply(task, gradients, losses)

    fidelity.FidelityTask.apply = recording_apply
    try:
        with tempfile.TemporaryDirectory() as out:
            manifest = run_plan(plan_matrix(SAMPLE, out, config, encoder))
    finally:
        fidelity.FidelityTask.apply = apply
    curves = {}
    for cell in manifest.cells:
        for region, details in cell.regions.items():
            key = f"{region}-L{cell.layer}-s{details['seed']}"
            curve = [(int(step), float(loss)) for step, loss in details["eval_losses"]]
            engine_key = (f"{'object' if region == 'foreground' else region}-L{cell.layer}"
                          f"-s{details['seed']}")  # FidelityCell.key
            own = [value for name, value in moves.items() if name == engine_key]
            curves[key] = {"curve": curve, "moves": own[0] if own else []}
    return curves


def run(weights: str, steps: int, curves_file: Path | None) -> str:
    if curves_file is not None and curves_file.exists():
        curves = json.loads(curves_file.read_text())
    else:
        curves = record_curves(weights, steps)
        if curves_file is not None:
            curves_file.write_text(json.dumps(curves))
    lines = [f"Machine: {machine()}; ViT-B/32, weights: {weights}; preview fidelity sketches, "
             f"{steps} steps, 64 strokes, {len(curves)} curves (2 regions x columns 2, 8, 11).", "",
             "| curve | loss at 10 | best by 300 | best (300-end, kept) | step of best | "
             "points moved, steps 290-300 / last 10 |", "|---|---|---|---|---|---|"]
    for key, data in curves.items():
        curve = data["curve"]
        best_all = min(loss for step, loss in curve if step >= 300)
        best_step = min((loss, step) for step, loss in curve if step >= 300)[1]
        by_300 = min(loss for step, loss in curve if step <= 300)
        move = dict(data["moves"])
        lines.append(f"| {key} | {curve[0][1]:.4f} | {by_300:.4f} | {best_all:.4f} | {best_step} | "
                     f"{move.get(300, float('nan')):.2f} / {move.get(steps, float('nan')):.2f} px |")
    lines += ["", "| rule | steps saved (of all fidelity steps) | worst loss gap to the kept best | "
              "curves within 0.5 % |", "|---|---|---|---|"]
    for name, rule in RULES:
        saved, gaps = 0, []
        for data in curves.values():
            curve = data["curve"]
            stop = rule(curve, data["moves"] or [(steps, 0.0)])
            kept = min(loss for step, loss in curve if step >= 300)
            found = min((loss for step, loss in curve if 300 <= step <= max(stop, 300)),
                        default=float("inf"))
            gaps.append((found - kept) / abs(kept))
            saved += steps - max(stop, 300)
        within = sum(gap <= 0.005 for gap in gaps)
        lines.append(f"| {name} | {saved / (steps * len(curves)):.0%} | {max(gaps):.2%} | "
                     f"{within}/{len(gaps)} |")
    spread = [np.std([loss for step, loss in data["curve"] if step >= 400])
              / np.mean([loss for step, loss in data["curve"] if step >= 400]) for data in curves.values()]
    lines += ["", f"Step-to-step noise of the clean loss over steps 400-{steps} (std / mean, "
              f"per curve): {min(spread):.2%} to {max(spread):.2%}."]
    return "\n".join(lines)


def _arguments(parser) -> None:
    parser.add_argument("--weights", default="random", help="'random' or a checkpoint file")
    parser.add_argument("--steps", type=int, default=500, help="fidelity steps (preview: 500)")
    parser.add_argument("--curves-file", type=Path, help="keep the recorded curves here (JSON); "
                        "read them instead of training when the file exists")


if __name__ == "__main__":
    report_main(__doc__, "Loss curves and early stops", "bench.convergence_bench", run, _arguments)
