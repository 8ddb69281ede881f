"""The batched training loop every matrix cell shares.

A *task* is anything that draws strokes and learns from CLIP layer losses: a fidelity cell
(`fidelity.FidelityTask`) or one run of a simplicity row (`simplicity.SimplicityRowTask`). Per step the
engine renders the sketches of all active tasks together, sends them with their augmentations
through CLIP as one batch, and hands each task its own losses and gradients. Tasks own their
parameters and optimisers, and CLIP has no interaction between images, so each task trains
exactly as it would alone. A task that finishes can start new ones (a column's first
simplicity row starts the moment its fidelity sketch is final), so cells never wait on
unrelated cells.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..models.clip import ClipEncoder
from .augment import apply_grids
from .losses import layer_loss
from .render import Renderer, bezier_samples, get_renderer
from .targets import TargetBank

logger = logging.getLogger(__name__)

#: Per task and layer: (loss over the clean + augmented pairs, clean pair's loss detached).
LayerLosses = dict[int, tuple[torch.Tensor, torch.Tensor]]


class Cancelled(Exception):
    """Raised inside training when the caller's `should_stop` says so."""


class Task(ABC):
    """One trainable sketch (or chain of sketches) in the shared batch.

    Frames: points are canvas pixels, (N, 4, 2); widths are full stroke widths in canvas px.
    """

    #: Target image name in the TargetBank ("scene", "background", "object").
    target: str
    #: CLIP layers whose losses this task needs.
    layers: list[int]
    #: Steps this task will run in all (for progress).
    total_steps: int
    #: "fidelity" or "simplicity", for progress reports.
    stage: str
    #: The matrix column (CLIP layer) the task belongs to, for column-first scheduling.
    column: int = 0
    steps_done: int = 0
    done: bool = False
    #: The task trains from the step after the shared augmentation stream's `draws` reach
    #: this: a task resumed from a checkpoint (scene/resume.py) trains from the step the
    #: checkpoint was taken after, and waits until then, as it trained in the run it resumes.
    wake: int = 0

    @abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """Every parameter the task's gradients are taken for."""

    @abstractmethod
    def sketch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's differentiable (points (N, 4, 2), widths (N,))."""

    @abstractmethod
    def loss_terms(self, losses: LayerLosses) -> list[torch.Tensor]:
        """Scalar loss terms whose gradients the task needs separately (term 0 uses CLIP)."""

    @abstractmethod
    def apply(self, gradients: list[list[torch.Tensor | None]],
              losses: LayerLosses) -> list[TaskResult]:
        """Combine the per-term gradients, step the optimisers, advance; return finished results."""

    def pending_eval(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(points, widths) to evaluate on the clean target without augmentation, or None."""
        return None

    def record_eval(self, losses: LayerLosses) -> list[TaskResult]:
        """Receive the clean losses of `pending_eval`'s sketch; return finished results."""
        return []


class CellSketch(Protocol):
    """A matrix cell's sketch of one region, final: `points` (N, 4, 2) canvas px of all the
    column's strokes, `keep` (N,) bool the strokes it shows, `widths` (N,) each stroke's width
    as a fraction of the base stroke width, and `details()` for the manifest."""

    region: str
    row: int
    layer: int
    points: np.ndarray
    keep: np.ndarray
    widths: np.ndarray

    def details(self) -> dict: ...


@dataclass
class Settled:
    """What a finished result turns into: sketches that are now final, and the tasks that
    follow from it (e.g. a column's first simplicity row once its fidelity sketch is chosen)."""

    sketches: list[CellSketch] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)


class TaskResult(ABC):
    """What a task hands back when it finishes (a fidelity run, a run of a simplicity row)."""

    @abstractmethod
    def settle(self) -> Settled:
        """Deliver this result to whatever it belongs to (its column); say what follows."""


@dataclass
class Progress:
    """Training progress, reported after every step; `finished` holds the results that
    became final in this step."""

    stage: str
    step: int
    steps_done: int
    steps_total: int
    finished: list[TaskResult] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.steps_done / max(self.steps_total, 1)


def strokes_on_canvas(points: torch.Tensor, widths: torch.Tensor | float, size: int) -> torch.Tensor:
    """(…, N) bool: strokes with some part within half a width of the canvas (points in px)."""
    samples = bezier_samples(points, 32)
    margin = torch.as_tensor(widths, dtype=points.dtype, device=points.device) / 2
    margin = margin.expand(points.shape[:-2]).unsqueeze(-1)
    inside = (
        (samples[..., 0] >= -margin) & (samples[..., 0] <= size + margin)
        & (samples[..., 1] >= -margin) & (samples[..., 1] <= size + margin)
    )
    return inside.any(-1)


