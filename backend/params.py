"""Job parameters as the HTTP API accepts them: the CLI's option names, validated."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clipascene_core.config import SketchConfig, make_config


class JobParams(BaseModel):
    """Parameters of one sketch job; every field is optional and named like the CLI option."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["auto", "preview", "standard", "paper"] = "auto"
    layers: list[int] | None = Field(default=None, min_length=1, max_length=12)
    rows: int | None = Field(default=None, ge=0, le=16)
    strokes: int | None = Field(default=None, ge=1, le=256)
    split: bool = True
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    iterations: int | None = Field(default=None, ge=1, le=20_000)
    row_steps: int | None = Field(default=None, ge=1, le=5_000)

    @field_validator("layers", "rows", "strokes", "seed", "iterations", "row_steps", mode="before")
    @classmethod
    def _no_booleans(cls, value):
        """JSON true and false are not the numbers 1 and 0 here (`layers: [true]`)."""
        if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(item, bool)
                                                                        for item in value)):
            raise ValueError("must be a number, not true or false")
        return value

    @field_validator("layers", mode="before")
    @classmethod
    def _layers_from_text(cls, value):
        """Accept "2,8,11" as well as [2, 8, 11]."""
        if isinstance(value, str):
            try:
                return [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise ValueError("layers must be numbers like 2,8,11") from None
        return value

    def to_config(self, device_type: str = "cpu") -> SketchConfig:
        """The engine's configuration for a worker on `device_type` ("auto" resolves by it);
        raises config.ConfigError with a sentence if invalid."""
        return make_config(
            self.preset, device_type=device_type, seed=self.seed,
            layers=tuple(self.layers) if self.layers else None, strokes=self.strokes,
            iterations=self.iterations, simplicity_rows=self.rows, split=self.split,
            simplicity_steps=self.row_steps,
        )

    def canonical(self) -> dict:
        return self.model_dump(mode="json")


def job_key(image: bytes, params: JobParams, model_identity: str) -> str:
    """Identical image bytes, parameters and model give the same key (the cache)."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image).digest())
    digest.update(json.dumps(params.canonical(), sort_keys=True).encode())
    digest.update(model_identity.encode())
    return digest.hexdigest()
