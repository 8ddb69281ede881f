"""`clipascene models list|download|verify|path`: the weights on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models import netcheck
from ..models.clip import (
    DEFAULT_CLIP_MODEL,
    WeightsError,
    clip_weights_present,
    load_clip,
    resolve_device,
)
from ..models.downloads import DownloadError, download, verify
from ..models.precision import PrecisionChoice, planned_choice
from ..models.weights import WEIGHTS
from ..paths import models_dir

CLIP_NAME = "clip"


def add_commands(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list, download or verify the model weights")
    models.add_argument("action", choices=("list", "download", "verify", "path"))
    models.add_argument("names", nargs="*", help=f"which weights (default all): {CLIP_NAME}, "
                        + ", ".join(WEIGHTS))
    models.add_argument("--weights-dir", type=Path, default=None,
                        help="the folder holding the weights (default: the data folder's models/)")
    models.add_argument("--quiet", action="store_true")


def _status(name: str, folder: Path) -> str:
    if name == CLIP_NAME:
        return "present" if clip_weights_present(folder) else "missing"
    return verify(WEIGHTS[name], folder)


def precision_line() -> str:
    """What `--precision auto` runs CLIP in on this machine's first device."""
    device = resolve_device("auto")
    choice = planned_choice("auto", device, DEFAULT_CLIP_MODEL)
    if choice["precision"] is None:
        return f"auto on {device}: {choice['reason']}"
    return f"auto on {device}: " + PrecisionChoice(**choice).describe()


def run(args: argparse.Namespace) -> int:
    folder = (args.weights_dir or models_dir()).expanduser()
    names = args.names or [CLIP_NAME, *WEIGHTS]
    unknown = [name for name in names if name != CLIP_NAME and name not in WEIGHTS]
    if unknown:
        print(f"clipascene: unknown weights {', '.join(unknown)}; known: {CLIP_NAME}, "
              f"{', '.join(WEIGHTS)}.", file=sys.stderr)
        return 2
    if args.action == "path":
        print(folder)
        return 0
    if args.action in ("list", "verify"):
        states = {name: _status(name, folder) for name in names}
        for name, state in states.items():
            role = "CLIP ViT-B/32 (OpenAI), required" if name == CLIP_NAME else WEIGHTS[name].role
            print(f"{name:10} {state:8} {role}")
        print(f"folder: {folder}")
        if args.action == "list":
            print(f"precision: {precision_line()}")
        bad = [name for name, state in states.items() if state != "present"]
        return 1 if args.action == "verify" and bad else 0
    return _download(names, folder, args.quiet)


def _download(names: list[str], folder: Path, quiet: bool) -> int:
    from tqdm import tqdm

    missing = [name for name in names if _status(name, folder) != "present"]
    unreachable = netcheck.unreachable(netcheck.weights_servers()) if missing else None
    if unreachable:  # offline: one line now, not each file's retries
        print(f"clipascene: cannot download {', '.join(missing)}: no answer from {unreachable}. "
              f"Run this again when online, or put the files in {folder}.", file=sys.stderr)
        return 1
    failures = 0
    for name in names:
        if name == CLIP_NAME:
            if not quiet:
                print("CLIP ViT-B/32 (OpenAI): fetching through open_clip (about 350 MB)…")
            try:
                load_clip(DEFAULT_CLIP_MODEL, "openai", cache_dir=folder)
            except WeightsError as error:
                print(f"clipascene: {error}", file=sys.stderr)
                failures += 1
            continue
        entry = WEIGHTS[name]
        bar = tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.filename, disable=quiet)

        def show(done: int, total: int, bar=bar) -> None:
            bar.total = total or bar.total
            bar.n = done
            bar.refresh()

        try:
            download(entry, folder, on_progress=show)
        except DownloadError as error:
            bar.close()
            print(f"clipascene: {error}", file=sys.stderr)
            failures += 1
            continue
        bar.close()
    return 1 if failures else 0
