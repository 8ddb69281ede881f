"""The backend as a real process under faults: uploads that would stall it, its data folder
turning read-only and back, its descriptors running out and coming back, its log file
failing. Every wait is bounded in time and in requests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from clipascene_backend.logs import SafeFileHandler
from clipascene_backend.storage import STORAGE_ERRORS, storage_problem
from clipascene_backend.store import JobStore
from clipascene_backend.watch import JobWatch
from clipascene_core.io.records import CellRecord, Layout
from tests.backend_helpers import TINY, start_server, submit, wait_for_status
from tests.crafted_images import flat_png, scan_bomb

#: A job that runs until it is cancelled.
ENDLESS = {**TINY, "iterations": 20_000}


def events_arrival(client, job_id: str, stop: threading.Event, times: list,
                   broken: list | None = None) -> None:
    """Note when each event of the job's stream arrives, until `stop` (run in a thread);
    a stream broken before `stop` goes into `broken`."""
    try:
        with client.get(f"/v1/jobs/{job_id}/events", stream=True, timeout=(5, 60)) as response:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    times.append(time.monotonic())
                if stop.is_set():
                    return
    except requests.RequestException as error:
        if not stop.is_set() and broken is not None:
            broken.append(error)


def test_scan_bombs_are_refused_and_slow_uploads_hold_up_no_other_request(tmp_path):
    server = start_server(tmp_path / "data")
    try:
        client = server.client
        job_id = submit(client, ENDLESS).json()["id"]
        wait_for_status(client, job_id, wanted=("running",), timeout=60,
                        check=lambda job: (job["progress"]["steps_done"] or 0) > 0)
        # 100 scans: the most a 16 MP JPEG may have, about a second and a half of decoding
        # each; sent with a mask of the wrong size, so no job is made after the decoding.
        slow = scan_bomb(4000, 4000, 94)
        bomb = scan_bomb(4000, 4000, 5000)  # ~70 s of decoding; refused from its markers
        answers: dict[str, list] = {"slow": [], "bomb": []}

        def send(kind: str, image: bytes) -> None:
            started = time.monotonic()
            files = {"image": ("x.jpg", image, "image/jpeg"),
                     "mask": ("m.png", flat_png(10, 10), "image/png")}
            response = client.session.post(client.base + "/v1/jobs", files=files, timeout=120,
                                           data={"params": json.dumps(TINY)})
            answers[kind].append((response.status_code, response.json()["detail"],
                                  time.monotonic() - started))

        stop, arrivals, pings = threading.Event(), [], []
        stream = threading.Thread(target=events_arrival, args=(client, job_id, stop, arrivals))
        stream.start()
        uploads = [threading.Thread(target=send, args=(kind, image))
                   for kind, image in [("slow", slow)] * 6 + [("bomb", bomb)] * 4]
        began = time.monotonic()
        for thread in uploads:
            thread.start()
        while any(thread.is_alive() for thread in uploads) and time.monotonic() - began < 120:
            started = time.monotonic()
            assert requests.get(server.url + "/v1/health", timeout=30).status_code == 200
            pings.append(time.monotonic() - started)
            time.sleep(0.2)
        busy = time.monotonic() - began
        for thread in uploads:
            thread.join(timeout=60)
        stop.set()
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
        stream.join(timeout=30)

        assert [(status, "scans, too many" in detail) for status, detail, _ in answers["bomb"]] \
            == [(400, True)] * 4, answers["bomb"]
        assert [(status, "draw the mask" in detail) for status, detail, _ in answers["slow"]] \
            == [(400, True)] * 6, answers["slow"]
        assert busy > 3.0, "the slow uploads kept the decoder busy for a while"
        # Meanwhile: every health check answered at once, and the job's events kept coming.
        assert max(pings) < 2.0, pings
        during = [moment for moment in arrivals if began <= moment <= began + busy]
        gaps = [later - earlier
                for earlier, later in zip([began, *during], [*during, began + busy], strict=True)]
        assert len(during) >= 3 and max(gaps) < 5.0, gaps
        assert client.get("/v1/health").json()["ok"]
    finally:
        server.stop()


# --- the data folder turning read-only, descriptors running out, the log failing -----------

def test_a_log_file_that_cannot_be_written_never_raises_and_is_written_again(tmp_path, capsys):
    path = tmp_path / "backend.log"
    handler = SafeFileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("test-safe-log")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("one")
        handler.close()  # as uvicorn's logging set-up did
        path.rename(tmp_path / "backend.log.old")
        path.mkdir()  # the file cannot be opened again, even by root
        log.warning("two")
        log.warning("three")
        path.rmdir()
        log.warning("four")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert (tmp_path / "backend.log.old").read_text() == "one\n"
    assert path.read_text() == "four\n"
    said = capsys.readouterr().err
    assert said.count("cannot write") == 1 and said.count("is written again") == 1, said


def as_other_user() -> dict:
    """Popen arguments that run the server as a user the folder's permissions bind (root
    writes into read-only folders): `nobody` when the tests run as root."""
    return {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}


def set_writable(folder: Path, writable: bool, what: str = "folder") -> None:
    """Turn the data folder and everything in it (or only its database) read-only, or
    writable again."""
    # os.walk skips a folder that goes while it walks (the running job's checkpoints).
    tree = [folder, *(Path(root) / name for root, folders, files in os.walk(folder)
                      for name in folders + files)]
    for path in tree if what == "folder" else [folder / "jobs.sqlite3"]:
        try:
            mode = path.stat().st_mode
            mode = mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
            path.chmod(mode)
        except FileNotFoundError:  # gone meanwhile: SQLite's -wal, a checkpoint's .part file
            pass


@pytest.fixture
def own_folder():
    """A data folder outside pytest's (root-only) temporary folder, owned by the server's user."""
    folder = Path(tempfile.mkdtemp(prefix="clipascene-faults-"))
    folder.chmod(0o755)
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, 65534, 65534)
    yield data
    set_writable(data, True) if data.exists() else None
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("what", ["folder", "database"])
def test_a_data_folder_turning_read_only_and_back_needs_no_restart(own_folder, what):
    server = start_server(own_folder, **as_other_user())
    stop, arrivals, broken = threading.Event(), [], []
    try:
        client = server.client
        running = submit(client, {**ENDLESS, "seed": 1}).json()["id"]
        wait_for_status(client, running, wanted=("running",), timeout=60,
                        check=lambda job: (job["progress"]["steps_done"] or 0) > 0)
        # Event streams read the store all the while, as the picker's and the page's do.
        streams = [threading.Thread(target=events_arrival,
                                    args=(client, running, stop, arrivals, broken))
                   for _ in range(3)]
        for stream in streams:
            stream.start()
        set_writable(own_folder, False, what)
        try:
            refused = submit(client, {**TINY, "seed": 2})
            assert refused.status_code == 503 and "cannot be written" in refused.json()["detail"]
            time.sleep(3)  # the worker meets the read-only store meanwhile
            assert server.process.poll() is None
        finally:
            set_writable(own_folder, True, what)
        # Writable again: the running job records its progress again and can be cancelled
        # (or, had it met the read-only folder writing a file, it ended saying so); the
        # worker lives; the next job runs.
        job = client.get(f"/v1/jobs/{running}").json()
        if job["status"] == "running":
            steps = job["progress"]["steps_done"] or 0
            wait_for_status(client, running, wanted=("running",), timeout=60,
                            check=lambda job: (job["progress"]["steps_done"] or 0) > steps + 5)
            assert client.delete(f"/v1/jobs/{running}").status_code == 200
            assert wait_for_status(client, running, timeout=60)["status"] == "cancelled"
        else:
            assert job["status"] == "failed" and "cannot be written" in job["error"], job
        job_id = submit(client, {**TINY, "seed": 3}).json()["id"]
        assert wait_for_status(client, job_id, timeout=90)["status"] == "done"
        health = client.get("/v1/health").json()
        assert health["ok"] and health["workers"][0]["state"] == "idle", health
        assert (own_folder / "backend.pid").exists()
        assert broken == [], broken
    finally:
        stop.set()
        server.stop()


def lower_descriptor_limit(limit: int):
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return lower


def test_running_out_of_descriptors_refuses_connections_then_recovers(tmp_path):
    data = tmp_path / "data"
    server = start_server(data, preexec_fn=lower_descriptor_limit(200))
    idle: list[socket.socket] = []
    try:
        # Twice the server's descriptors in idle connections (the backlog holds the rest).
        for _ in range(400):
            try:
                idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            except OSError:
                break
        time.sleep(2)
        with pytest.raises(requests.RequestException):
            requests.get(server.url + "/v1/health", timeout=3)
        assert server.process.poll() is None
    finally:
        for connection in idle:
            connection.close()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(server.url + "/v1/health", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        health = server.client.get("/v1/health").json()
        assert health["workers"][0]["state"] in ("idle", "retrying"), health
        job_id = submit(server.client, TINY).json()["id"]
        assert wait_for_status(server.client, job_id, timeout=90)["status"] == "done"
        assert json.loads((data / "backend.pid").read_text())["pid"] == server.process.pid
        assert "Traceback" not in server.output()
    finally:
        server.stop()


# --- races on one job ---------------------------------------------------------------------

def purge_until_gone(server, job_id: str, statuses: list) -> None:
    """Purge a job, cancelling it while its worker still holds it (bounded)."""
    for _ in range(300):
        response = requests.delete(f"{server.url}/v1/jobs/{job_id}", params={"purge": "true"},
                                   timeout=30)
        statuses.append(response.status_code)
        if response.status_code in (200, 404):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} could not be purged: {statuses[-3:]}")


def test_cancel_and_purge_racing_each_other_and_the_worker_never_answer_5xx(tmp_path):
    server = start_server(tmp_path / "data")
    statuses: list[int] = []
    purged: list[str] = []
    try:
        # A purge right after the submission meets the worker claiming the job.
        for seed in range(20):
            job_id = submit(server.client, {**ENDLESS, "seed": 100 + seed}).json()["id"]
            purge_until_gone(server, job_id, statuses)
            purged.append(job_id)
        # A cancel and a purge of the same running job at once.
        for seed in range(15):
            job_id = submit(server.client, {**ENDLESS, "seed": 200 + seed}).json()["id"]
            if seed % 2:
                wait_for_status(server.client, job_id, wanted=("running",), timeout=60)
            start = threading.Barrier(2)

            def call(start=start, job_id=job_id, **params) -> None:
                start.wait(timeout=30)
                statuses.append(requests.delete(f"{server.url}/v1/jobs/{job_id}", params=params,
                                                timeout=30).status_code)

            racers = [threading.Thread(target=call),
                      threading.Thread(target=call, kwargs={"purge": "true"})]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(timeout=60)
            purge_until_gone(server, job_id, statuses)
            purged.append(job_id)
        assert statuses and all(status < 500 for status in statuses), sorted(set(statuses))
        assert set(statuses) <= {200, 404, 409}, sorted(set(statuses))
        # No purged job's folder comes back once the worker has let go of it.
        deadline = time.monotonic() + 60
        while server.client.get("/v1/health").json()["workers"][0]["state"] != "idle":
            assert time.monotonic() < deadline, "the worker never went idle"
            time.sleep(0.2)
        left = sorted(path.name for path in (server.data_dir / "jobs").iterdir()
                      if path.name in purged)
        assert left == [], left
        assert server.client.get("/v1/jobs").json() == []
    finally:
        server.stop()


# --- many event streams of one job ----------------------------------------------------------

def test_two_hundred_streams_of_one_job_share_one_poller():
    """The store is read once a poll, however many clients watch the job (200 idle clients
    once halved the job's speed with a thousand database connections a second)."""
    reads: list[str] = []

    def read(job_id: str):
        reads.append(job_id)
        return ("job", len(reads))

    async def clients() -> list[int]:
        watch = JobWatch(read, interval=0.1)
        seen: list[int] = []

        async def client() -> None:
            async with watch.watch("a") as snapshot:
                version = 0
                for _ in range(5):
                    await snapshot.after(version, 1.0)
                    version = snapshot.version
                seen.append(snapshot.reading[1])

        await asyncio.gather(*(client() for _ in range(200)))
        assert watch.watched == {}  # the last client to go stopped the poller
        return seen

    seen = asyncio.run(clients())
    assert len(seen) == 200 and min(seen) >= 5
    assert 5 <= len(reads) <= 8, len(reads)  # five polls and a few more, not 200 x 5


# --- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system of its own (a tmpfs: root only)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"no small file system can be mounted here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_on_a_full_disk_jobs_and_cells_are_still_read_and_the_message_says_full(small_disk):
    store = JobStore(small_disk / "data")
    job, _ = store.submit("key", {"preset": "preview"}, Layout(1, (2,), False), "a.png", b"png",
                          ".png", 10, 10)
    cell = CellRecord(row=0, layer=2, column=0, files={"combined": "cells/r0_L2.svg"},
                      strokes={"scene": 4})
    store.add_cell(job.id, cell)
    store.finish(job.id, "done")
    with open(small_disk / "filler", "wb") as filler:
        with pytest.raises(OSError):
            for _ in range(10_000):
                filler.write(b"\0" * 65536)
                filler.flush()
    assert store.get(job.id).status == "done"
    assert [found.layer for found in store.cells(job.id)] == [2]
    # The job list and the health check's queue count read too.
    assert [found.id for found in store.list()] == [job.id] and store.queue_depth() == 0
    with pytest.raises(STORAGE_ERRORS) as caught:
        store.update(job.id, error="x")
    assert "is full" in storage_problem(caught.value, store.data_dir)
