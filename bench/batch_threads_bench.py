"""Would batching the rows of several columns into one CLIP batch pay on a CPU, and how many
threads should a run use?

CLIP forward + backward to layer 11 (the deepest column) on the real ViT-B/32 architecture
(random weights: the real compute cost), at batch 5 (one cell: its sketch and four
augmentations, what the CPU's column-first schedule sends), 10 and 15 (two and three
columns' rows batched together), in fp32 and bf16, with 1 thread and with all cores. The
figure that decides batching is the time per image: batching three columns pays only if
15 images cost clearly less than three batches of 5. With --busy, a second process keeps
one core busy meanwhile (what an artist's Inkscape, or a browser, does to the daemon): the
thread count that is best on an idle machine may not be on a busy one. Run alone, from the
repository root:

    .venv/bin/python -m bench.batch_threads_bench [--repeats 5] [--busy] [--write docs/performance.md]
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import torch

from bench.fidelity_bench import machine, time_clip_floor
from bench.report import main as report_main
from clipascene_core.models.clip import load_clip

BATCHES = (5, 10, 15)


def run(repeats: int, busy: bool) -> str:
    device = torch.device("cpu")
    fp32 = load_clip("ViT-B-32", "random", device, precision="fp32")
    encoders = {"fp32": fp32, "bf16": copy.deepcopy(fp32).use_precision("bf16")}
    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    spinner = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None)
    lines = [f"Machine: {machine()}." + (" One core kept busy by another process." if busy else ""), "",
             "| precision | threads | " + " | ".join(f"batch {b}: ms (ms / image)" for b in BATCHES)
             + " | batch 15 / (3 x batch 5) |",
             "|---|---|" + "---|" * len(BATCHES) + "---|"]
    before = torch.get_num_threads()
    try:
        for name, encoder in encoders.items():
            for threads in thread_counts:
                torch.set_num_threads(threads)
                times = {batch: time_clip_floor(encoder, batch, 11, repeats, device)
                         for batch in BATCHES}
                cells = " | ".join(f"{times[b] * 1000:.0f} ({times[b] * 1000 / b:.0f})" for b in BATCHES)
                lines.append(f"| {name} | {threads} | {cells} | "
                             f"{times[15] / (3 * times[5]):.2f} |")
    finally:
        torch.set_num_threads(before)
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return "\n".join(lines)


def _arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement")
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")


if __name__ == "__main__":
    report_main(__doc__, "Batching columns and threads", "bench.batch_threads_bench", run, _arguments)
