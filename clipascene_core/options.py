"""The user's options of a matrix, declared once.

The command line's options (`clipascene sketch|batch`) and the backend's job parameters
(`backend/params.py`'s `JobParams`) are built from this table, `config.config_from_options`
makes a configuration of its values, and `SketchConfig.validate` checks its limits. The
Inkscape extension cannot import this package (it runs in Inkscape's own Python), so a test
checks its `.inx` parameters and its own parsing against this table.

To add an option: add a row here (and the SketchConfig field it sets, if it is new); the
CLI, the API and their validation follow. Then add it to the `.inx` dialog if artists need it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .errors import ConfigError

#: CLIP ViT-B/32 blocks a column may use.
LAYER_RANGE = (0, 11)
#: The presets a user may ask for (their values: config.py); "auto" is resolved to a real one
#: by the device the run uses (`config.resolve_preset`).
PRESETS = ("auto", "preview", "standard", "paper")


@dataclass(frozen=True)
class Option:
    """One user option.

    name: the API's and the config's spelling ("row_steps"); the CLI's is "--row-steps".
    kind: "int", "bool", "choice" or "layers" (a list of CLIP layers, "2,8,11" in text).
    default: None means the preset's value. minimum/maximum: inclusive limits of an int; for
    "layers", of how many layers are given (each layer's own range is LAYER_RANGE). field: the
    SketchConfig field it sets.
    """

    name: str
    kind: str
    default: object
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    field: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("preset", "choice", "auto", "auto (standard on a GPU, preview on a CPU), preview "
           "(~500 steps, a CPU draft), standard (reference steps, 1 seed), paper (reference "
           "steps, 2 seeds)", choices=PRESETS),
    Option("layers", "layers", None, "CLIP layers, one column each (default 2,8,11; any of 0..11)",
           minimum=1, maximum=12),
    Option("rows", "int", None, "simplicity rows below each fidelity sketch (8; 0 = fidelity "
           "row only)", 0, 16, field="simplicity_rows"),
    Option("strokes", "int", None, "strokes per region (64)", 1, 256, field="strokes"),
    Option("split", "bool", True, "whether the foreground and the background are sketched "
           "separately (--no-split: the whole image as one region)", field="split"),
    Option("seed", "int", None, "random seed (the paper preset also runs seed + 1000)",
           0, 2**31 - 1),
    Option("iterations", "int", None, "training steps of every fidelity sketch (the preset's: "
           "500 in preview, 600 to 1500 otherwise)", 1, 20_000, field="iterations"),
    Option("row_steps", "int", None, "training steps per simplicity row (400; preview 100)",
           1, 5_000, field="simplicity_steps"),
)

BY_NAME = {option.name: option for option in OPTIONS}


def parse_layers(text: str) -> tuple[int, ...]:
    """"2,8,11" -> (2, 8, 11); raises ValueError with a sentence."""
    try:
        layers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        layers = ()
    if not layers:  # "" named no layer: not "the default layers"
        raise ValueError(f"layers must be comma-separated numbers like 2,8,11, not {text!r}")
    return layers


def check_option(option: Option, value) -> None:
    """Raises ConfigError, naming the option's flag, when an int option's value is out of range."""
    if option.kind == "int" and value is not None and not option.minimum <= value <= option.maximum:
        raise ConfigError(f"{option.flag} must be between {option.minimum} and "
                          f"{option.maximum}, not {value}.")


def check_limits(config) -> None:
    """The table's limits on a configuration (a `config.SketchConfig`, which imports this
    table); raises ConfigError with the option's name."""
    for option in OPTIONS:
        if option.field is not None:
            check_option(option, getattr(config, option.field))
    low, high = LAYER_RANGE
    for layer in config.layers:
        if not low <= layer <= high:
            raise ConfigError(f"layer {layer} does not exist; CLIP ViT-B/32 has layers {low}..{high}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The table's options on an argparse parser (every default None: 'the preset's')."""

    def layers(text: str) -> tuple[int, ...]:
        try:
            return parse_layers(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    for option in OPTIONS:
        if option.kind == "bool":
            parser.add_argument(f"--no-{option.name}", dest=option.name, action="store_false",
                                default=None, help=option.help)
        elif option.kind == "choice":
            parser.add_argument(option.flag, choices=option.choices, default=option.default,
                                help=option.help)
        else:
            parser.add_argument(option.flag, dest=option.name,
                                type=layers if option.kind == "layers" else int, default=None,
                                help=option.help)

