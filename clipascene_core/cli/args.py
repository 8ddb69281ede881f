"""What `clipascene sketch` and `clipascene batch` share: their options, the device and the
configuration made of them, the --out check, and the exit codes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import RENDERERS, ConfigError, config_from_options
from ..models.clip import add_model_arguments, resolve_device
from ..options import add_arguments as add_option_arguments

EXIT_INPUT = 2
EXIT_WEIGHTS = 3
EXIT_CANCELLED = 130


def out_folder(text: str) -> Path:
    """--out: a folder name (an empty one would mean the current folder unasked)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder name (\".\" for the current folder)")
    return Path(text)


def add_matrix_options(command: argparse.ArgumentParser) -> None:
    """The options of a matrix, shared by `sketch` and `batch`."""
    add_option_arguments(command)  # the table of user options (clipascene_core/options.py)
    command.add_argument("--models-dir", type=Path, default=None,
                         help="folder holding u2net.onnx and big-lama.pt (default: the data folder)")
    command.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    command.add_argument("--renderer", choices=RENDERERS, default="torch",
                         help="differentiable rasteriser: torch (built in) or diffvg (if installed)")
    add_model_arguments(command)
    command.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None,
                         help="a quick draft of every cell first, then the final cells (default: "
                              "on a CPU, off on a GPU)")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")


def device_from_args(args: argparse.Namespace):
    try:
        return resolve_device(args.device)
    except RuntimeError as error:  # a device this machine lacks: a parameter error
        raise ConfigError(str(error)) from None


def config_from_args(args: argparse.Namespace, device_type: str):
    """The matrix's configuration from the options, for a device of `device_type`."""
    return config_from_options(vars(args), device_type, renderer=args.renderer,
                               progressive=getattr(args, "progressive", None))


def check_out(out: Path) -> None:
    """Refuse, before anything is written, an --out that cannot hold the results."""
    existing = out.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == out.absolute() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder.")
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, so no folder can be made under it.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the folder {existing} is not writable.")
