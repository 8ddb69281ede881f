"""Resuming an interrupted matrix run (cancelled, stopped, crashed) where it stopped.

A run into a folder that already holds cells of the same matrix (same parameters, model and
versions) keeps its finished cells, computes none of them again, and continues each
unfinished column from its last checkpoint; the cells come out as an uninterrupted run's.

Checkpoints. Each column (a region and a CLIP layer) is a chain: its fidelity sketch, then
its simplicity rows one after the other. After the fidelity sketch and after every row, the
run saves in the folder's `resume/` (atomically: a temporary file, fsync, rename):

- `{region}-L{layer}.pt`: the column's checkpoint (`ChainPoint`), replacing the one before:
  the row, the fidelity run the rows read (its seed, strokes, layer losses), where the next
  row starts (MLP_loc's and MLP_simp's weights, both Adam states, the strokes still in play),
  and the shared augmentation stream (`targets.TargetBank`) as it stood then, with its count
  of draws, the clock every checkpoint is taken on. Tensors only (`torch.load` with
  `weights_only`). Every row run seeds its own draws (the Gumbel noise, the kept widths,
  MLP_simp's first weights), so nothing else decides what follows.
- `{region}-r{row}-L{layer}.sketch.pt`: the region's sketch of that cell, so a cell whose
  other region was still training is written when that one gets there.

Resuming: a column whose checkpoint is missing or damaged starts from its beginning; the
others continue after their checkpoint's row. Each task waits (`engine.Task.wake`) until
the augmentation stream, restored to the earliest point any column continues from, has
drawn as many steps as at its checkpoint: every column gets exactly the draws it had in the
uninterrupted run, under both schedules ("column", the CPU's, where the columns of one layer
train together and the layers one after the other, and "lockstep"). Evaluations are batched
like training (`cells_per_batch`), so on a CPU a cell's numbers do not depend on which other
cells train beside it, and a resumed run's cells equal an uninterrupted run's. Whole layers
already finished are left out of the plan (under "column", up to the last one whose every
column's final checkpoint gives the clock). An interruption mid-row trains that row again
from its start. Drafts (`progressive`) never count as finished: a resumed run draws them
again for the columns it trains. The `resume/` folder is removed once the matrix is complete.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io.outputs import atomic_write_bytes, atomic_write_json
from ..io.records import Manifest, MatrixEvent, OutputFolder
from ..sketch.column import ColumnChain
from ..sketch.engine import CellSketch, Engine
from ..sketch.fidelity import FidelityCell, FidelityResult
from ..sketch.simplicity import ChainPoint, RowStart, SimplicityColumn, cpu_copy
from .matrix import MatrixPlan, plan_matrix, run_plan

logger = logging.getLogger(__name__)

CHECKPOINTS = "resume"
#: The matrix the checkpoints belong to (`_identity`).
IDENTITY = "matrix.json"
FORMAT = 1


def _identity(manifest: Manifest) -> dict:
    return json.loads(json.dumps({
        "parameters": manifest.parameters, "versions": manifest.versions,
        "model": manifest.model.decisive(),
        "layers": manifest.layers, "rows": manifest.rows, "regions": manifest.regions}))


def _chain_file(folder: OutputFolder, region: str, layer: int) -> Path:
    return folder.path(CHECKPOINTS) / f"{region}-L{int(layer)}.pt"


def _sketch_file(folder: OutputFolder, region: str, row: int, layer: int) -> Path:
    return folder.path(CHECKPOINTS) / f"{region}-r{int(row)}-L{int(layer)}.sketch.pt"


def _save(path: Path, data: dict) -> None:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path) -> dict | None:
    """The checkpoint's data, or None when it is missing or damaged."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as error:  # any damage means: not usable
        logger.warning("resuming: %s is damaged, ignored (%s)", path.name, error)
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


@dataclass
class SavedSketch:
    """A region's final sketch of a cell, as a checkpoint keeps it (an `engine.CellSketch`)."""

    region: str
    row: int
    layer: int
    points: np.ndarray
    keep: np.ndarray
    widths: np.ndarray
    recorded: str

    def details(self) -> dict:
        return json.loads(self.recorded)


def _sketch_data(sketch: CellSketch) -> dict:
    return {"format": FORMAT, "points": torch.from_numpy(np.asarray(sketch.points, np.float64)),
            "keep": torch.from_numpy(np.asarray(sketch.keep, bool)),
            "widths": torch.from_numpy(np.asarray(sketch.widths, np.float64)),
            "details": json.dumps(sketch.details())}


def _read_sketch(folder: OutputFolder, region: str, row: int, layer: int) -> SavedSketch | None:
    data = _load(_sketch_file(folder, region, row, layer))
    try:
        return SavedSketch(region, row, layer, data["points"].numpy(), data["keep"].numpy(),
                           data["widths"].numpy(), str(data["details"]))
    except (TypeError, KeyError, AttributeError):
        return None


