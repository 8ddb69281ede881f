"""`clipascene` command line: sketch an image into SVG files."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

import torch

from ..config import ConfigError
from ..errors import UserError
from ..io.images import load_image
from ..models.clip import WeightsError, default_threads, load_clip
from ..models.downloads import DownloadError
from ..scene.cluster import ClusterError
from ..scene.split import load_user_mask
from ..version import __version__
from . import doctor, inkscape_install, models_command
from .args import (
    EXIT_CANCELLED,
    EXIT_INPUT,
    EXIT_WEIGHTS,
    add_matrix_options,
    check_out,
    config_from_args,
    device_from_args,
    out_folder,
)

logger = logging.getLogger("clipascene")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipascene", description="Vector scene sketches at several levels of abstraction."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    sketch = commands.add_parser(
        "sketch", help="sketch an image into a matrix of SVGs (fidelity columns x simplicity rows)"
    )
    sketch.add_argument("image", type=Path, help="PNG, JPEG or WebP image")
    sketch.add_argument("--out", type=out_folder, required=True, help="folder for the results")
    sketch.add_argument("--mask", type=Path, default=None,
                        help="your own foreground mask image (white or opaque = object)")
    add_matrix_options(sketch)
    batch = commands.add_parser(
        "batch", help="one matrix per image (of folders and files) into OUT/<image name>/, "
                      "skipping images already done; here or across a Ray cluster")
    batch.add_argument("inputs", type=Path, nargs="+", metavar="DIR_OR_FILE",
                       help="images (PNG, JPEG, WebP), or folders holding them")
    batch.add_argument("--out", type=out_folder, required=True,
                       help="folder for the results: one folder per image, named after it")
    batch.add_argument("--ray", default=None, metavar="ADDR",
                       help="run the matrices on the Ray cluster at ADDR (HOST:PORT, or auto: "
                            "the one this machine has joined); pip install 'clipascene[cluster]'")
    batch.add_argument("--gpus-per-job", type=float, default=None, metavar="F",
                       help="with --ray: GPUs per matrix (0.25 packs four on a GPU; default 1 "
                            "where the cluster has GPUs, else 0)")
    add_matrix_options(batch)
    for module in (models_command, inkscape_install, doctor):
        module.add_commands(commands)
    return parser


def run_sketch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..io.outputs import claim_output_folder
    from ..io.records import MatrixEvent, NoticeEvent, ProgressEvent
    from ..scene.matrix import sketch_matrix
    from ..sketch.engine import Cancelled

    device = device_from_args(args)
    config = config_from_args(args, device.type)
    image = load_image(args.image)
    if args.mask is not None:
        if not args.mask.is_file():
            raise ConfigError(f"--mask {args.mask}: no such file.")
        load_user_mask(args.mask, image.pixels.size, (image.width, image.height))
    check_out(args.out)
    default_threads()
    encoder = load_clip(args.clip_model, args.weights, device, precision=args.precision)
    # A run into the folder of an earlier one replaces its results (no stale cells stay
    # behind), and nothing else: refused with nothing written.
    inputs = (args.image, args.mask) if args.mask else (args.image,)
    if claim_output_folder(args.out, config.layers, config.simplicity_rows + 1, config.split,
                           inputs) and not args.quiet:
        print(f"clipascene: replacing the earlier results in {args.out}", file=sys.stderr)
    bar = tqdm(total=1, unit="step", disable=args.quiet, dynamic_ncols=True,
               desc=f"sketching on {device}")

    def show(event: MatrixEvent) -> None:
        if isinstance(event, NoticeEvent):
            # Fallbacks and random weights are always announced, even with --quiet.
            bar.write(f"note: {event.text}", file=sys.stderr)
        elif isinstance(event, ProgressEvent):
            bar.total = event.steps_total
            bar.n = event.steps_done
            bar.set_postfix(stage=event.stage, refresh=False)
            bar.refresh()

    try:
        manifest = sketch_matrix(image, args.out, config, encoder, models_dir=args.models_dir,
                                 user_mask=args.mask, on_event=show, image_name=args.image.name)
    except (KeyboardInterrupt, Cancelled):
        bar.close()
        print(f"clipascene: interrupted; the cells finished so far are in {args.out}.",
              file=sys.stderr)
        return EXIT_CANCELLED
    bar.close()
    if not args.quiet:
        print(f"{len(manifest.cells)} cells ({manifest.rows} rows x {len(manifest.layers)} "
              f"columns) in {args.out}; overview: {args.out / manifest.grid}")
    return 0


#: Runtime failures whose message says what happened and what to do: one line each. A device
#: this machine lacks is a parameter error before this (`args.device_from_args`: a ConfigError).
NAMED_FAILURES = (ClusterError, DownloadError)
#: How the allocators say it when a device runs out of memory: CUDA's torch.OutOfMemoryError,
#: MPS's and the CPU allocator's plain RuntimeError, Python's MemoryError.
OUT_OF_MEMORY = ("out of memory", "not enough memory")


def failure_line(error: Exception) -> str | None:
    """The one line for a runtime failure the user can act on; None for anything else (a bug:
    shown with its traceback)."""
    if isinstance(error, NAMED_FAILURES):
        return str(error)
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)) or (
            isinstance(error, RuntimeError) and any(words in str(error) for words in OUT_OF_MEMORY)):
        said = (str(error).strip() or type(error).__name__).splitlines()[0].split(". ")[0]
        return (f"the sketch ran out of memory ({said}); close what else uses the device's "
                "memory, or ask for less: fewer --strokes or --layers, or --device cpu.")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(getattr(args, "log_level", "WARNING")).upper(),
                                      logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "sketch":
            return run_sketch(args)
        if args.command == "batch":
            from .batch import run_batch

            return run_batch(args)
        if args.command in ("models", "inkscape", "doctor"):
            runs = {"models": models_command.run, "inkscape": inkscape_install.run, "doctor": doctor.run}
            return runs[args.command](args)
    except UserError as error:  # the image, the options, the mask, weights not installed
        print(f"clipascene: {error}", file=sys.stderr)
        return EXIT_WEIGHTS if isinstance(error, WeightsError) else EXIT_INPUT
    except OSError as error:  # e.g. the disk of --out filled up during the run
        print(f"clipascene: cannot write the results: {error}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as error:
        line = failure_line(error)
        if line is None:  # a bug: everything a report needs
            traceback.print_exc()
            line = f"internal error ({type(error).__name__}); the traceback above says where."
        print(f"clipascene: {line}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
