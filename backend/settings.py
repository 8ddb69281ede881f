"""How the backend service runs: the one settings object `create_app` is built from, and its
parts (the models, the executor). Imports no torch: the service's command line and its health
report read these without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAX_UPLOAD_BYTES = 25 * 2**20


@dataclass(frozen=True)
class ModelSettings:
    clip_model: str = "ViT-B-32"
    weights: str = "openai"
    models_dir: Path | None = None
    #: "auto" (bfloat16 where the device has it natively), "fp32" or "bf16".
    precision: str = "auto"

    @property
    def identity(self) -> str:
        return f"{self.clip_model}:{self.weights}:{self.precision}"


@dataclass(frozen=True)
class ExecutorSettings:
    """Where jobs run: `kind` "local" (this machine's devices) or "ray" (backend.executors)."""

    kind: str = "local"
    #: The cluster: "auto" (the one this machine has joined), an address "HOST:PORT", or
    #: None (start a Ray runtime on this machine: packing jobs onto its own GPUs).
    ray_address: str | None = None
    #: GPUs per job (0.25: four jobs share a GPU; 0: CPU only); None: 1 where the cluster has
    #: GPUs, else 0.
    gpus_per_job: float | None = None
    #: Jobs on the cluster at once; None: as many as fit its resources at the start.
    max_jobs: int | None = None


@dataclass
class Settings:
    """How the service runs. devices: one worker each ("cpu", "cuda:0", …)."""

    data_dir: Path
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    models: ModelSettings = field(default_factory=ModelSettings)
    token: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    #: Host names requests may be addressed to (None: any). `serve` sets the bound loopback
    #: names, or --public-name, against DNS rebinding.
    allowed_hosts: tuple[str, ...] | None = None
    start_workers: bool = True
    #: Where jobs run: this machine's devices (local) or a Ray cluster (see executors).
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
