"""One job on a worker: its run's events turned into the job's record, and its end.

A `JobRun` is made by `Worker.process` for each job it takes. It settles the job's run facts
for the worker's device type, runs the matrix (`Worker.run_matrix`: here, or on a cluster),
records what the run reports (notices, progress and the device's measured speed, cells, the
regions actually sketched) and how it ended.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from clipascene_core.errors import UserError
from clipascene_core.io.records import (
    CellEvent,
    CellRecord,
    MatrixEvent,
    NoticeEvent,
    Progress,
    ProgressEvent,
    StageEvent,
)
from clipascene_core.scene.cluster import ClusterError
from clipascene_core.sketch.engine import Cancelled

from .estimate import MEASURE_FROM_FRACTION, speed_key
from .facts import resolve_facts, torch_device_type
from .storage import STORAGE_ERRORS, disk_trouble, storage_problem
from .store import Job

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)

#: Errors caused by the job's input or the machine's set-up: their message is for the user.
#: Failures shown to the user as theirs (or the cluster's) to fix; anything else is an
#: internal error, logged with its traceback.
USER_ERRORS = (UserError, ClusterError)
#: Progress is written to the store at most this often (cells are written at once).
PROGRESS_INTERVAL_S = 0.5


class JobRun:
    """`job` run by `worker`: `run()` once."""

    def __init__(self, worker: Worker, job: Job) -> None:
        self.worker = worker
        self.store = worker.store
        self.job = job
        self.started = time.time()
        self.last_write = 0.0
        self.notices: list[str] = []

    def report(self, seconds_per_step: float | None = None, **fields) -> None:
        """Record `fields` of the job, and the device's measured `seconds_per_step` (the
        estimates of queued jobs use it)."""
        # Progress and notices are worth a try, not a failed job: the next one may get through.
        try:
            self.store.update(self.job.id, **fields)
            if seconds_per_step is not None:
                self.store.set_meta(speed_key(self.worker.device, self.worker.models.identity),
                                    seconds_per_step)
        except STORAGE_ERRORS as error:
            logger.warning("job %s: progress not recorded: %s", self.job.id, error)

    def on_event(self, event: MatrixEvent) -> None:
        self.worker.last_sign = time.monotonic()
        match event:
            case NoticeEvent(text=text):
                self.notices.append(text)
                self.report(notices=self.notices)
            case CellEvent(cell=cell):
                self.store.add_cell(self.job.id, cell)
                self.learn_regions(cell)
            case StageEvent(stage=stage):
                self.report(progress=Progress(stage))
            case ProgressEvent() if time.time() - self.last_write >= PROGRESS_INTERVAL_S:
                self.last_write = time.time()
                elapsed = time.time() - self.started
                fraction = event.fraction
                eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
                self.report(progress=Progress(
                    event.stage, round(fraction, 4), event.steps_done, event.steps_total,
                    round(eta, 1) if eta is not None else None,
                ), seconds_per_step=(elapsed / event.steps_done
                                     if fraction >= MEASURE_FROM_FRACTION else None))

    def learn_regions(self, cell: CellRecord) -> None:
        """A split planned as two regions falls back to one scene when it finds no object:
        the cell says which regions were sketched, and the job's facts (its matrix, its step
        counts) say so from then on."""
        regions = tuple(sorted(cell.regions))
        facts = self.job.facts
        if regions and regions != facts.regions:
            facts = resolve_facts(self.job.params, facts.device_type, regions)[0]
            self.report(facts=facts)
            self.job.facts = facts

    def should_stop(self) -> bool:
        self.worker.last_sign = time.monotonic()
        if self.worker.stopping.is_set():
            return True
        try:
            return self.store.cancel_requested(self.job.id)
        except STORAGE_ERRORS:
            return False  # asked again at the next step

    def end(self, status: str, error: str | None = None) -> None:
        self.worker.persist(lambda: self.store.finish(self.job.id, status, error),
                            f"record the end of job {self.job.id}")

    def settle_facts(self) -> None:
        """Facts resolved for another device type (a job submitted while a CPU worker came
        first, taken by a GPU's) are resolved again for this one, once."""
        device_type = torch_device_type(self.worker.device)
        if self.job.facts.device_type != device_type:
            self.job.facts = resolve_facts(self.job.params, device_type)[0]
            self.worker.persist(lambda: self.store.update(self.job.id, facts=self.job.facts),
                                f"record the run facts of job {self.job.id}")

    def run(self) -> None:
        job = self.job
        logger.info("job %s: started on %s (attempt %d)", job.id, self.worker.device, job.attempts)
        try:
            self.settle_facts()
            # The cells of an earlier, interrupted run of the job stay listed (and importable):
            # the run resumes after them (clipascene_core.scene.resume).
            manifest = self.worker.run_matrix(job, self.on_event, self.should_stop)
        except Cancelled:
            self.cancelled()
            return
        except USER_ERRORS as error:
            self.end("failed", str(error))
            logger.warning("job %s: failed: %s", job.id, error)
            return
        except Exception as error:  # the daemon survives any job; the reason goes to the job
            logger.exception("job %s: internal error", job.id)
            self.end("failed", storage_problem(error, self.store.data_dir) if disk_trouble(error)
                     else f"internal error: {type(error).__name__}: {error}")
            return
        steps = manifest.timings.steps
        self.report(progress=Progress("done", 1.0, steps, steps, 0),
                    seconds_per_step=(time.time() - self.started) / max(steps, 1))
        self.end("done")
        logger.info("job %s: done in %.1f s", job.id, time.time() - self.started)

    def cancelled(self) -> None:
        job, store = self.job, self.store
        if self.worker.stopping.is_set() and not store.cancel_requested(job.id):
            # Shutting down, not cancelled by a user: run it again at the next start.
            store.update(job.id, status="queued", attempts=max(job.attempts - 1, 0))
            logger.info("job %s: interrupted by shutdown; queued again", job.id)
        elif self.worker.persist(lambda: store.end_cancelled(job.id), f"cancel job {job.id}"):
            logger.info("job %s: cancelled", job.id)
        else:
            logger.info("job %s: submitted again while it was being cancelled; queued", job.id)