def render_batch(sketches: Sequence[tuple[torch.Tensor, torch.Tensor]], size: int,
                 renderer: Renderer | None = None) -> torch.Tensor:
    """Render (points, widths) of several tasks as one batch: (T, 3, size, size) in [0, 1].

    Tasks with fewer strokes are padded with zero-width strokes, which draw nothing.
    """
    most = max(points.shape[0] for points, _ in sketches)
    all_points, all_widths = [], []
    for points, widths in sketches:
        missing = most - points.shape[0]
        if missing:
            points = torch.cat([points, points.new_zeros(missing, 4, 2)])
            widths = torch.cat([widths, widths.new_zeros(missing)])
        all_points.append(points)
        all_widths.append(widths)
    paper = (renderer or get_renderer())(torch.stack(all_points), torch.stack(all_widths), size, size)
    return paper.unsqueeze(1).expand(-1, 3, -1, -1)


def cell_layer_losses(
    encoder: ClipEncoder,
    bank: TargetBank,
    sketches: torch.Tensor,
    cells: Sequence[tuple[str, Sequence[int]]],
    grids: torch.Tensor,
    augmented_targets: dict[str, dict[int, torch.Tensor]],
) -> list[LayerLosses]:
    """CLIP layer losses of C sketches against their targets, one CLIP batch for all.

    sketches: (C, 3, S, S); cells: (target name, layers) per sketch; grids: (A, S, S, 2), the
    step's augmentations shared by sketches and targets (A may be 0).
    """
    count = sketches.shape[0]
    augmentations = grids.shape[0]
    batch = [sketches]
    if augmentations:
        batch.append(
            apply_grids(sketches.repeat_interleave(augmentations, 0), grids.repeat(count, 1, 1, 1))
        )
    layers = sorted({layer for _, cell_layers in cells for layer in cell_layers})
    features = encoder.layer_features(torch.cat(batch), layers)
    results = []
    for index, (target, cell_layers) in enumerate(cells):
        losses = {}
        rows = [index] + list(range(count + index * augmentations,
                                    count + (index + 1) * augmentations))
        for layer in cell_layers:
            sketch = features[layer][rows]
            goal = torch.cat([bank.clean[target][layer], augmented_targets[target][layer][:augmentations]])
            clean = layer_loss(sketch[:1], goal[:1]).detach()
            losses[layer] = (layer_loss(sketch, goal), clean)
        results.append(losses)
    return results


