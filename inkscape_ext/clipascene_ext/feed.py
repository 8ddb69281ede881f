"""The picker's feed: what it knows of a job and how it learns it, off the GTK main loop (no GTK).

`MatrixState` is the job as the picker shows it: the job record, the matrix layout and the
finished cells. It takes a snapshot (GET /v1/jobs/{id} and /matrix) and then the payloads of
the job's server-sent events (`progress`, `cell`) as they come: the events carry the data,
so nothing is fetched again for them.

`Feed` runs the network: one thread follows the job (a snapshot when it opens and again
whenever its event stream (re)connects, then the stream's events; a fallback poll only while
no stream is open) and one thread serves a queue of requests (thumbnails, previews, the mask).
Results reach the view through `post`, which runs a function on the view's main loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .words import FINAL

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0


class Chosen(NamedTuple):
    """The cell the artist chose: its place, the part, and (for the import) its fidelity
    layer and whether it was a draft when chosen."""

    row: int
    column: int
    part: str
    layer: int | None = None
    draft: bool = False


class FeedBackend(Protocol):
    """What the feed needs of `client.Backend` (`events` is optional: without it, it polls)."""

    def job(self, job_id: str) -> dict: ...
    def matrix(self, job_id: str) -> dict: ...


@dataclass
class MatrixState:
    """A job as the picker shows it. Every `apply_*` returns the places whose images must be
    fetched again (a final cell that replaced its draft)."""

    job: dict = field(default_factory=lambda: {"status": "queued", "progress": {}})
    layout: tuple[int, tuple[int, ...]] | None = None
    split: bool = False
    ready: dict[tuple[int, int], dict] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.job.get("status") or "queued"

    @property
    def progress(self) -> dict:
        return self.job.get("progress") or {}

    def apply_snapshot(self, job: dict, matrix: dict) -> set[tuple[int, int]]:
        """A job record (GET /v1/jobs/{id}) and its matrix (GET /v1/jobs/{id}/matrix)."""
        self.job = dict(job)
        progress = dict(job.get("progress") or {})
        for key in ("cells_done", "cells_total"):  # an older backend's job lacks them
            progress.setdefault(key, matrix.get(key, 0))
        self.job["progress"] = progress
        self.job.setdefault("status", matrix.get("status", "queued"))
        self.layout = (int(matrix["rows"]), tuple(int(layer) for layer in matrix["layers"]))
        self.split = bool(matrix.get("split"))
        ready = {(cell["row"], cell["column"]): cell for cell in matrix["cells"] if cell.get("ready")}
        replaced = {place for place, cell in ready.items() if _replaces(self.ready.get(place), cell)}
        self.ready = ready
        return replaced

    def apply_progress(self, update: dict) -> None:
        """A `progress` event (ProgressUpdate: the job's progress, status and notices)."""
        self.job["status"] = update.get("status", self.status)
        if "notices" in update:  # an older backend's event lacks them
            self.job["notices"] = list(update["notices"])
        self.job["progress"] = {key: value for key, value in update.items()
                                if key not in ("id", "status", "notices")}

    def apply_cell(self, cell: dict) -> set[tuple[int, int]]:
        """A `cell` event (CellReady: place, layer, strokes per region, URLs, draft)."""
        place = (int(cell["row"]), int(cell["column"]))
        before = self.ready.get(place)
        if before is not None and not before.get("draft") and cell.get("draft"):
            return set()  # a final cell is never replaced by a draft (a replayed stream)
        self.ready[place] = {**cell, "ready": True}
        # The regions the run actually has: a split job falls back to one ("scene") when it
        # finds no object.
        regions = set(cell.get("strokes") or {})
        if regions:
            self.split = bool(regions & {"foreground", "background"})
        return {place} if _replaces(before, cell) else set()

    def chosen(self, row: int, column: int, part: str) -> Chosen:
        info = self.ready.get((row, column)) or {}
        layer = info.get("layer")
        if layer is None and self.layout is not None:
            layer = self.layout[1][column]
        return Chosen(row, column, part, layer, bool(info.get("draft")))


def _replaces(before: dict | None, cell: dict) -> bool:
    """Whether `cell` replaces the images of `before` (a final cell its draft)."""
    return before is not None and bool(before.get("draft")) != bool(cell.get("draft"))


class Feed:
    """The picker's network threads. `view` gets, on its main loop through `post`:
    `apply_status(job, matrix)` for a snapshot, `apply_event(kind, data)` for each event and
    `show_problem(message)` when the backend cannot be reached."""

    def __init__(self, backend: FeedBackend, job_id: str, view: Any,
                 post: Callable[..., None], *, follow: bool = True,
                 poll_interval: float = POLL_INTERVAL_S):
        self.backend = backend
        self.job_id = job_id
        self.view = view
        self.post = post
        self.follow = follow
        self.poll_interval = poll_interval
        self._stopped = threading.Event()
        self._requests: queue.Queue = queue.Queue()

    def start(self) -> None:
        threading.Thread(target=self._serve, name="clipascene-requests", daemon=True).start()
        if self.follow:
            threading.Thread(target=self._watch, name="clipascene-events", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._requests.put(None)

    def request(self, work: Callable[[], Any], done: Callable[[Any], None],
                failed: Callable[[str], None]) -> None:
        """Run `work` on the request thread; then `done(result)` or `failed(message)` on the
        view's main loop."""
        self._requests.put((work, done, failed))

    def cancel(self, done: Callable[[], None], failed: Callable[[str], None]) -> None:
        """Cancel the job in the backend on a thread of its own (not behind the thumbnails)."""
        def run():
            try:
                self.backend.cancel(self.job_id)
            except Exception as error:  # shown to the user, who may Close instead
                self.post(failed, str(error))
            else:
                self.post(done)

        threading.Thread(target=run, name="clipascene-cancel", daemon=True).start()

    # --- threads ------------------------------------------------------------------------------

    def _snapshot(self) -> str | None:
        """Fetch the job and its matrix and hand them to the view -> the job's status (None
        when the backend could not be asked)."""
        try:
            job = self.backend.job(self.job_id)
            matrix = self.backend.matrix(self.job_id)
        except Exception as error:  # shown to the user; the next poll retries
            logger.debug("status fetch failed", exc_info=True)
            self.post(self.view.show_problem, str(error))
            return None
        self.post(self.view.apply_status, job, matrix)
        return job.get("status")

    def _watch(self) -> None:
        """Snapshot, then the event stream's payloads; on a stream that ends or fails before
        the job does, wait one poll interval and start again (the snapshot is the fallback
        poll). Any exception ends in the view's notice, never in a silent thread."""
        while not self._stopped.is_set():
            if self._snapshot() in FINAL:
                return  # a final job changes no more
            if hasattr(self.backend, "events") and self._stream():
                return
            self._stopped.wait(self.poll_interval)

    def _stream(self) -> bool:
        """Follow the event stream -> whether the job ended (its last event came)."""
        try:
            for kind, data in self.backend.events(self.job_id):
                if self._stopped.is_set():
                    return True
                if kind in FINAL:  # the last event: one more snapshot for the notices and error
                    self._snapshot()
                    return True
                if kind in ("progress", "cell"):
                    self.post(self.view.apply_event, kind, data)
        except Exception:  # no stream (an old backend, a proxy): the fallback poll does the work
            logger.debug("event stream ended", exc_info=True)
        return False

    def _serve(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            work, done, failed = item
            try:
                result = work()
            except Exception as error:  # shown to the user; asked again later
                logger.debug("request failed", exc_info=True)
                self.post(failed, str(error))
            else:
                self.post(done, result)
