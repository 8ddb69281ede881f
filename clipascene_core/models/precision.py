"""Which precision CLIP runs in: `auto` measures, once per machine, and never guesses.

bfloat16 halves the bytes a matrix product moves and, where the hardware has it natively
(AMX, AVX512-BF16, CUDA), runs the products faster; but whether a whole training step gets
faster depends on everything around the products (layouts, casts, elementwise work), which
flags cannot tell. So `auto` times a few real encoder steps in each precision the first
time a (device, torch, CLIP model) meets it, keeps the figures in the data folder, and
chooses bfloat16 only where it is clearly faster (`BF16_WINS_BELOW`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..paths import data_dir

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
#: bfloat16 is chosen only where its step takes at most this fraction of float32's.
BF16_WINS_BELOW = 0.85
#: The data folder's record of the measurements, keyed by `machine_key`.
CACHE_FILE = "precision.json"
#: CPU flags that decide how fast bfloat16 and float32 products run.
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run asked for, what it runs, and why (with the measured step times)."""

    requested: str
    precision: str
    #: "asked" (fp32 or bf16 given), "measured" (just now), "measured earlier" (the data
    #: folder's record), "no bfloat16" (the device cannot run it at all).
    reason: str
    fp32_ms: float | None = None
    bf16_ms: float | None = None
    machine: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: 'bf16 (auto: measured 310 ms against fp32's 640 ms a step)'."""
        if self.requested != "auto":
            return f"{self.precision} (asked for)"
        if self.fp32_ms is None or self.bf16_ms is None:
            return f"{self.precision} (auto: {self.reason})"
        return (f"{self.precision} (auto, {self.reason}: a step takes {self.bf16_ms:.0f} ms in bf16, "
                f"{self.fp32_ms:.0f} ms in fp32)")


def cpu_flags() -> set[str]:
    try:
        line = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")), "")
    except OSError:
        line = ""
    return set(line.replace(":", " ").split())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key(device: torch.device, clip_model: str) -> str:
    """What the measurement depends on: the processor (model, the flags that matter, the
    threads torch uses) or the GPU, torch's version, and the CLIP model."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        hardware = f"cuda {torch.cuda.get_device_name(index)}"
    elif device.type == "cpu":
        flags = cpu_flags()
        hardware = (f"cpu {cpu_model()} [{' '.join(flag for flag in _CPU_FLAGS if flag in flags)}]"
                    f" x{torch.get_num_threads()}")
    else:
        hardware = device.type
    return f"{hardware} | torch {torch.__version__} | {clip_model}"


def can_run_bf16(device: torch.device) -> bool:
    """Whether bfloat16 runs on `device` at all (fast or not is for `measure` to say)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: A first step this many times the fastest precision's first step is not timed again.
CLEARLY_SLOWER = 8


def measure(encoders: dict, repeats: int = 3, batch: int = 5) -> dict[str, float]:
    """Milliseconds of one training step of each encoder ({name: ClipEncoder}): a batch of
    `batch` images (a sketch and its augmentations) forward to layer 8 (or the last) and
    back to the pixels, as a fidelity step does. Interleaved, after a warm-up, the median
    of `repeats`, so that a busy machine slows both alike; one clearly slower at its first
    step (`CLEARLY_SLOWER`) is not timed again."""
    first = next(iter(encoders.values()))
    device = first.mean.device
    size = first.visual.image_size
    size = size if isinstance(size, tuple | list) else (size, size)
    layer = min(8, first.num_layers - 1)
    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)

    def step(encoder) -> float:
        start = time.perf_counter()
        pixels = images.clone().requires_grad_(True)
        features = encoder.layer_features(pixels, [layer])[layer]
        features.float().square().mean().backward()
        _sync(device)
        return time.perf_counter() - start

    warm_up = {name: step(encoder) for name, encoder in encoders.items()}
    # A precision whose first step took many times the fastest one's cannot win (no warm-up
    # costs that much); its one step is its figure, so that a CPU without native bf16 (whose
    # emulated bf16 step takes 10-40x fp32's) pays one slow step, not four.
    slow = {name for name, seconds in warm_up.items()
            if seconds > CLEARLY_SLOWER * min(warm_up.values())}
    times: dict[str, list[float]] = {name: [warm_up[name]] if name in slow else []
                                     for name in encoders}
    for _ in range(repeats):
        for name, encoder in encoders.items():
            if name not in slow:
                times[name].append(step(encoder))
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def _read_cache(path: Path) -> dict:
    try:
        machines = json.loads(path.read_text(encoding="utf-8")).get("machines")
        return machines if isinstance(machines, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_cache(path: Path, machines: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"machines": machines}, indent=1), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:  # a read-only data folder: measure again next time
        logger.info("could not keep the precision measurement in %s: %s", path, error)


def measured_choice(device: torch.device, clip_model: str,
                    cache: Path | None = None) -> PrecisionChoice | None:
    """`auto`'s choice as the data folder recorded it, without measuring (None: not yet)."""
    key = machine_key(torch.device(device), clip_model)
    entry = _read_cache(cache or data_dir() / CACHE_FILE).get(key)
    if not isinstance(entry, dict):
        return None
    try:
        return _decide(float(entry["fp32_ms"]), float(entry["bf16_ms"]), "measured earlier", key)
    except (KeyError, TypeError, ValueError):
        return None


def _decide(fp32_ms: float, bf16_ms: float, reason: str, key: str) -> PrecisionChoice:
    precision = "bf16" if bf16_ms <= BF16_WINS_BELOW * fp32_ms else "fp32"
    return PrecisionChoice("auto", precision, reason, round(fp32_ms, 1), round(bf16_ms, 1), key)


def _known_choice(requested: str, device: torch.device, clip_model: str,
                  cache: Path | None) -> PrecisionChoice | None:
    """The choice where no measurement is needed now: as asked, a device without bfloat16,
    or the data folder's record for this machine; None where `auto` has yet to measure."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose auto, fp32 or bf16.")
    if requested != "auto":
        return PrecisionChoice(requested, requested, "asked")
    if not can_run_bf16(device):
        return PrecisionChoice("auto", "fp32", "no bfloat16 on this device")
    return measured_choice(device, clip_model, cache)


def choose_precision(requested: str, device: torch.device, clip_model: str,
                     timings: Callable[[], dict[str, float]], cache: Path | None = None) -> PrecisionChoice:
    """The precision to run. `auto` reads the data folder's measurement for this machine, or
    calls `timings()` ({"fp32": ms, "bf16": ms}) once and keeps its figures."""
    device = torch.device(device)
    cache = cache or data_dir() / CACHE_FILE
    known = _known_choice(requested, device, clip_model, cache)
    if known is not None:
        return known
    key = machine_key(device, clip_model)
    figures = timings()
    choice = _decide(figures["fp32"], figures["bf16"], "measured", key)
    machines = _read_cache(cache)
    machines[key] = {"fp32_ms": choice.fp32_ms, "bf16_ms": choice.bf16_ms,
                     "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_cache(cache, machines)
    logger.info("precision auto: %s", choice.describe())
    return choice


def planned_choice(requested: str, device: str | torch.device, clip_model: str) -> dict:
    """What a run would choose now, without measuring (for health and doctor reports):
    the choice's dict, with precision None where `auto` has not measured this machine yet."""
    known = _known_choice(requested, torch.device(device), clip_model, None)
    if known is not None:
        return known.to_dict()
    return {**PrecisionChoice("auto", "", "not measured yet: the first run times a few steps "
                              "in each precision").to_dict(), "precision": None}
