"""One poller per watched job, shared by all of its event streams.

Each stream used to read the store itself every EVENT_POLL_S: two hundred idle clients of
one job were a thousand database connections a second, and halved the job's speed. Here a
job's first stream starts a poller, the others read what it last saw, and the last one to
go stops it: the store is read once a poll, however many clients there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any


class Snapshot:
    """What a job's poller last read (`reading`: None once the job is purged), and the
    version of that reading (or the error the reading met)."""

    def __init__(self) -> None:
        self.reading: Any = None
        self.error: BaseException | None = None
        self.version = 0
        self.changed = asyncio.Event()
        self.clients = 0
        self.task: asyncio.Task | None = None

    async def after(self, version: int, timeout: float) -> None:
        """Wait until a reading newer than `version` (or `timeout` seconds)."""
        if self.version > version:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.changed.wait()), timeout)
        except asyncio.TimeoutError:
            pass


class JobWatch:
    """read(job_id): what a stream needs of the job (run in a thread), or None if it is gone."""

    def __init__(self, read: Callable[[str], Any], interval: float) -> None:
        self.read = read
        self.interval = interval
        self.watched: dict[str, Snapshot] = {}

    @asynccontextmanager
    async def watch(self, job_id: str):
        snapshot = self.watched.get(job_id)
        if snapshot is None:
            snapshot = self.watched[job_id] = Snapshot()
            snapshot.task = asyncio.create_task(self._poll(job_id, snapshot))
        snapshot.clients += 1
        try:
            yield snapshot
        finally:
            snapshot.clients -= 1
            if snapshot.clients == 0:
                snapshot.task.cancel()
                if self.watched.get(job_id) is snapshot:
                    del self.watched[job_id]

    async def _poll(self, job_id: str, snapshot: Snapshot) -> None:
        while True:
            try:
                snapshot.reading = await asyncio.to_thread(self.read, job_id)
                snapshot.error = None
            except Exception as error:  # noqa: BLE001  (the streams raise it)
                snapshot.error = error
            snapshot.version += 1
            snapshot.changed.set()
            snapshot.changed = asyncio.Event()
            await asyncio.sleep(self.interval)
