"""Job parameters as the HTTP API accepts them: the CLI's option names, validated."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from clipascene_core.config import SketchConfig, config_from_options
from clipascene_core.options import BY_NAME, OPTIONS, Option, parse_layers


class _Checks(BaseModel):
    """Validation shared by every option of the table (clipascene_core.options)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value, info):
        """JSON true and false are not the numbers 1 and 0 here (`layers: [true]`)."""
        if BY_NAME[info.field_name].kind in ("int", "layers") and (
                isinstance(value, bool)
                or (isinstance(value, list) and any(isinstance(item, bool) for item in value))):
            raise ValueError("must be a number, not true or false")
        if BY_NAME[info.field_name].kind == "layers" and isinstance(value, str):
            return list(parse_layers(value))  # "2,8,11" as well as [2, 8, 11]
        return value

    def to_config(self, device_type: str = "cpu") -> SketchConfig:
        """The engine's configuration for a worker on `device_type` ("auto" resolves by it);
        raises config.ConfigError with a sentence if invalid."""
        return config_from_options(self.model_dump(), device_type)

    def canonical(self) -> dict:
        return self.model_dump(mode="json")


def _field(option: Option) -> tuple:
    """The pydantic (annotation, default) of a table row."""
    if option.kind == "choice":
        return Literal[option.choices], option.default
    if option.kind == "bool":
        return bool, option.default
    if option.kind == "layers":
        return list[int] | None, Field(default=option.default, min_length=option.minimum,
                                       max_length=option.maximum)
    return int | None, Field(default=option.default, ge=option.minimum, le=option.maximum)


#: Parameters of one sketch job: every option of the table, named as the API spells them.
JobParams = create_model("JobParams", __base__=_Checks,
                         **{option.name: _field(option) for option in OPTIONS})


def job_key(image: bytes, params: JobParams, model_identity: str, mask: bytes | None = None) -> str:
    """Identical image bytes, parameters, model and drawn mask give the same key (the cache);
    a job without a mask keeps the key it had before masks were taken."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image).digest())
    digest.update(json.dumps(params.canonical(), sort_keys=True).encode())
    digest.update(model_identity.encode())
    if mask is not None:
        digest.update(b"mask" + hashlib.sha256(mask).digest())
    return digest.hexdigest()
