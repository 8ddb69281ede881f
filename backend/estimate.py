"""How long a job will take before its run reports progress: the cell-steps of its
configuration times the seconds one cell-step takes on the device.

The seconds per cell-step are measured by this daemon: a worker records, as it reports a
job's progress, the job's elapsed time (its preprocessing included) over the cell-steps done,
per device and model (`speed_key`). Until a job has been measured on a device, a default
for its type is used (`DEFAULT_SECONDS_PER_STEP`; the CPU's is the ViT-B/32 figure of
docs/performance.md on 2 cores) and the estimate says "default".
"""

from __future__ import annotations

import math

from clipascene_core.config import StepCounts

#: Seconds per cell-step of ViT-B/32 when nothing has been measured on a device of this type.
DEFAULT_SECONDS_PER_STEP = {"cpu": 0.7, "cuda": 0.03, "mps": 0.2}
#: A job's speed is recorded from this fraction of its steps on (and at its end): before,
#: its preprocessing and the loading of CLIP would weigh on the few steps done.
MEASURE_FROM_FRACTION = 0.05


def speed_key(device: str, model_identity: str) -> str:
    """The store's meta key of the seconds per cell-step on `device` ("cpu", "cuda:0") with
    the model `model_identity` (ModelSettings.identity)."""
    return f"seconds_per_step:{device}:{model_identity}"


def estimate(measured: object, device: str, steps: StepCounts) -> tuple[float, str]:
    """(seconds, "measured" or "default"): the run time of a job of `steps` on `device`, from
    the `measured` seconds per cell-step (the stored value, None when there is none)."""
    if isinstance(measured, (int, float)) and math.isfinite(measured) and measured > 0:
        rate, kind = float(measured), "measured"
    else:
        default = DEFAULT_SECONDS_PER_STEP["cpu"]
        rate, kind = DEFAULT_SECONDS_PER_STEP.get(device.split(":")[0], default), "default"
    return round(steps.cell_steps * rate, 1), kind
