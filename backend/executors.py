"""Where the daemon's jobs run.

`local` (the default): one worker thread per device of this machine runs each job itself.
`ray`: the daemon stays the front door (API, job store, events, files) and runs each job as a
Ray task on whatever node of the cluster has the resources; the cells come back with their
files as they finish (clipascene_core.scene.cluster), and the daemon records them as a local
worker does. A slot thread per job that may run at once claims jobs from the store.
"""

from __future__ import annotations

import threading

from clipascene_core.io.records import StageEvent
from clipascene_core.scene.cluster import (
    RemoteMatrix,
    cluster_resources,
    config_device,
    connect,
    default_gpus,
)

from .params import JobParams
from .settings import ExecutorSettings, ModelSettings
from .store import Job, JobStore
from .worker import Worker

EXECUTORS = ("local", "ray")
#: Most jobs a daemon keeps on a cluster at once (one slot thread each).
MAX_RAY_JOBS = 64


def jobs_that_fit(total: dict, gpus_per_job: float) -> int:
    """How many jobs the cluster's resources hold at once (one CPU each, and their GPUs)."""
    fit = total.get("GPU", 0) / gpus_per_job if gpus_per_job > 0 else total.get("CPU", 0)
    return max(1, min(MAX_RAY_JOBS, int(fit + 1e-9)))


class RayWorker(Worker):
    """A slot of the daemon that runs one job at a time on the cluster."""

    def __init__(self, store: JobStore, slot: int, models: ModelSettings,
                 wake: threading.Event, ray, gpus: float) -> None:
        super().__init__(store, config_device(gpus), models, wake)
        self.name = f"ray-{slot}"
        self.ray = ray
        self.gpus = gpus

    def state(self) -> dict:
        return {**super().state(), "device": f"{self.name} ({self.device})"}

    def run_matrix(self, job: Job, on_event, should_stop) -> dict:
        on_event(StageEvent("waiting for the cluster"))
        config = JobParams(**job.params).to_config(self.device)
        image = (self.store.job_dir(job.id) / job.image_file).read_bytes()
        models = self.models
        matrix = RemoteMatrix(self.ray, image, self.store.out_dir(job.id), config,
                              mask=self.store.user_mask(job.id), clip_model=models.clip_model,
                              weights=models.weights, models_dir=models.models_dir,
                              precision=models.precision, gpus=self.gpus,
                              name=f"clipascene job {job.id}")
        return matrix.run(on_event, should_stop)


class Executor:
    """The daemon's workers for its executor, and what /v1/health says about it."""

    def __init__(self, settings: ExecutorSettings, store: JobStore, devices: list[str],
                 models: ModelSettings, wake: threading.Event) -> None:
        self.settings = settings
        self.ray = None
        if settings.kind == "local":
            self.workers: list[Worker] = [Worker(store, device, models, wake) for device in devices]
            return
        self.ray = connect(settings.ray_address)
        self.gpus = default_gpus(self.ray, settings.gpus_per_job)
        slots = settings.max_jobs or jobs_that_fit(cluster_resources(self.ray)["total"], self.gpus)
        self.workers = [RayWorker(store, slot, models, wake, self.ray, self.gpus)
                        for slot in range(1, slots + 1)]

    def report(self) -> tuple[dict, list[str]]:
        """(what /v1/health shows about the executor, problems to report there)."""
        if self.ray is None:
            return {"kind": "local"}, []
        info = {"kind": "ray", "address": self.settings.ray_address or "this machine",
                "gpus_per_job": self.gpus, "jobs_at_once": len(self.workers)}
        try:
            info["cluster"] = cluster_resources(self.ray)
        except Exception as error:  # noqa: BLE001 - whatever Ray raises, health says it
            return info, [f"the Ray cluster cannot be reached ({error}); jobs wait for it."]
        if info["cluster"]["total"]["GPU"] < self.gpus:
            return info, [f"no node of the Ray cluster has {self.gpus:g} GPU for a job; jobs "
                          "wait until one joins (or restart with --gpus-per-job 0)."]
        return info, []
