"""Benchmark of the fidelity stage: one training step against its floor, bare CLIP.

Uses the real ViT-B-32 architecture with random weights (the real compute cost; no weights
needed) and 64 strokes per sketch. Run from the repository root:

    .venv/bin/python -m bench.fidelity_bench [--steps 6] [--write docs/performance.md]

Prints a Markdown table; --write also stores it with the machine it came from.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.render_bench import time_renderer
from clipascene_core.config import make_config
from clipascene_core.io.records import ProgressEvent
from clipascene_core.models.clip import load_clip, resolve_device
from clipascene_core.scene.matrix import plan_matrix, run_plan

ROOT = Path(__file__).resolve().parent.parent
#: The sample photo shipped with the repository (examples/README.md).
SAMPLE = ROOT / "examples" / "chelsea.jpg"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_plan_step(encoder, config) -> float:
    """Median seconds of one engine step of the sample photo's matrix as `config` plans it
    (the product's own planning and run, `matrix.plan_matrix` and `run_plan`), after the
    first step (a warm-up)."""
    device = next(encoder.buffers()).device
    stamps = []

    def stamp(event) -> None:
        if isinstance(event, ProgressEvent):
            _sync(device)
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        run_plan(plan_matrix(SAMPLE, out, config, encoder), on_event=stamp)
    return statistics.median(later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False))


def time_fidelity_step(encoder, layers, pool: int, steps: int, strokes: int = 64) -> float:
    """Median seconds of one training step of len(layers) fidelity cells batched."""
    # Lock-step: every cell trains in every step, so a step is all of them (the CPU's
    # column-first schedule would run one column per step). One region, no rows.
    return time_plan_step(encoder, make_config(
        "standard", layers=tuple(layers), strokes=strokes, iterations=steps + 1,
        augment_pool=pool, schedule="lockstep", split=False, simplicity_rows=0))


def time_clip_floor(encoder, batch: int, deepest: int, repeats: int, device) -> float:
    """Median seconds of CLIP forward + backward to the image for `batch` images."""
    images = torch.rand(batch, 3, 224, 224, device=device)
    timings = []
    for attempt in range(repeats + 1):
        leaf = images.clone().requires_grad_()
        _sync(device)
        begin = time.perf_counter()
        features = encoder.layer_features(leaf, [deepest])[deepest]
        features.square().mean().backward()
        _sync(device)
        if attempt:
            timings.append(time.perf_counter() - begin)
    return statistics.median(timings)


def peak_memory_mb(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (GPU)"
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return f"{kib / 1024:.0f} MiB (process RSS)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def run(steps: int, device_name: str) -> str:
    device = resolve_device(device_name)
    encoder = load_clip("ViT-B-32", "random", device)  # float32: the floor's precision
    auto = load_clip("ViT-B-32", "random", device, precision="auto")
    lines = [
        f"Machine: {machine()}; device {device}; --precision auto runs "
        f"{auto.precision_choice.describe()}.",
        "",
        "| measurement | batch (images) | time | ratio to floor |",
        "|---|---|---|---|",
    ]
    for layers in ([8], [2, 8, 11]):
        batch = len(layers) * 5
        floor = time_clip_floor(encoder, batch, 11 if 11 in layers else max(layers), steps, device)
        lines.append(f"| bare CLIP forward+backward, fp32 eager (floor), {len(layers)} cell(s) | "
                     f"{batch} | {floor * 1000:.0f} ms | 1.00 |")
        for pool, label in ((128, "preview: augmentation pool"),
                            (0, "standard/paper: fresh augmentations")):
            step = time_fidelity_step(auto, layers, pool, steps)
            lines.append(f"| fidelity step, {len(layers)} cell(s), {label}, {auto.precision} | "
                         f"{batch} | {step * 1000:.0f} ms | {step / floor:.2f} |")
    lines += ["", "| renderer forward+backward, 64 strokes | batch | time |", "|---|---|---|"]
    for row in time_renderer((5, 15), 64, repeats=steps):
        lines.append(f"| {row['stroke_size']} | {row['batch']} | {row['ms_median']:.0f} ms |")
    lines += ["", f"Peak memory: {peak_memory_mb(device)}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed repeats per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    table = run(args.steps, args.device)
    print(table)
    if args.write:
        from clipascene_core.io.outputs import atomic_write_text

        atomic_write_text(args.write, "# Performance\n\nWritten by `python -m bench.fidelity_bench"
                          f" --write {args.write}` on {time.strftime('%Y-%m-%d')}.\n\n{table}\n")


if __name__ == "__main__":
    main()
