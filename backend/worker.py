"""Workers: one thread per compute device, taking jobs from the store in submission order."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

from clipascene_core.errors import UserError
from clipascene_core.io.images import load_image
from clipascene_core.io.records import (
    CellEvent,
    Manifest,
    MatrixEvent,
    NoticeEvent,
    Progress,
    ProgressEvent,
    StageEvent,
)
from clipascene_core.models.clip import ClipEncoder, load_clip
from clipascene_core.models.precision import planned_choice
from clipascene_core.scene.cluster import ClusterError
from clipascene_core.scene.resume import sketch_resumable
from clipascene_core.sketch.engine import Cancelled

from .estimate import MEASURE_FROM_FRACTION, speed_key
from .params import JobParams
from .settings import ModelSettings
from .store import STORAGE_ERRORS, Job, JobStore, disk_trouble, storage_problem

logger = logging.getLogger(__name__)

#: Errors caused by the job's input or the machine's set-up: their message is for the user.
#: Failures shown to the user as theirs (or the cluster's) to fix; anything else is an
#: internal error, logged with its traceback.
USER_ERRORS = (UserError, ClusterError)
#: Progress is written to the store at most this often (cells are written at once).
PROGRESS_INTERVAL_S = 0.5
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
        logger.info("job %s: started on %s (attempt %d)", job.id, self.device, job.attempts)
        started = time.time()
        last_write = 0.0
        notices: list[str] = []

        def report(seconds_per_step: float | None = None, **fields) -> None:
            """Record `fields` of the job, and the device's measured `seconds_per_step` (the
            estimates of queued jobs use it)."""
            # Progress and notices are worth a try, not a failed job: the next one may get through.
            try:
                self.store.update(job.id, **fields)
                if seconds_per_step is not None:
                    self.store.set_meta(speed_key(self.device, self.models.identity), seconds_per_step)
            except STORAGE_ERRORS as error:
                logger.warning("job %s: progress not recorded: %s", job.id, error)

        def on_event(event: MatrixEvent) -> None:
            nonlocal last_write
            self.last_sign = time.monotonic()
            match event:
                case NoticeEvent(text=text):
                    notices.append(text)
                    report(notices=notices)
                case CellEvent(cell=cell):
                    self.store.add_cell(job.id, cell)
                case StageEvent(stage=stage):
                    report(progress=Progress(stage))
                case ProgressEvent() if time.time() - last_write >= PROGRESS_INTERVAL_S:
                    last_write = time.time()
                    elapsed = time.time() - started
                    fraction = event.fraction
                    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
                    report(progress=Progress(
                        event.stage, round(fraction, 4), event.steps_done, event.steps_total,
                        round(eta, 1) if eta is not None else None,
                    ), seconds_per_step=(elapsed / event.steps_done
                                         if fraction >= MEASURE_FROM_FRACTION else None))

        def should_stop() -> bool:
            self.last_sign = time.monotonic()
            if self.stopping.is_set():
                return True
            try:
                return self.store.cancel_requested(job.id)
            except STORAGE_ERRORS:
                return False  # asked again at the next step

        def end(status: str, error: str | None = None) -> None:
            self.persist(lambda: self.store.finish(job.id, status, error),
                         f"record the end of job {job.id}")

        try:
            # The cells of an earlier, interrupted run of the job stay listed (and importable):
            # the run resumes after them (clipascene_core.scene.resume).
            manifest = self.run_matrix(job, on_event, should_stop)
        except Cancelled:
            if self.stopping.is_set() and not self.store.cancel_requested(job.id):
                # Shutting down, not cancelled by a user: run it again at the next start.
                self.store.update(job.id, status="queued", attempts=max(job.attempts - 1, 0))
                logger.info("job %s: interrupted by shutdown; queued again", job.id)
            elif self.persist(lambda: self.store.end_cancelled(job.id), f"cancel job {job.id}"):
                logger.info("job %s: cancelled", job.id)
            else:
                logger.info("job %s: submitted again while it was being cancelled; queued", job.id)
            return
        except USER_ERRORS as error:
            end("failed", str(error))
            logger.warning("job %s: failed: %s", job.id, error)
            return
        except Exception as error:  # the daemon survives any job; the reason goes to the job
            logger.exception("job %s: internal error", job.id)
            end("failed", storage_problem(error, self.store.data_dir) if disk_trouble(error)
                else f"internal error: {type(error).__name__}: {error}")
            return
        steps = manifest.timings["steps"]
        report(progress=Progress("done", 1.0, steps, steps, 0),
               seconds_per_step=(time.time() - started) / max(steps, 1))
        end("done")
        logger.info("job %s: done in %.1f s", job.id, time.time() - started)
