"""A job's run facts: what its run will be, resolved once and stored with the job.

The preset that runs (`auto` resolved), its step counts, the device type they were resolved
for and the regions sketched are worked out when the job is submitted (for the device that
will take it first), again only when a device of another type claims it, and the regions
once more when the worker learns that a split fell back to one scene. The API shows them
from the job's row: no request or event builds a configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clipascene_core.config import ConfigError, StepCounts
from clipascene_core.io.records import Layout, Preset

from .params import JobParams


@dataclass(frozen=True)
class RunFacts:
    """preset: the preset that runs and its steps; device_type: the device type ("cpu",
    "cuda", "mps") they were resolved for; regions: the region labels sketched (those the
    layout plans until the run says otherwise)."""

    preset: Preset
    device_type: str
    regions: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"preset": self.preset.to_dict(), "device_type": self.device_type,
                "regions": list(self.regions)}

    @classmethod
    def from_dict(cls, values: dict) -> RunFacts:
        return cls(Preset.from_dict(values["preset"]), str(values["device_type"]),
                   tuple(str(region) for region in values["regions"]))


def resolve_facts(params: dict, device_type: str,
                  regions: Sequence[str] | None = None) -> tuple[RunFacts, Layout]:
    """The run facts and layout of a job of `params` on a device of `device_type`, sketching
    `regions` (labels; by default those the layout plans). Raises ConfigError (or pydantic's
    ValueError) when the parameters are not valid."""
    config = JobParams(**params).to_config(device_type)
    layout = Layout.of(config)
    labels = tuple(regions) if regions else tuple(layout.planned_regions())
    return RunFacts(Preset.of(config, labels), device_type, labels), layout


def unrunnable(params: dict, device_type: str) -> RunFacts:
    """The facts of a stored job whose parameters are no longer valid (it cannot run)."""
    asked = str(params.get("preset") or "")
    return RunFacts(Preset(asked, asked, StepCounts({}, 0, 0, ())), device_type, ())


def stored_facts(params: dict, device_type: str) -> RunFacts:
    """`resolve_facts` for a job already stored, or `unrunnable` ones."""
    try:
        return resolve_facts(params, device_type)[0]
    except (ConfigError, ValueError, TypeError):
        return unrunnable(params, device_type)


def torch_device_type(device: str) -> str:
    """"cuda:1" -> "cuda"; "auto" -> what PyTorch finds here."""
    if device == "auto":
        from clipascene_core.models.clip import resolve_device

        return resolve_device("auto").type
    return device.split(":")[0]