def _point_data(point: ChainPoint, stream: tuple[torch.Tensor, int]) -> dict:
    data = {"format": FORMAT, "row": point.row, "draws": stream[1], "stream": stream[0]}
    if point.start is not None:
        fidelity, start = point.fidelity, point.start
        data["fidelity"] = {
            "seed": fidelity.cell.seed, "points": torch.from_numpy(np.asarray(fidelity.points)),
            "layer_losses": {int(layer): float(loss) for layer, loss in fidelity.best_layer_losses.items()}}
        data["start"] = {"location": cpu_copy(start.location),
                         "location_optimizer": cpu_copy(start.location_optimizer),
                         "simplify": cpu_copy(start.simplify),
                         "simplify_optimizer": cpu_copy(start.simplify_optimizer),
                         "allowed": torch.from_numpy(np.asarray(start.allowed, bool))}
    return data


@dataclass
class Saved:
    """A column's checkpoint as read back: where it stands, and the stream at that point."""

    point: ChainPoint
    stream: tuple[torch.Tensor, int]


def _read_point(folder: OutputFolder, chain: ColumnChain, rows: int) -> Saved | None:
    """`chain`'s checkpoint, checked by building the row it continues with; None when it is
    missing, damaged or not of this chain."""
    cell = chain.cells[0]
    data = _load(_chain_file(folder, cell.region, cell.layer))
    if data is None:
        return None
    try:
        row, draws = int(data["row"]), int(data["draws"])
        stream = (data["stream"], draws)
        if not 0 <= row < rows:
            return None
        if row == rows - 1:
            return Saved(ChainPoint(row, draws), stream)
        values, start = data["fidelity"], data["start"]
        seed = int(values["seed"])
        chosen = next(item for item in chain.cells if item.seed == seed)
        fidelity = FidelityResult(
            cell=FidelityCell(chosen.region, chosen.layer, seed, chosen.initial_points,
                              chosen.iterations),
            points=values["points"].numpy(), on_canvas=start["allowed"].numpy(),
            initial_loss=math.nan, best_loss=math.nan, best_step=0,
            best_layer_losses={int(key): float(value) for key, value in values["layer_losses"].items()},
            eval_losses=[], seconds=0.0)
        point = ChainPoint(row, draws, fidelity, RowStart(
            start["location"], start["location_optimizer"], start["simplify"],
            start["simplify_optimizer"], start["allowed"].numpy()))
        # Loads every state into the row's networks and optimisers: a mismatch shows here.
        SimplicityColumn(fidelity, chain.config, chain.device).row_tasks(row + 1, point.start)
    except Exception as error:  # whatever does not fit is not usable
        logger.warning("resuming: the checkpoint of %s L%d does not fit, ignored (%s)",
                       cell.region, cell.layer, error)
        return None
    return Saved(point, stream)


class Checkpoints:
    """Saves a column's checkpoint (and the region sketch) whenever one of its sketches is
    final in the training pass (`MatrixPlan.checkpoint`).

    What is saved is copied at that step; on a GPU (`background_on`) the files are written
    by a thread of their own, in order, while the training goes on (a lock-step row boundary
    writes two dozen checkpoints of ~40 MB, seconds of disk against a row of a few seconds),
    on a CPU at once (a row takes minutes there). `close` waits for what is being written."""

    #: Device types whose checkpoints are written in the background.
    background_on: tuple[str, ...] = ("cuda", "mps")

    def __init__(self, plan: MatrixPlan) -> None:
        self.plan = plan
        self.folder = plan.writer.folder
        device = next(plan.encoder.buffers()).device
        self._writer = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
                        if device.type in self.background_on else None)

    def __call__(self, sketch: CellSketch) -> None:
        stream = self.plan.bank.stream_state()
        files = [(_sketch_file(self.folder, sketch.region, sketch.row, sketch.layer),
                  _sketch_data(sketch)),
                 (_chain_file(self.folder, sketch.region, sketch.layer),
                  _point_data(sketch.chain_point(stream[1]), stream))]
        what = f"{sketch.region} row {sketch.row} of layer {sketch.layer}"
        if self._writer is None:
            self._write(files, what)
        else:
            self._writer.submit(self._write, files, what).add_done_callback(_unexpected)

    def _write(self, files: list[tuple[Path, dict]], what: str) -> None:
        try:
            identity = self.folder.path(CHECKPOINTS) / IDENTITY
            if not identity.is_file():
                atomic_write_json(identity, _identity(self.plan.manifest))
            for path, data in files:  # the sketch first: a chain's checkpoint needs it
                _save(path, data)
        except OSError as error:
            logger.warning("resuming: no checkpoint after %s (%s)", what, error)

    def close(self) -> None:
        """Wait until every checkpoint asked for is written."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)


def _unexpected(future) -> None:
    """A background write's failure other than the disk's (those `_write` logs itself): said
    in the log, as the synchronous write would have raised it, not lost with its future."""
    if future.exception() is not None:
        logger.error("resuming: a checkpoint was not written", exc_info=future.exception())


def _schedule(plan: MatrixPlan) -> str:
    return Engine.for_config(plan.encoder, plan.bank, plan.config).schedule


def _read_checkpoints(plan: MatrixPlan) -> dict[int, Saved]:
    """The columns' checkpoints by id(chain); none (and the folder cleared) when they are
    another matrix's."""
    folder = plan.writer.folder
    try:
        saved = json.loads(folder.path(CHECKPOINTS).joinpath(IDENTITY).read_text())
    except (OSError, ValueError):
        saved = None
    if saved != _identity(plan.manifest):
        shutil.rmtree(folder.path(CHECKPOINTS), ignore_errors=True)
        return {}
    rows = plan.manifest.rows
    points = {id(chain): _read_point(folder, chain, rows) for chain in plan.columns}
    return {key: value for key, value in points.items() if value is not None}


