"""The job store: SQLite (WAL) records of jobs and their finished cells, files beside it.

Layout of the data folder:
    jobs.sqlite3                 job and cell records, facts such as each device's measured speed
    jobs/{id}/input.{ext}        the uploaded image, as sent
    jobs/{id}/user-mask.{ext}    the object mask drawn by the user, as sent (when there is one)
    jobs/{id}/out/               the matrix files (clipascene_core.io.records.OutputFolder)

Every method opens its own short connection, so worker threads and request handlers never
share one; WAL lets readers proceed while a worker writes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipascene_core.io.records import CellRecord, Layout, OutputFolder, Progress

from .facts import RunFacts, stored_facts
from .migrations import upgrade
from .storage import STORAGE_ERRORS, _disk_full, damaged_database, storage_problem

FINAL = ("done", "failed", "cancelled")
_JOB_ID = re.compile(r"^[a-f0-9]{16}$")
#: The name (before its suffix) of the user's drawn mask in a job's folder.
USER_MASK = "user-mask"
#: A job whose worker died this many times is failed instead of run again.
MAX_ATTEMPTS = 3
#: SQLite opens a database read-only while its file is write-protected, and as long as the
#: process's connections to it overlap (a worker, event streams), every later connection
#: shares that state: after a write fails so on a file that is writable again, new
#: connections wait (at most this long) until the open ones have closed.
RESET_WAIT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    image_name TEXT NOT NULL,
    image_file TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    notices TEXT NOT NULL DEFAULT '[]',
    device TEXT,
    layout TEXT,
    facts TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, created);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (key);
CREATE TABLE IF NOT EXISTS cells (
    job_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    layer INTEGER NOT NULL,
    data TEXT NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (job_id, row, layer)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StoreError(RuntimeError):
    """The data folder or its database cannot be used. The message says what to do."""


def valid_job_id(job_id: str) -> bool:
    """Job ids are 16 lowercase hex digits: nothing else can reach the file system."""
    return bool(_JOB_ID.fullmatch(job_id))


@dataclass
class Job:
    """A job's record. layout: the shape of its matrix, fixed when it was submitted (a later
    change of the presets does not reshape an old job); facts: what its run is (backend.facts),
    resolved at submission; progress: as its run last reported."""

    id: str
    key: str
    status: str
    params: dict
    image_name: str
    image_file: str
    width: int
    height: int
    created: float
    started: float | None
    finished: float | None
    attempts: int
    cancel_requested: bool
    error: str | None
    progress: Progress
    notices: list
    device: str | None
    layout: Layout
    facts: RunFacts

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["params"] = json.loads(values["params"])
        values["progress"] = Progress.from_dict(json.loads(values["progress"]))
        values["notices"] = json.loads(values["notices"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["layout"] = Layout.from_dict(json.loads(values["layout"]))
        values["facts"] = RunFacts.from_dict(json.loads(values["facts"]))
        return cls(**values)


class JobStore:
    def __init__(self, data_dir: Path) -> None:
        """Open (or create) the store; raises StoreError saying what is wrong and what to do."""
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.path = self.data_dir / "jobs.sqlite3"
        self._gate = threading.Condition()
        self._open = 0
        self._resetting = False
        try:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            # Uploads were once checked through temporary files; a crash could leave them.
            for stale in self.data_dir.glob("*.upload"):
                stale.unlink(missing_ok=True)
            with self._connect() as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SCHEMA)
                upgrade(connection, set(Job.__dataclass_fields__), self.jobs_dir)
                check = connection.execute("PRAGMA quick_check").fetchone()[0]
                columns = {row["name"] for row in connection.execute("PRAGMA table_info(jobs)")}
                cell_columns = {row["name"] for row in connection.execute("PRAGMA table_info(cells)")}
        except STORAGE_ERRORS as error:
            raise StoreError(storage_problem(error, self.data_dir)) from None
        if check != "ok":
            raise StoreError(damaged_database(self.path, f"integrity check: {check}"))
        missing = (set(Job.__dataclass_fields__) - columns) | ({"job_id", "row", "layer", "data",
                                                                "finished"} - cell_columns)
        if missing:
            raise StoreError(damaged_database(
                self.path, f"its tables lack the columns {', '.join(sorted(missing))}"))

    @contextmanager
    def _connect(self):
        with self._gate:  # while the store is being reset, new connections wait (bounded)
            self._gate.wait_for(lambda: not self._resetting, timeout=RESET_WAIT_S)
            self._open += 1
        try:
            uri = "file:" + urllib.parse.quote(str(self.path))
            if self.path.exists() and not os.access(self.path, os.W_OK):
                uri += "?mode=ro"  # reads go on; writes fail until it is writable again
            else:
                self._restore_companions()
            connection = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            connection.row_factory = sqlite3.Row
            try:
                connection.execute("PRAGMA busy_timeout=30000")
                yield connection
            except sqlite3.OperationalError as error:
                if "readonly" in str(error) and os.access(self.path, os.W_OK):
                    with self._gate:
                        self._resetting = True
                raise
            finally:
                connection.close()
        finally:
            with self._gate:
                self._open -= 1
                if self._open == 0:
                    self._resetting = False
                self._gate.notify_all()

    def _restore_companions(self) -> None:
        """Give the WAL and shared-memory files back the database's permissions: SQLite made
        them with the database's mode, so while it was read-only they were made read-only."""
        for companion in (self.path.with_name(self.path.name + "-wal"),
                          self.path.with_name(self.path.name + "-shm")):
            try:
                if not os.access(companion, os.W_OK) and companion.exists():
                    companion.chmod(self.path.stat().st_mode & 0o777)
            except OSError:
                pass  # not ours to change: the error that follows says what is wrong

    # --- paths ---------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise ValueError(f"invalid job id {job_id!r}")
        return self.jobs_dir / job_id

    def out_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "out"

    def results(self, job_id: str) -> OutputFolder:
        """The job's matrix files, by name."""
        return OutputFolder(self.out_dir(job_id))

    def user_mask(self, job_id: str) -> Path | None:
        """The object mask the user drew for the job, if one was sent."""
        return next(self.job_dir(job_id).glob(f"{USER_MASK}.*"), None)

    # --- jobs ----------------------------------------------------------------------------

    def submit(self, key: str, params: dict, layout: Layout, image_name: str, image_bytes: bytes,
               suffix: str, width: int, height: int, mask: tuple[bytes, str] | None = None,
               facts: RunFacts | None = None) -> tuple[Job, bool]:
        """Create a queued job, or return the existing job with the same key.

        layout: the shape of the job's matrix, as its parameters give it now; facts: what its
        run will be (by default as on a CPU; a job queued again gets them anew).
        mask: the user's drawn object mask and its suffix, kept beside the image.

        Returns (job, cached): cached when the existing job is used as it is. A failed or
        cancelled job with the same key is queued again, and a job being cancelled goes on
        (its worker queues it again if it has already stopped): neither is a cache hit.
        """
        facts = facts or stored_facts(params, "cpu")
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    job = Job.from_row(row)
                    cached = job.status in ("queued", "running", "done") and not job.cancel_requested
                    if job.status == "running" and job.cancel_requested:
                        connection.execute("UPDATE jobs SET cancel_requested=0 WHERE id=?", (job.id,))
                    elif job.status in ("failed", "cancelled"):
                        connection.execute(
                            "UPDATE jobs SET status='queued', error=NULL, cancel_requested=0, "
                            "attempts=0, created=?, progress='{}', notices='[]', facts=? WHERE id=?",
                            (time.time(), json.dumps(facts.to_dict()), job.id))
                    job = Job.from_row(connection.execute(
                        "SELECT * FROM jobs WHERE id=?", (job.id,)).fetchone())
                    connection.execute("COMMIT")
                    return job, cached
                job_id = secrets.token_hex(8)
                folder = self.job_dir(job_id)
                folder.mkdir(parents=True)
                image_file = f"input{suffix}"
                (folder / image_file).write_bytes(image_bytes)
                if mask is not None:
                    (folder / f"{USER_MASK}{mask[1]}").write_bytes(mask[0])
                connection.execute(
                    "INSERT INTO jobs (id, key, status, params, image_name, image_file, width, height,"
                    " created, layout, facts) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, key, json.dumps(params), image_name, image_file, width, height,
                     time.time(), json.dumps(layout.to_dict()), json.dumps(facts.to_dict())))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return self.get(job_id), False

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """The rows of a query. On a full disk SQLite cannot map the shared-memory file a
        WAL database is read through ("disk I/O error"): the rows are then read from the
        database file alone, as last checkpointed, so finished jobs are still served."""
        try:
            with self._connect() as connection:
                return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            if not _disk_full(error, self.data_dir) or not self.path.exists():
                raise
        connection = sqlite3.connect("file:" + urllib.parse.quote(str(self.path)) + "?immutable=1",
                                     uri=True, isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def get(self, job_id: str) -> Job | None:
        if not valid_job_id(job_id):
            return None
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    def list(self, limit: int = 100) -> list[Job]:
        rows = self._read("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        return [Job.from_row(row) for row in rows]

    def queue_depth(self) -> int:
        return self._read("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")[0][0]

    def claim_next(self, device: str) -> Job | None:
        """Atomically take the oldest queued job for a worker on `device`."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute(
                    "SELECT id FROM jobs WHERE status='queued' ORDER BY created LIMIT 1").fetchone()
                if row is None:
                    connection.execute("COMMIT")
                    return None
                connection.execute(
                    "UPDATE jobs SET status='running', started=?, attempts=attempts+1, device=? "
                    "WHERE id=?", (time.time(), device, row["id"]))
                # Read in the same transaction: a job is never claimed without its worker knowing.
                job = Job.from_row(connection.execute(
                    "SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone())
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return job

    def update(self, job_id: str, **fields: Any) -> None:
        """Set fields of a job's record (progress: a Progress; facts: RunFacts)."""
        for record in ("progress", "facts"):
            if record in fields:
                fields[record] = fields[record].to_dict()
        encoded = {key: json.dumps(value) if key in ("progress", "notices", "params", "facts") else value
                   for key, value in fields.items()}
        assignments = ", ".join(f"{key}=?" for key in encoded)
        with self._connect() as connection:
            connection.execute(f"UPDATE jobs SET {assignments} WHERE id=?",
                               (*encoded.values(), job_id))

    def finish(self, job_id: str, status: str, error: str | None = None) -> None:
        self.update(job_id, status=status, error=error, finished=time.time())

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one at once, a running one at its worker's next step."""
        with self._connect() as connection:
            connection.execute(
                "UPDATE jobs SET status='cancelled', finished=? WHERE id=? AND status='queued'",
                (time.time(), job_id))
            connection.execute(
                "UPDATE jobs SET cancel_requested=1 WHERE id=? AND status='running'", (job_id,))
        return self.get(job_id)

    def end_cancelled(self, job_id: str) -> bool:
        """A worker stopped a job on a cancel request: mark it cancelled, unless it was
        submitted again meanwhile (then it is queued again). Returns whether it was cancelled."""
        with self._connect() as connection:
            cancelled = connection.execute(
                "UPDATE jobs SET status='cancelled', finished=? WHERE id=? AND cancel_requested=1",
                (time.time(), job_id)).rowcount
            if not cancelled:
                connection.execute(
                    "UPDATE jobs SET status='queued', attempts=MAX(attempts-1, 0) WHERE id=?",
                    (job_id,))
        return bool(cancelled)

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as connection:
            row = connection.execute("SELECT cancel_requested FROM jobs WHERE id=?",
                                     (job_id,)).fetchone()
        return row is None or bool(row[0])

    def purge(self, job_id: str, status: str) -> bool:
        """Forget a job and delete its files, if its status is still `status` (as the caller
        saw it: a queued job a worker claimed meanwhile is not purged under it, which would
        leave it writing a folder no record names). Returns whether it was purged."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
                if row is not None and row["status"] != status:
                    connection.execute("ROLLBACK")
                    return False
                connection.execute("DELETE FROM cells WHERE job_id=?", (job_id,))
                connection.execute("DELETE FROM jobs WHERE id=?", (job_id,))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return True

    def recover(self) -> list[tuple[str, str]]:
        """After a crash: re-queue jobs left running, or fail them after MAX_ATTEMPTS.

        Returns (job id, what happened) pairs for the log.
        """
        outcomes = []
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT id, attempts, cancel_requested FROM jobs WHERE status='running'").fetchall()
            for row in rows:
                if row["cancel_requested"]:
                    connection.execute("UPDATE jobs SET status='cancelled', finished=? WHERE id=?",
                                       (time.time(), row["id"]))
                    outcomes.append((row["id"], "cancelled"))
                elif row["attempts"] >= MAX_ATTEMPTS:
                    connection.execute(
                        "UPDATE jobs SET status='failed', finished=?, error=? WHERE id=?",
                        (time.time(), f"the backend stopped during this job {row['attempts']} times; "
                                      "it was not started again", row["id"]))
                    outcomes.append((row["id"], "failed"))
                else:
                    connection.execute("UPDATE jobs SET status='queued' WHERE id=?", (row["id"],))
                    outcomes.append((row["id"], "re-queued"))
        return outcomes

    # --- facts about the service (e.g. the measured speed of a device) -------------------

    def set_meta(self, key: str, value: Any) -> None:
        with self._connect() as connection:
            connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               (key, json.dumps(value)))

    def meta(self, key: str) -> Any:
        """The value stored under `key`, or None."""
        with self._connect() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row is not None else None

    # --- cells ---------------------------------------------------------------------------

    def add_cell(self, job_id: str, cell: CellRecord) -> None:
        with self._connect() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO cells (job_id, row, layer, data, finished) VALUES (?,?,?,?,?)",
                (job_id, cell.row, cell.layer, json.dumps(cell.to_dict()), time.time()))

    def cells(self, job_id: str) -> list[CellRecord]:
        """The job's finished cells, in the order they were finished."""
        rows = self._read("SELECT data FROM cells WHERE job_id=? ORDER BY finished, row, layer",
                          (job_id,))
        return [CellRecord.from_dict(json.loads(row["data"])) for row in rows]

