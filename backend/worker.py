"""Workers: one thread per compute device, taking jobs from the store in submission order."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from clipascene_core.config import ConfigError
from clipascene_core.engine import Cancelled
from clipascene_core.imageio import ImageInputError, load_image
from clipascene_core.matrix import MatrixEvent, sketch_matrix
from clipascene_core.models import ClipEncoder, WeightsError, load_clip
from clipascene_core.preprocess import MaskInputError

from .params import JobParams
from .store import Job, JobStore

logger = logging.getLogger(__name__)

#: Errors caused by the job's input or the machine's set-up: their message is for the user.
USER_ERRORS = (ImageInputError, ConfigError, WeightsError, MaskInputError, ValueError)
#: Progress is written to the store at most this often (cells are written at once).
PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ModelSettings:
    clip_model: str = "ViT-B-32"
    weights: str = "openai"
    models_dir: Path | None = None

    @property
    def identity(self) -> str:
        return f"{self.clip_model}:{self.weights}"


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

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            job = self.store.claim_next(self.device)
            if job is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self.current = job.id
            try:
                self.process(job)
            finally:
                self.current = None

    def encoder(self) -> ClipEncoder:
        if self._encoder is None:
            from clipascene_core.models import resolve_device

            self._encoder = load_clip(self.models.clip_model, self.models.weights,
                                      resolve_device(self.device), cache_dir=self.models.models_dir)
        return self._encoder

    def process(self, job: Job) -> None:
        logger.info("job %s: started on %s (attempt %d)", job.id, self.device, job.attempts)
        started = time.time()
        last_write = 0.0
        notices: list[str] = []
        folder = self.store.job_dir(job.id)

        def on_event(event: MatrixEvent) -> None:
            nonlocal last_write
            if event.kind == "notice":
                notices.append(event.text)
                self.store.update(job.id, notices=notices)
            elif event.kind == "cell":
                self.store.add_cell(job.id, event.cell)
            elif event.kind == "stage":
                self.store.update(job.id, progress={"stage": event.text, "fraction": 0.0})
            elif event.kind == "progress" and time.time() - last_write >= PROGRESS_INTERVAL_S:
                last_write = time.time()
                progress = event.progress
                elapsed = time.time() - started
                fraction = progress.fraction
                eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
                self.store.update(job.id, progress={
                    "stage": progress.stage, "fraction": round(fraction, 4),
                    "steps_done": progress.steps_done, "steps_total": progress.steps_total,
                    "eta_s": round(eta, 1) if eta is not None else None,
                })

        def should_stop() -> bool:
            return self.stopping.is_set() or self.store.cancel_requested(job.id)

        try:
            config = JobParams(**job.params).to_config()
            image = load_image(folder / job.image_file)
            manifest = sketch_matrix(image, self.store.out_dir(job.id), config, self.encoder(),
                                     models_dir=self.models.models_dir, on_event=on_event,
                                     should_stop=should_stop)
        except Cancelled:
            if self.stopping.is_set() and not self.store.cancel_requested(job.id):
                # Shutting down, not cancelled by a user: run it again at the next start.
                self.store.update(job.id, status="queued", attempts=max(job.attempts - 1, 0))
                logger.info("job %s: interrupted by shutdown; queued again", job.id)
            else:
                self.store.finish(job.id, "cancelled")
                logger.info("job %s: cancelled", job.id)
            return
        except USER_ERRORS as error:
            self.store.finish(job.id, "failed", str(error))
            logger.warning("job %s: failed: %s", job.id, error)
            return
        except Exception as error:  # the daemon survives any job; the reason goes to the job
            logger.exception("job %s: internal error", job.id)
            self.store.finish(job.id, "failed", f"internal error: {type(error).__name__}: {error}")
            return
        self.store.update(job.id, progress={
            "stage": "done", "fraction": 1.0, "eta_s": 0,
            "steps_done": manifest["timings"]["steps"], "steps_total": manifest["timings"]["steps"]})
        self.store.finish(job.id, "done")
        logger.info("job %s: done in %.1f s", job.id, time.time() - started)
