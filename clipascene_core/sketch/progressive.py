"""A progressive matrix: a draft of every cell first, then the final cells.

On a CPU a whole matrix takes long; before it trains, a draft pass trains every column of
the plan from the same initial strokes for a tenth of its steps (`DRAFT_FRACTION`, one
seed) and writes each cell as a draft (`records.CellRecord.draft`): the artist sees the
whole matrix early. The final pass then runs exactly as a run without drafts would:

- the draft pass trains its own tasks (the plan's columns are untouched),
- it draws its augmentations from the plan's shared stream (`targets.TargetBank`) and puts
  the stream back where it found it (its draw count too), and torch's global generator too,

so every final cell is the one a run without drafts computes, and replaces its draft as it
is reached. The drafts cost about DRAFT_FRACTION of the training steps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from ..config import SketchConfig
from ..models.clip import ClipEncoder
from .column import ColumnChain
from .engine import CellSketch, Engine
from .targets import TargetBank

#: A draft cell's share of its final cell's training steps.
DRAFT_FRACTION = 0.1


def wants_drafts(config: SketchConfig, device: torch.device) -> bool:
    """Drafts as asked (config.progressive), or by default on a CPU only."""
    if config.progressive is not None:
        return config.progressive
    return torch.device(device).type == "cpu"


def draft_config(config: SketchConfig, fraction: float = DRAFT_FRACTION) -> SketchConfig:
    """The configuration of the drafts: every step count scaled by `fraction` (at least one
    step), the evaluation schedule with them, and the first seed only."""

    def scaled(steps: int) -> int:
        return max(1, math.ceil(steps * fraction))

    return dataclasses.replace(
        config,
        iterations=None if config.iterations is None else scaled(config.iterations),
        scene_iterations=scaled(config.scene_iterations),
        object_iterations_shallow=scaled(config.object_iterations_shallow),
        object_iterations_deep=scaled(config.object_iterations_deep),
        eval_start=scaled(config.eval_start), eval_every=scaled(config.eval_every),
        simplicity_steps=scaled(config.simplicity_steps), seeds=(min(config.seeds),))


def draft_columns(columns: list[ColumnChain], config: SketchConfig,
                  device: torch.device) -> list[ColumnChain]:
    """Draft chains of the plan's columns: the same region, layer and initial strokes of
    the first seed, trained for the draft configuration."""
    drafts = []
    for column in columns:
        cell = min(column.cells, key=lambda item: item.seed)
        drafts.append(ColumnChain(cell.region, cell.layer, {cell.seed: cell.initial_points},
                                  config, device))
    return drafts


def run_drafts(encoder: ClipEncoder, bank: TargetBank, columns: list[ColumnChain],
               config: SketchConfig, on_sketch: Callable[[CellSketch], None],
               on_progress: Callable[[int, int], None],
               should_stop: Callable[[], bool] | None = None) -> None:
    """Train the draft chains to their end, handing each draft sketch to `on_sketch` and
    the steps done of theirs in all to `on_progress`; leaves the augmentation stream and
    torch's generator as they were."""
    tasks = [task for column in columns for task in column.tasks()]
    extra = sum(column.steps for column in columns) - sum(task.total_steps for task in tasks)
    devices = [bank.device] if torch.device(bank.device).type == "cuda" else []
    stream = bank.stream_state()
    try:
        with torch.random.fork_rng(devices=devices):
            Engine.for_config(encoder, bank, config).run(
                tasks, on_sketch=on_sketch, should_stop=should_stop, extra_steps=extra,
                on_progress=lambda report: on_progress(report.steps_done, report.steps_total))
    finally:
        bank.set_stream_state(stream)
