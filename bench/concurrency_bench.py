"""Benchmark: two sketch runs at once against one alone, per OpenMP wait policy.

Users run a backend job and a CLI run at the same time, and the tests run servers side by
side. Each run is the real CLI (`clipascene sketch`) on the tiny model in its own process;
the table gives each run's training speed (cell-steps per second, from its manifest) alone
and with a second identical run beside it. A fair share on N cores is about half the speed
each; spinning OpenMP threads (the 'active' wait policy) make it far worse.

    .venv/bin/python -m bench.concurrency_bench [--write docs/performance.md]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import report
from bench.fidelity_bench import SAMPLE, machine
from clipascene_core.io.records import OutputFolder

ARGS = ["--clip-model", "tiny-test", "--weights", "random", "--layers", "2,8,11", "--rows", "2",
        "--iterations", "30", "--row-steps", "10", "--quiet", "--no-split"]


def start(out: Path, policy: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    return subprocess.Popen([sys.executable, "-m", "clipascene_core.cli", "sketch", str(SAMPLE),
                             "--out", str(out), *ARGS], env=env)


def speed(out: Path) -> float:
    timings = OutputFolder(out).read_manifest().timings
    return timings.steps / timings.training_s


def measure(policy: str, together: int) -> list[float]:
    """Cell-steps per second of each of `together` identical runs started at once."""
    with tempfile.TemporaryDirectory() as folder:
        outs = [Path(folder) / f"run{index}" for index in range(together)]
        runs = [start(out, policy) for out in outs]
        for run in runs:
            if run.wait() != 0:
                raise SystemExit(f"a run failed with exit code {run.returncode}")
        return [speed(out) for out in outs]


def run() -> str:
    lines = [f"Machine: {machine()}.",
             f"Each run: `clipascene sketch {' '.join(ARGS)}`.", "",
             "| OpenMP wait policy | one run alone | each of two at once | two at once vs alone |",
             "|---|---|---|---|"]
    for policy, label in (("ACTIVE", "active (threads spin)"),
                          ("PASSIVE", "passive (the default this project sets)")):
        alone = measure(policy, 1)[0]
        pair = measure(policy, 2)
        mean = sum(pair) / 2
        lines.append(f"| {label} | {alone:.1f} steps/s | {pair[0]:.1f} and {pair[1]:.1f} steps/s | "
                     f"{alone / mean:.1f}x slower each, {sum(pair) / alone:.2f}x the work done |")
    return "\n".join(lines)


def main() -> None:
    report.main(__doc__, "Two runs at once", "bench.concurrency_bench", run)


if __name__ == "__main__":
    main()
