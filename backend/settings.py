"""How the backend service runs: the one settings object `create_app` is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .executors import ExecutorSettings
from .worker import ModelSettings

MAX_UPLOAD_BYTES = 25 * 2**20


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
