"""`clipascene batch`: one matrix per image into OUT/<image stem>/, here or across a Ray cluster.

An image whose folder already holds a complete matrix made with the same parameters and model
is skipped, so an interrupted batch resumes where it stopped. One progress bar covers the
batch (finished images plus the running ones' fractions); a summary ends it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import ConfigError, SketchConfig, config_dict
from ..errors import UserError
from ..io.images import load_image
from ..io.outputs import claim_output_folder
from ..io.records import MatrixEvent, NoticeEvent, OutputFolder, ProgressEvent
from ..models.clip import default_threads, load_clip
from ..scene.cluster import (
    ClusterError,
    RemoteMatrix,
    config_device,
    connect,
    default_gpus,
)
from ..scene.matrix import sketch_matrix
from ..sketch.engine import Cancelled
from .args import EXIT_CANCELLED, check_out, config_from_args, device_from_args

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Matrices in flight on a cluster at once (Ray queues what does not fit its resources).
MAX_IN_FLIGHT = 64
#: What fails one image and not the batch: the user's mistakes (its image, ...), a cluster that
#: cannot run it, a disk that cannot hold its results.
IMAGE_ERRORS = (UserError, ClusterError, OSError)


def find_images(inputs: list[Path]) -> list[Path]:
    """The images named, and those in the folders named (not their subfolders), in order;
    raises ConfigError when two would share an output folder or there are none."""
    images: list[Path] = []
    for item in inputs:
        if item.is_dir():
            images += sorted(path for path in item.iterdir()
                             if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            images.append(item)
        else:
            raise ConfigError(f"{item}: no such file or folder.")
    by_stem: dict[str, Path] = {}
    for image in dict.fromkeys(path.resolve() for path in images):
        if image.stem in ("", ".", ".."):
            # "...png" would go to OUT/.. (outside OUT), "..png" into OUT itself.
            raise ConfigError(f"{image}: its name, {image.stem!r} without the suffix, cannot "
                              "name its results folder inside --out; rename it.")
        if image.stem in by_stem:
            raise ConfigError(f"{by_stem[image.stem]} and {image} would both go to the folder "
                              f"{image.stem}/; rename one, or run them in separate batches.")
        by_stem[image.stem] = image
    if not by_stem:
        raise ConfigError("no images (PNG, JPEG or WebP) in "
                          + ", ".join(str(item) for item in inputs) + ".")
    return list(by_stem.values())


def already_done(folder: Path, config: SketchConfig, clip_model: str) -> bool:
    """Whether `folder` holds a finished matrix made with these parameters and this model."""
    manifest = OutputFolder(folder).read_manifest()
    return (manifest is not None and manifest.grid is not None
            and len(manifest.cells) == manifest.cells_total
            and manifest.model.clip == clip_model
            and manifest.parameters == json.loads(json.dumps(config_dict(config))))


class BatchProgress:
    """One bar over the batch: finished images plus the fractions of those running."""

    def __init__(self, total: int, quiet: bool, where: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="image", disable=quiet, dynamic_ncols=True,
                        desc=f"batch on {where}", bar_format="{l_bar}{bar}| {n:.2f}/{total} "
                        "images [{elapsed}<{remaining}{postfix}]")
        self.lock = threading.Lock()
        self.running: dict[str, float] = {}
        self.finished = 0

    def events(self, name: str):
        """on_event for the matrix of image `name`."""
        def on_event(event: MatrixEvent) -> None:
            if isinstance(event, NoticeEvent):
                self.bar.write(f"note ({name}): {event.text}", file=sys.stderr)
            elif isinstance(event, ProgressEvent):
                self.update(name, event.fraction)
        return on_event

    def update(self, name: str, fraction: float | None) -> None:
        """fraction None: the image is finished (done or failed)."""
        with self.lock:
            if fraction is None:
                self.running.pop(name, None)
                self.finished += 1
            else:
                self.running[name] = fraction
            self.bar.n = round(self.finished + sum(self.running.values()), 2)
            self.bar.set_postfix_str(", ".join(sorted(self.running)) or "", refresh=False)
            self.bar.refresh()


def run_batch(args: argparse.Namespace) -> int:
    images = find_images(args.inputs)
    check_out(args.out)
    if args.gpus_per_job is not None and (args.ray is None or args.gpus_per_job < 0):
        raise ConfigError("--gpus-per-job is a number of GPUs, 0 or more, and goes with --ray.")
    if args.ray is not None:
        ray = connect(args.ray)
        gpus = default_gpus(ray, args.gpus_per_job)
        config = config_from_args(args, config_device(gpus))
        where = f"the Ray cluster at {args.ray}"
    else:
        device = device_from_args(args)
        config = config_from_args(args, device.type)
        where = str(device)
    pending = [image for image in images
               if not already_done(args.out / image.stem, config, args.clip_model)]
    skipped = len(images) - len(pending)
    if pending and args.ray is None:
        default_threads()
        encoder = load_clip(args.clip_model, args.weights, device, precision=args.precision)
    progress = BatchProgress(len(pending), args.quiet, where)
    stop = threading.Event()
    failed: dict[str, str] = {}

    def sketch(image: Path) -> None:
        out = args.out / image.stem
        on_event = progress.events(image.name)
        progress.update(image.name, 0.0)
        try:
            claim_output_folder(out, config.layers, config.simplicity_rows + 1, config.split,
                                (image,))
            if args.ray is not None:
                RemoteMatrix(ray, image.read_bytes(), out, config, clip_model=args.clip_model,
                             weights=args.weights, models_dir=args.models_dir,
                             precision=args.precision, gpus=gpus,
                             name=f"clipascene batch {image.name}").run(on_event, stop.is_set)
            else:
                sketch_matrix(load_image(image), out, config, encoder, models_dir=args.models_dir,
                              on_event=on_event, should_stop=stop.is_set)
        except IMAGE_ERRORS as error:
            failed[image.name] = str(error)
        finally:
            progress.update(image.name, None)

    try:
        if args.ray is None:
            for image in pending:
                sketch(image)
        else:
            with ThreadPoolExecutor(max(1, min(len(pending), MAX_IN_FLIGHT))) as pool:
                try:
                    for outcome in [pool.submit(sketch, image) for image in pending]:
                        outcome.result()
                except KeyboardInterrupt:
                    stop.set()  # each matrix's task is cancelled; the pool waits for them
                    raise
    except (KeyboardInterrupt, Cancelled):
        progress.bar.close()
        print(f"clipascene: interrupted; finished matrices are in {args.out} and a new run "
              "skips them.", file=sys.stderr)
        return EXIT_CANCELLED
    progress.bar.close()
    done = len(pending) - len(failed)
    print(f"batch: {done} sketched, {skipped} skipped (already done), {len(failed)} failed; "
          f"results in {args.out}/<image name>/")
    for name, reason in failed.items():
        print(f"clipascene: {name} failed: {reason}", file=sys.stderr)
    return 1 if failed else 0
