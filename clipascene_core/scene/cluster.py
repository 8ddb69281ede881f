"""Matrices on a Ray cluster: one matrix runs as a Ray task on whatever node has the resources,
and its files come back to the caller as they are written, so no shared file system is needed.

The task runs `sketch_matrix` into a temporary folder on its node and sends, with every cell,
the files that changed (the cell's SVGs and PNG, the manifest, the masks); the caller writes
them into its own output folder atomically and reports the same `MatrixEvent`s a local run
does. A cancel reaches the task (`ray.cancel`); a worker process or node that dies is run
again (bounded) while the cells already received stay as they are.

Ray is an optional extra (`pip install clipascene[cluster]`): nothing here imports it until a
cluster is used.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..config import SketchConfig
from ..io.outputs import atomic_write_bytes
from ..io.records import (
    CellEvent,
    CellRecord,
    Manifest,
    MatrixEvent,
    NoticeEvent,
    OutputFolder,
    ProgressEvent,
)
from ..sketch.engine import Cancelled

#: A matrix whose Ray worker died is run again this many times, then it fails.
MAX_RETRIES = 2
#: Progress travels to the caller at most this often (cells and stages at once).
PROGRESS_INTERVAL_S = 0.5
#: How often the caller asks should_stop() while it waits for the task.
POLL_S = 0.5
#: Ray's process title of a worker running a matrix is "ray::" + this (`ps`, `top`).
TASK_NAME = "clipascene_matrix"
INSTALL_HINT = "pip install 'clipascene[cluster]' (or python3 install.py --cluster)"


class ClusterError(RuntimeError):
    """The cluster cannot run the matrix (unreachable, or its workers keep dying); the message
    says what happened."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"Ray is not installed here; {INSTALL_HINT}.") from None
    return ray


def connect(address: str | None):
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to; None: start
    a Ray runtime on this machine), unless this process already has; returns the ray module."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ClusterError(f"cannot join the Ray cluster at {address or 'this machine'}: "
                               f"{error}") from None
    return ray


def cluster_resources(ray) -> dict:
    """{"nodes": alive nodes, "total": {...}, "available": {...}} in CPUs, GPUs and memory."""
    def pick(resources: dict) -> dict:
        return {key: round(resources.get(key, 0.0), 3) for key in ("CPU", "GPU", "memory")}

    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return {"nodes": nodes, "total": pick(ray.cluster_resources()),
            "available": pick(ray.available_resources())}


def default_gpus(ray, requested: float | None) -> float:
    """GPUs per matrix: as requested, else one where the cluster has GPUs and none otherwise."""
    if requested is not None:
        return requested
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def config_device(gpus_per_job: float) -> str:
    """The device type a matrix's configuration is made for ("auto" presets resolve by it)."""
    return "cuda" if gpus_per_job > 0 else "cpu"


# --- on the worker node -------------------------------------------------------------------

_ENCODERS: dict = {}


def _encoder(clip_model: str, weights: str, models_dir: str | None, precision: str, device: str):
    """CLIP, loaded once per worker process (Ray reuses processes for CPU tasks)."""
    from ..models.clip import load_clip

    key = (clip_model, weights, models_dir, precision, device)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_clip(clip_model, weights, device, precision=precision,
                                   cache_dir=Path(models_dir) if models_dir else None)
    return _ENCODERS[key]