class Engine:
    """Runs tasks to completion; see the module docstring."""

    def __init__(self, encoder: ClipEncoder, bank: TargetBank, canvas_size: int = 224,
                 cells_per_batch: int | None = None, renderer: str = "torch",
                 schedule: str = "auto", columns: Sequence[int] = ()) -> None:
        """cells_per_batch: how many tasks share one CLIP batch; None = all of them on a GPU,
        one at a time on the CPU, where a larger batch costs more per image (measured in
        docs/performance.md). Results are the same either way. renderer: "torch" or "diffvg"
        (see render.get_renderer).

        schedule: "lockstep" advances every task each step; "column" runs only the tasks of
        the first column (in `columns` order) that has unfinished tasks, so a column is
        complete (fidelity sketch and rows) before the next one starts and the user gets a
        first whole column early; "auto" is "column" on the CPU, where batching gains
        nothing, and "lockstep" on a GPU, where one big batch costs little more than one.
        """
        self.encoder = encoder
        self.renderer = get_renderer(renderer)
        self.bank = bank
        self.canvas_size = canvas_size
        on_cpu = next(encoder.buffers()).device.type == "cpu"
        if cells_per_batch is None:
            cells_per_batch = 1 if on_cpu else 0
        self.cells_per_batch = cells_per_batch
        if schedule == "auto":
            schedule = "column" if on_cpu else "lockstep"
        if schedule not in ("lockstep", "column"):
            raise ValueError(f"unknown schedule {schedule!r}; use auto, lockstep or column.")
        self.schedule = schedule
        self.columns = list(columns)

    @classmethod
    def for_config(cls, encoder: ClipEncoder, bank: TargetBank, config) -> Engine:
        """An engine set up as a SketchConfig says (batching, renderer, schedule, columns)."""
        return cls(encoder, bank, config.canvas_size, config.cells_per_batch, config.renderer,
                   config.schedule, config.layers)

    def _active(self, tasks: Sequence[Task]) -> list[Task]:
        waiting = [task for task in tasks if not task.done]
        if self.schedule == "lockstep" or not waiting:
            return waiting
        order = {column: index for index, column in enumerate(self.columns)}
        first = min((task.column for task in waiting), key=lambda c: (order.get(c, len(order)), c))
        return [task for task in waiting if task.column == first]

    def run(
        self,
        tasks: Sequence[Task],
        on_sketch: Callable[[CellSketch], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        extra_steps: int = 0,
    ) -> list[TaskResult]:
        """Train until every task, and every task that finished ones lead to, is done.

        Each finished result is settled (`TaskResult.settle`): its final sketches go to
        `on_sketch`, its follow-up tasks join from the next step on. extra_steps: steps of
        those follow-up tasks, for the progress total. Returns all results in the order they
        became final.
        """
        tasks = list(tasks)
        steps_total = sum(task.total_steps for task in tasks) + extra_steps
        finished_all: list[TaskResult] = []
        step = 0
        while any(not task.done for task in tasks):
            if should_stop is not None and should_stop():
                raise Cancelled()
            step += 1
            active = [task for task in self._active(tasks) if task.wake <= self.bank.draws]
            if not active:  # every task of the column waits for a later step: draw nothing
                self.bank.skip()
                continue
            # One draw of augmentations per step, shared by every cell whatever the batching.
            grids, augmented = self.bank.draw()
            size = self.cells_per_batch or len(active)
            finished: list[TaskResult] = []
            for start in range(0, len(active), size):
                finished += self._train_step(active[start : start + size], grids, augmented)
            finished += self._evaluate(active)
            for result in finished:
                settled = result.settle()
                tasks.extend(settled.tasks)
                for sketch in settled.sketches:
                    if on_sketch is not None:
                        on_sketch(sketch)
            finished_all.extend(finished)
            if on_progress is not None:
                done = sum(task.steps_done for task in tasks)
                on_progress(Progress(_stage(tasks), step, done, max(steps_total, done), finished))
        return finished_all

    def _train_step(self, active: list[Task], grids: torch.Tensor,
                    augmented: dict[str, dict[int, torch.Tensor]]) -> list[TaskResult]:
        sketches = [task.sketch() for task in active]
        images = render_batch(sketches, self.canvas_size, self.renderer)
        losses = cell_layer_losses(self.encoder, self.bank, images,
                                   [(task.target, task.layers) for task in active], grids, augmented)
        terms = [task.loss_terms(task_losses) for task, task_losses in zip(active, losses, strict=True)]
        gradients = self._term_gradients(active, terms)
        finished = []
        for task, task_gradients, task_losses in zip(active, gradients, losses, strict=True):
            finished += task.apply(task_gradients, task_losses)
        return finished

    @staticmethod
    def _term_gradients(active: list[Task], terms: list[list[torch.Tensor]]) -> list[list[list]]:
        """Per task, per term k, the gradients of term k w.r.t. the task's parameters.

        One autograd pass per term position k, summed over tasks: tasks' parameters are
        disjoint, so the sum's gradient on a task's parameters is that task's own.
        """
        term_count = max(len(task_terms) for task_terms in terms)
        result: list[list[list]] = [[] for _ in active]
        for k in range(term_count):
            members = [index for index, task_terms in enumerate(terms) if len(task_terms) > k]
            parameters = [active[index].parameters() for index in members]
            flat = [parameter for group in parameters for parameter in group]
            total = sum(terms[index][k] for index in members)
            if not total.requires_grad:
                gradients = [None] * len(flat)
            else:
                gradients = torch.autograd.grad(total, flat, retain_graph=k < term_count - 1,
                                                allow_unused=True)
            offset = 0
            for index, group in zip(members, parameters, strict=True):
                result[index].append(list(gradients[offset : offset + len(group)]))
                offset += len(group)
        return result

    @torch.no_grad()
    def _evaluate(self, active: list[Task]) -> list[TaskResult]:
        pending = [(task, task.pending_eval()) for task in active]
        pending = [(task, sketch) for task, sketch in pending if sketch is not None]
        if not pending:
            return []
        # Batched as training is (cells_per_batch), so a cell's evaluation never depends on
        # which other cells happen to be evaluated in the same step.
        size = self.cells_per_batch or len(pending)
        finished = []
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            images = render_batch([sketch for _, sketch in batch], self.canvas_size, self.renderer)
            empty = torch.empty(0, self.canvas_size, self.canvas_size, 2, device=images.device)
            losses = cell_layer_losses(self.encoder, self.bank, images,
                                       [(task.target, task.layers) for task, _ in batch], empty,
                                       self.bank.no_augmentation())
            for (task, _), task_losses in zip(batch, losses, strict=True):
                finished += task.record_eval(task_losses)
        return finished


def _stage(tasks: Sequence[Task]) -> str:
    stages = {task.stage for task in tasks if not task.done}
    if not stages:
        return "done"
    return "fidelity" if "fidelity" in stages else stages.pop()
