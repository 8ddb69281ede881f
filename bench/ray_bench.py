"""Benchmark of the daemon's executors: two tiny-model jobs submitted at once, run by the local
executor (one worker, the jobs one after the other, each with every core) and by the Ray
executor (a local Ray runtime with two CPUs: two tasks side by side, one core each).

For every job: its run time in the daemon (claimed -> done), the matrix's own time inside it
(the manifest's total_s), and the difference, the per-job overhead: for Ray, scheduling the
task, starting a worker process and loading CLIP there (cold) and sending the files back. Each
executor runs two rounds: the first with fresh workers, the second with warm ones.

    .venv/bin/python -m bench.ray_bench [--write docs/performance.md]
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

# Before Ray is imported: the local runtime binds and talks on 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi.testclient import TestClient  # noqa: E402

from bench import report  # noqa: E402
from bench.fidelity_bench import SAMPLE, machine  # noqa: E402
from clipascene_backend.app import create_app  # noqa: E402
from clipascene_backend.executors import ExecutorSettings  # noqa: E402
from clipascene_backend.settings import Settings  # noqa: E402
from clipascene_backend.worker import ModelSettings  # noqa: E402

#: A small but not trivial tiny-model matrix: 2 columns x 3 rows, one region.
JOB = {"preset": "preview", "layers": [2, 8], "rows": 2, "strokes": 16, "iterations": 20,
       "row_steps": 10, "split": False}


def cpu_flags() -> str:
    """lscpu's model name and the vector flags that matter to PyTorch on a CPU."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    fields = dict(line.split(":", 1) for line in lines.splitlines() if ":" in line)
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    flags = [flag for flag in fields.get("Flags", "").split() if flag in wanted]
    present = " ".join(flags) or "none of " + ", ".join(wanted)
    return f"{fields.get('Model name', '?').strip()}; flags: {present}"


def finished(client: TestClient, job_id: str, timeout: float = 1200.0) -> dict:
    """The job's record once it has ended (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not end in {timeout:.0f} s")


def two_jobs(client: TestClient, seeds: tuple[int, int]) -> dict:
    """Submit two jobs at once; wall time until both are done, and each job's times."""
    started = time.monotonic()
    ids = [client.post("/v1/jobs", files={"image": (SAMPLE.name, SAMPLE.read_bytes(), "image/jpeg")},
                       data={"params": json.dumps(dict(JOB, seed=seed))}).json()["id"]
           for seed in seeds]
    jobs = [finished(client, job_id) for job_id in ids]
    wall = time.monotonic() - started
    runs, matrices = [], []
    for job in jobs:
        if job["status"] != "done":
            raise RuntimeError(f"job {job['id']} {job['status']}: {job['error']}")
        manifest = client.app.state.store.results(job["id"]).read_manifest()
        runs.append(job["finished"] - job["started"])
        matrices.append(manifest.timings.total_s)
    return {"wall": wall, "runs": runs, "matrices": matrices}


def measure(executor: ExecutorSettings, label: str) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        models = ModelSettings("tiny-test", "random", data_dir / "models")
        settings = Settings(data_dir=data_dir, devices=["cpu"], models=models, executor=executor)
        with TestClient(create_app(settings)) as client:
            for round_name, seeds in (("first (cold)", (1, 2)), ("second (warm)", (3, 4))):
                result = two_jobs(client, seeds)
                overheads = [run - matrix for run, matrix in zip(result["runs"], result["matrices"],
                                                                 strict=True)]
                rows.append(
                    f"| {label} | {round_name} | {result['wall']:.1f} s | "
                    + " / ".join(f"{value:.1f}" for value in result["matrices"]) + " s | "
                    + " / ".join(f"{value:.1f}" for value in result["runs"]) + " s | "
                    + " / ".join(f"{value:.2f}" for value in overheads) + " s |")
    return rows


def run() -> str:
    import ray

    local = measure(ExecutorSettings(), "local (1 worker, 2 threads)")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    try:
        on_ray = measure(ExecutorSettings("ray", None, gpus_per_job=0), "ray (2 tasks, 1 thread each)")
    finally:
        ray.shutdown()
    return "\n".join([
        f"Machine: {machine()}.",
        f"CPU: {cpu_flags()}.",
        f"Jobs: tiny-test CLIP, random weights; {JOB}.",
        "",
        "| executor | round | wall time, both jobs | matrix time per job (job 1 / job 2) "
        "| run time in the daemon | overhead per job (run − matrix) |",
        "|---|---|---|---|---|---|",
        *local, *on_ray,
    ])


def main() -> None:
    report.main(__doc__, "Jobs on Ray", "bench.ray_bench", run)


if __name__ == "__main__":
    main()