def _changed_files(folder: Path, sent: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """The files under `folder` written since they were last sent: {relative path: bytes}."""
    changed = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        stat = path.stat()
        name = path.relative_to(folder).as_posix()
        if sent.get(name) != (stat.st_mtime_ns, stat.st_size):
            sent[name] = (stat.st_mtime_ns, stat.st_size)
            changed[name] = path.read_bytes()
    return changed


def remote_matrix(image: bytes, mask: tuple[bytes, str] | None, config: SketchConfig,
                  clip_model: str, weights: str, models_dir: str | None, precision: str):
    """The Ray task (a generator): runs the matrix of `image` (with the user's object `mask`:
    (bytes, suffix), or None) on this node and yields its events as
    ("stage" | "notice", text), ("progress", Progress), ("cell", cell, files) and finally
    ("done", manifest, files); an error is raised as it is."""
    import ray

    from ..io.images import load_image
    from .matrix import sketch_matrix

    device = "cuda" if ray.get_gpu_ids() else "cpu"
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="clipascene-") as temporary:
        out = Path(temporary) / "out"
        user_mask = None
        if mask is not None:
            user_mask = Path(temporary) / f"mask{mask[1]}"
            user_mask.write_bytes(mask[0])
        sent: dict[str, tuple[int, int]] = {}
        last_progress = 0.0

        def on_event(event: MatrixEvent) -> None:
            nonlocal last_progress
            if isinstance(event, CellEvent):
                events.put(("cell", event.cell, _changed_files(out, sent)))
            elif not isinstance(event, ProgressEvent):
                events.put(("event", event))
            elif time.monotonic() - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = time.monotonic()
                events.put(("event", event))

        def work() -> None:
            try:
                encoder = _encoder(clip_model, weights, models_dir, precision, device)
                manifest = sketch_matrix(load_image(image), out, config, encoder,
                                         models_dir=Path(models_dir) if models_dir else None,
                                         user_mask=user_mask, on_event=on_event,
                                         should_stop=stop.is_set)
                events.put(("done", manifest, _changed_files(out, sent)))
            except BaseException as error:  # noqa: B036 - handed to the caller as it is
                events.put(("error", error))

        thread = threading.Thread(target=work, name="matrix", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    item = events.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if item[0] == "error":
                    raise item[1]
                yield item
                if item[0] == "done":
                    return
        finally:
            stop.set()  # a cancel (ray.cancel raises in this thread) stops the matrix too
            thread.join()


# --- on the caller's side ---------------------------------------------------------------

_TASKS: dict[bool, object] = {}


def _remote_task(ray, gpu: bool):
    """remote_matrix as a Ray task: one CPU, no automatic retries (run() retries, keeping the
    cells received). A GPU task's process ends with it (max_calls=1, Ray's default for GPU
    tasks): a reused one would keep CUDA on the GPU of its first task."""
    if gpu not in _TASKS:
        _TASKS[gpu] = ray.remote(num_cpus=1, max_retries=0, **({"max_calls": 1} if gpu else {}))(
            remote_matrix)
    return _TASKS[gpu]


class _WorkerLost(Exception):
    pass


class RemoteMatrix:
    """One matrix on the cluster, its files written into `out_dir` as they arrive."""

    def __init__(self, ray, image: bytes, out_dir: Path, config: SketchConfig, *,
                 mask: Path | None = None, clip_model: str, weights: str, models_dir: Path | None = None,
                 precision: str = "auto", gpus: float = 0.0, name: str = TASK_NAME) -> None:
        self.ray = ray
        self.image = image
        self.mask = (mask.read_bytes(), mask.suffix) if mask is not None else None
        self.out_dir = Path(out_dir)
        self.folder = OutputFolder(out_dir)
        self.config = config
        self.models = (clip_model, weights, str(models_dir) if models_dir else None, precision)
        self.gpus = gpus
        self.name = name
        #: Cells received, by (row, layer): kept as they are when the task is run again.
        self.received: dict[tuple[int, int], CellRecord] = {}

    def run(self, on_event: Callable[[MatrixEvent], None] | None = None,
            should_stop: Callable[[], bool] | None = None, retries: int = MAX_RETRIES) -> Manifest:
        """Run the matrix to its end; returns the manifest. Raises engine.Cancelled when
        should_stop() (the task is cancelled), ClusterError when its worker died more than
        `retries` times, and the task's own error otherwise."""
        emit = on_event or (lambda _event: None)
        for attempt in range(retries + 1):
            try:
                return self._try(emit, should_stop or (lambda: False))
            except _WorkerLost as lost:
                if attempt == retries:
                    raise ClusterError(
                        f"the Ray worker running this matrix died {attempt + 1} times (last: "
                        f"{lost}); it was not run again. The {len(self.received)} cells "
                        "received before are kept.") from None
                emit(NoticeEvent(
                    f"The Ray worker running this matrix died ({lost}); it runs again "
                    f"(try {attempt + 2} of {retries + 1}), keeping the {len(self.received)} "
                    "cells already received."))
        raise AssertionError("unreachable")

    def _try(self, emit, should_stop) -> Manifest:
        ray = self.ray
        task = _remote_task(ray, self.gpus > 0).options(name=self.name, num_gpus=self.gpus)
        stream = task.remote(self.image, self.mask, self.config, *self.models)
        cancelled = False
        while True:
            if not cancelled and should_stop():
                ray.cancel(stream)
                cancelled = True
            ready, _ = ray.wait([stream], timeout=POLL_S)
            if not ready:
                continue
            try:
                event = ray.get(next(stream))
            except StopIteration:
                raise _WorkerLost("its task ended without a result") from None
            except ray.exceptions.TaskCancelledError:
                raise Cancelled() from None
            except ray.exceptions.RayTaskError as error:  # the matrix's own error, as raised
                cause = error.cause
                raise (Cancelled() if cancelled else cause if cause is not None else error) from None
            except ray.exceptions.RayError as error:  # a worker or node died, an object was lost
                if cancelled:
                    raise Cancelled() from None
                raise _WorkerLost(str(error).splitlines()[0]) from None
            kind = event[0]
            if kind == "cell":
                self._receive(event[1], event[2], emit)
            elif kind == "done":
                self._write(event[2])
                return self.folder.read_manifest()
            else:
                emit(event[1])

    def _receive(self, cell: CellRecord, files: dict[str, bytes], emit) -> None:
        key = (cell.row, cell.layer)
        earlier = self.received.get(key)
        # A final cell replaces its draft; anything else made again (by a retry, a retry's
        # draft of a cell already final included) leaves the cell received first.
        if earlier is not None and (not earlier.draft or cell.draft):
            kept = set(earlier.files.values())
            self._write({name: data for name, data in files.items() if name not in kept})
            return
        self.received[key] = cell
        self._write(files)
        emit(CellEvent(cell))

    def _write(self, files: dict[str, bytes]) -> None:
        """Write the task's files atomically; the cell files before the manifest naming them."""
        for name in sorted(files, key=lambda item: item == OutputFolder.MANIFEST):
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise ClusterError(f"the Ray task sent a file outside its folder: {name!r}")
            data = files[name]
            if name == OutputFolder.MANIFEST:
                data = self._with_received_cells(data)
            atomic_write_bytes(self.out_dir / relative, data)

    def _with_received_cells(self, data: bytes) -> bytes:
        """The task's manifest listing every cell this folder holds (a retry's task knows only
        the cells it made itself)."""
        manifest = Manifest.from_dict(json.loads(data))
        cells = {(cell.row, cell.layer): cell for cell in manifest.cells}
        cells.update(self.received)
        manifest.cells = [cells[key] for key in sorted(cells)]
        return (json.dumps(manifest.to_dict(), indent=2) + "\n").encode()

