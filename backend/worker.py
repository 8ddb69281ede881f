"""Workers: one thread per compute device, taking jobs from the store in submission order."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

from clipascene_core.io.images import load_image
from clipascene_core.io.records import Manifest
from clipascene_core.models.clip import ClipEncoder, load_clip
from clipascene_core.models.precision import planned_choice
from clipascene_core.scene.resume import sketch_resumable

from .jobrun import JobRun
from .params import JobParams
from .settings import ModelSettings
from .storage import STORAGE_ERRORS, storage_problem
from .store import Job, JobStore

logger = logging.getLogger(__name__)

#: Back-off between tries while the job store cannot be read or written (a full disk, …).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
#: A worker whose job has reported nothing for this long is reported as stuck.
STUCK_AFTER_S = 900.0


class Worker(threading.Thread):
    """Runs jobs on one device until `stop()`."""

    def __init__(self, store: JobStore, device: str, models: ModelSettings,
                 wake: threading.Event) -> None:
        super().__init__(name=f"worker-{device}", daemon=True)
        self.store = store
        self.device = device
        self.models = models
        self.wake = wake
        self.stopping = threading.Event()
        self.current: str | None = None
        self._encoder: ClipEncoder | None = None
        #: The storage error this worker is waiting out, and since when (for /v1/health).
        self.problem: str | None = None
        self.problem_since: float | None = None
        self.last_sign = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def state(self) -> dict:
        """What /v1/health says about this worker."""
        if not self.is_alive():
            state = "stopped" if self.stopping.is_set() else (
                "not started" if self.ident is None else "dead")
        elif self.problem is not None:
            state = "retrying"
        elif self.current is not None and time.monotonic() - self.last_sign > STUCK_AFTER_S:
            state = "stuck"
        else:
            state = "running" if self.current is not None else "idle"
        problem = self.problem
        if state == "dead":
            problem = "the worker thread has ended: restart the backend."
        elif state == "stuck":
            problem = (f"job {self.current} has shown no progress for "
                       f"{(time.monotonic() - self.last_sign) / 60:.0f} minutes.")
        return {"device": self.device, "state": state, "job": self.current, "problem": problem,
                "since": self.problem_since if state == "retrying" else None,
                "precision": self.precision()}

    def precision(self) -> dict | None:
        """CLIP's precision on this worker: as loaded, or as `auto` would choose it."""
        if self._encoder is not None:
            return self._encoder.precision_choice.to_dict()
        try:
            return planned_choice(self.models.precision, self.device, self.models.clip_model)
        except (RuntimeError, ValueError):  # a device torch cannot name here
            return None

    def run(self) -> None:
        while not self.stopping.is_set():
            job = self.persist(partial(self.store.claim_next, self.device), "take the next job")
            if job is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self.current = job.id
            self.last_sign = time.monotonic()
            try:
                self.process(job)
            except Exception as error:  # a fault outside the job's own run: the worker goes on
                logger.exception("job %s: the worker failed", job.id)
                reason = f"internal error: {type(error).__name__}: {error}"
                self.persist(partial(self.store.finish, job.id, "failed", reason),
                             f"record the failure of job {job.id}")
            finally:
                self.current = None

    def persist(self, action, what: str):
        """Run a store operation until it works, backing off while the store fails (a full
        disk, a read-only folder); returns its result, or None when the worker is stopped."""
        delay = RETRY_FIRST_S
        while True:
            try:
                result = action()
            except STORAGE_ERRORS as error:
                problem = f"could not {what}: {storage_problem(error, self.store.data_dir)}"
                if self.problem is None:
                    self.problem_since = time.time()
                    logger.error("worker on %s: %s Trying again with back-off.", self.device, problem)
                self.problem = problem
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.problem is not None:
                logger.warning("worker on %s: the job store works again.", self.device)
                self.problem = self.problem_since = None
            return result

    def encoder(self) -> ClipEncoder:
        if self._encoder is None:
            from clipascene_core.models.clip import resolve_device

            self._encoder = load_clip(self.models.clip_model, self.models.weights,
                                      resolve_device(self.device), cache_dir=self.models.models_dir,
                                      precision=self.models.precision)
        return self._encoder

    def run_matrix(self, job: Job, on_event, should_stop) -> Manifest:
        """Sketch the job's matrix into its output folder, here on this worker's device
        (executors.RayWorker runs it on a cluster), resuming what an interrupted run of the
        job finished there; returns the manifest."""
        encoder = self.encoder()
        config = JobParams(**job.params).to_config(next(encoder.buffers()).device.type)
        image = load_image(self.store.job_dir(job.id) / job.image_file)
        return sketch_resumable(image, self.store.out_dir(job.id), config, encoder,
                             models_dir=self.models.models_dir,
                             user_mask=self.store.user_mask(job.id), on_event=on_event,
                             should_stop=should_stop, image_name=job.image_name)

    def process(self, job: Job) -> None:
        """Run `job` here and record how it went (backend.jobrun)."""
        JobRun(self, job).run()