def resume(plan: MatrixPlan, previous: Manifest | None) -> list[int]:
    """Keep the finished cells of `previous` (when it is this matrix) in the plan's manifest,
    continue each column of `plan` from its checkpoint, leave whole finished layers out and
    set the augmentation stream where the earliest continuing column needs it. Returns the
    layers left out."""
    same = previous is not None and _identity(previous) == _identity(plan.manifest)
    final = [cell for cell in previous.cells if not cell.draft] if same else []
    for cell in final:  # drafts are drawn again (progressive.py) for the columns still to train
        plan.writer.state.cells[(cell.row, cell.layer)] = cell
    plan.manifest.cells = [plan.writer.state.cells[key] for key in sorted(plan.writer.state.cells)]
    done = {(cell.row, cell.layer) for cell in final}
    rows, layers = plan.manifest.rows, plan.config.layers
    complete = [layer for layer in layers if all((row, layer) in done for row in range(rows))]
    if len(complete) == len(layers):
        plan.columns = []
        return list(layers)
    points = _read_checkpoints(plan)
    by_layer = {layer: [chain for chain in plan.columns if chain.cells[0].layer == layer]
                for layer in layers}
    base: Saved | None = None  # where a column without a checkpoint starts (None: as planned)
    if _schedule(plan) == "column":
        # Layers train one after the other: the leading finished ones are left out, up to the
        # last whose columns' final checkpoints say when the next layer began.
        skipped = []
        for layer in layers:
            saved = [points.get(id(chain)) for chain in by_layer[layer]]
            if layer not in complete or not all(item and item.point.start is None for item in saved):
                break
            skipped.append(layer)
            base = max(saved, key=lambda item: item.point.draws)
        first = next((layer for layer in layers if layer not in skipped), None)
        waiting = [chain for chain in by_layer.get(first, []) if id(chain) not in points]
    else:  # every step draws once whichever columns train: all start at the first step
        skipped = complete
        waiting = [chain for chain in plan.columns if id(chain) not in points
                   and chain.cells[0].layer not in skipped]
    plan.columns = [chain for chain in plan.columns if chain.cells[0].layer not in skipped]
    starts: list[Saved | None] = [base] if waiting else []
    for chain in plan.columns:
        saved = points.get(id(chain))
        if saved is None:
            continue
        restored = _restored(plan.writer.folder, chain, saved.point.row, done)
        if restored is None:  # a region sketch is missing: the column starts again
            starts.append(base)
            continue
        chain.resume_from(saved.point)
        plan.restored += restored
        if not chain.finished:
            starts.append(saved)
    if starts:
        earliest = min(starts, key=lambda item: -1 if item is None else item.point.draws)
        if earliest is not None:
            plan.bank.set_stream_state(earliest.stream)
    resumed = [chain.cells[0].key for chain in plan.columns if chain.point is not None]
    if skipped or resumed:
        logger.info("resuming: layers %s finished; continuing %s from checkpoints", skipped, resumed)
    return skipped


def _restored(folder: OutputFolder, chain: ColumnChain, row: int,
              done: set[tuple[int, int]]) -> list[SavedSketch] | None:
    """The chain's sketches up to `row` of the cells not yet written (None if one is missing)."""
    cell = chain.cells[0]
    sketches = [_read_sketch(folder, cell.region, index, cell.layer)
                for index in range(row + 1) if (index, cell.layer) not in done]
    return None if any(sketch is None for sketch in sketches) else sketches


def sketch_resumable(image, out_dir: str | Path, config, encoder, *,
                     on_event: Callable[[MatrixEvent], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, **planning) -> Manifest:
    """`matrix.sketch_matrix`, resuming what an earlier run of the same matrix into `out_dir`
    finished (see the module docstring)."""
    previous = OutputFolder(out_dir).read_manifest()
    plan = plan_matrix(image, out_dir, config, encoder, on_event=on_event, **planning)
    resume(plan, previous)
    plan.checkpoint = checkpoints = Checkpoints(plan)
    try:
        manifest = run_plan(plan, on_event=on_event, should_stop=should_stop)
    finally:  # cancelled or failed too: what the next run resumes from is on disk
        checkpoints.close()
    shutil.rmtree(plan.writer.folder.path(CHECKPOINTS), ignore_errors=True)
    return manifest
