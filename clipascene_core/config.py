"""All parameters of a sketch run, the named presets, and their validation.

Numbers follow the CLIPascene reference code (see docs/algorithm.md); every one can be
overridden. Errors are `ConfigError` with a sentence a user can act on.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConfigError
from .options import BY_NAME, OPTIONS, PRESETS, check_limits, check_option

#: The sketch canvas, CLIP ViT-B/32's input size in px.
CANVAS_SIZE = 224
#: CLIP ViT-B/32 residual blocks the paper uses as fidelity columns.
FIDELITY_LAYERS = (2, 3, 4, 7, 8, 11)
DEFAULT_LAYERS = (2, 8, 11)
#: Exponent step of the ratio schedule r_i = r_1 * 2^(-i * delta), per CLIP layer.
BACKGROUND_DELTA = {2: 0.35, 3: 0.45, 4: 0.45, 7: 0.45, 8: 0.5, 11: 0.85}
OBJECT_DELTA = {2: 0.4, 3: 0.45, 4: 0.45, 7: 0.4, 8: 0.5, 11: 0.9}
RENDERERS = ("torch", "diffvg")


@dataclass
class SketchConfig:
    """Parameters of the fidelity (and later simplicity) training.

    Units: canvas pixels of the 224 px square canvas unless stated. The user's options and
    their limits are declared once, in `options.OPTIONS`.
    """

    #: The preset that ran ("auto" is resolved before a config exists); `preset_requested` is
    #: what the user asked for.
    preset: str = "standard"
    preset_requested: str = "standard"
    layers: tuple[int, ...] = DEFAULT_LAYERS
    strokes: int = 64
    seeds: tuple[int, ...] = (0,)
    stroke_width: float = 3.0
    # Iterations of the fidelity stage; `iterations` overrides all of them when set.
    iterations: int | None = None
    scene_iterations: int = 1500
    object_iterations_shallow: int = 600
    object_iterations_deep: int = 1000
    deep_layer_from: int = 8
    eval_start: int = 400
    eval_every: int = 50
    # Augmented pairs per step besides the clean pair.
    augmentations: int = 4
    # 0: fresh random augmentations every step (the reference). N > 0: a fixed pool of N
    # augmentations drawn once, whose target features are computed once (much cheaper).
    augment_pool: int = 0
    perspective_distortion: float = 0.5
    crop_scale: float = 0.8
    lr_location: float = 1e-4
    location_hidden: int = 1000
    location_residual_scale: float = 0.1
    anchor_layer: int = 4
    anchor_weight: float = 0.5
    layer_weight: float = 1.0
    init_temperature: float = 0.3
    init_step: float = 0.05
    # Simplicity axis: rows below the fidelity sketch, steps per row, and its networks.
    simplicity_rows: int = 8
    simplicity_steps: int = 400
    simplicity_evals: int = 4
    lr_simplify: float = 5e-5
    simplify_hidden: int = 1000
    simplify_input: float = 1.5
    gumbel_temperature: float = 0.2
    keep_threshold: float = 0.7
    # Foreground/background split.
    split: bool = True
    # Cells per CLIP batch: None = all on a GPU, one at a time on the CPU; 0 = all.
    cells_per_batch: int | None = None
    # The differentiable rasteriser: "torch" (built in) or "diffvg" (when pydiffvg imports).
    renderer: str = "torch"
    # "auto": a whole column at a time on the CPU (first cells early), every cell in lock-step
    # on a GPU (one big batch); or "column" / "lockstep" (see engine.Engine).
    schedule: str = "auto"
    # A draft of every cell first, then the final cells (progressive.py): None = on a CPU,
    # off on a GPU (where the whole matrix takes minutes); True or False as asked.
    progressive: bool | None = None

    @property
    def canvas_size(self) -> int:
        """CLIP ViT-B/32's input: the sketch canvas is 224 px square."""
        return CANVAS_SIZE

    def simplicity_delta(self, region: str, layer: int) -> float:
        """The ratio schedule's exponent step for a column (nearest tabulated layer)."""
        table = OBJECT_DELTA if region == "object" else BACKGROUND_DELTA
        nearest = min(table, key=lambda known: (abs(known - layer), known))
        return table[nearest]

    def simplicity_eval_steps(self) -> set[int]:
        """Steps (1-based, within a row) at which a row's candidates are evaluated."""
        every = max(1, self.simplicity_steps // max(self.simplicity_evals, 1))
        return {step for step in range(every, self.simplicity_steps + 1, every)} | {
            self.simplicity_steps}

    def fidelity_iterations(self, region: str, layer: int) -> int:
        """Training steps of one fidelity cell."""
        if self.iterations is not None:
            return self.iterations
        if region == "object":
            deep = layer >= self.deep_layer_from
            return self.object_iterations_deep if deep else self.object_iterations_shallow
        return self.scene_iterations

    def is_eval_step(self, step: int, total: int) -> bool:
        """Whether the clean loss is checked after step `step` (1-based) of `total`."""
        if step == total:
            return True
        return step >= self.eval_start and (step - self.eval_start) % self.eval_every == 0

    def validate(self) -> SketchConfig:
        if self.preset not in PRESETS or self.preset == "auto":
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if not self.layers:
            raise ConfigError("at least one fidelity layer is needed, e.g. --layers 2,8,11.")
        if len(set(self.layers)) != len(self.layers):
            raise ConfigError("each fidelity layer may be given only once.")
        check_limits(self)  # the user's options: one table, clipascene_core/options.py
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("give one or more distinct seeds.")
        if self.augmentations < 0 or self.augment_pool < 0:
            raise ConfigError("augmentation counts cannot be negative.")
        if self.stroke_width <= 0:
            raise ConfigError("the stroke width must be positive.")
        if self.schedule not in ("auto", "lockstep", "column"):
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose auto, lockstep or column.")
        check_renderer(self.renderer)  # diffvg asked for but not importable: say so now
        return self


@functools.cache
def _diffvg_importable() -> bool:
    try:
        importlib.import_module("pydiffvg")
    except Exception:  # a broken build fails in many ways; all mean "not usable"
        return False
    return True


def check_renderer(name: str) -> None:
    """Raises ConfigError unless `name` is a renderer usable here: "torch" (built in), or
    "diffvg" where `import pydiffvg` works (sketch/render.py draws with either)."""
    if name not in RENDERERS:
        raise ConfigError(f"unknown renderer {name!r}; choose one of {', '.join(RENDERERS)}.")
    if name == "diffvg" and not _diffvg_importable():
        raise ConfigError(
            "the diffvg renderer needs the `pydiffvg` module, which could not be imported; "
            "no package index ships it: build it from https://github.com/BachiLi/diffvg "
            "in this environment, or use --renderer torch (the default)."
        )


_PRESETS: dict[str, dict] = {
    # A draft for CPUs: about 500 steps already give a reasonable sketch (reference README);
    # one seed, and a fixed pool of augmentations (a speed choice: their target features are
    # encoded once, so each step pays for the sketch batch only).
    "preview": dict(
        iterations=500, eval_start=300, seeds=(0,), augment_pool=128, simplicity_steps=100,
    ),
    # The reference's iteration counts and fresh augmentations every step, one seed.
    "standard": dict(seeds=(0,), augment_pool=0),
    # The reference exactly: its iteration counts, seeds 0 and 1000 for every fidelity
    # sketch and every simplicity row (best kept), fresh augmentations every step.
    "paper": dict(seeds=(0, 1000), augment_pool=0),
}

#: Device types on which "auto" means the reference's counts; elsewhere it means the draft.
_ACCELERATED = ("cuda", "mps")


def resolve_preset(preset: str, device_type: str) -> str:
    """The preset a run uses: "auto" is `standard` on a GPU (CUDA or Apple MPS) and `preview`
    on a CPU; any other name is itself."""
    if preset == "auto":
        return "standard" if device_type in _ACCELERATED else "preview"
    return preset


def preset_seeds(preset: str, seed: int) -> tuple[int, ...]:
    """A user's single seed, as the preset runs it: `paper` also runs seed + 1000."""
    return tuple(seed + offset for offset in range(0, 1000 * len(_PRESETS[preset]["seeds"]), 1000))


def make_config(preset: str = "standard", *, device_type: str = "cpu", seed: int | None = None,
                **overrides) -> SketchConfig:
    """The preset's configuration with `overrides` (None values ignored), validated.

    preset: a name of PRESETS; "auto" is resolved for `device_type` ("cpu", "cuda", "mps").
    seed: the user's seed, expanded to the preset's seeds (an explicit `seeds` wins).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    ran = resolve_preset(preset, device_type)
    values = dict(_PRESETS[ran])
    if seed is not None:
        if seed < 0:
            raise ConfigError(f"--seed must be 0 or more, not {seed}.")
        values["seeds"] = preset_seeds(ran, seed)
    values.update({key: value for key, value in overrides.items() if value is not None})
    known = {item.name for item in dataclasses.fields(SketchConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}.")
    return SketchConfig(preset=ran, preset_requested=preset, **values).validate()


def config_from_options(values: dict, device_type: str = "cpu", **settings) -> SketchConfig:
    """A configuration from the table's options ({name: value}, None = the preset's) for a
    device of `device_type`; `settings` are other SketchConfig fields (e.g. renderer)."""
    for option in OPTIONS:  # the seed too, which no config field holds as given
        check_option(option, values.get(option.name))
    overrides = {option.field: values.get(option.name) for option in OPTIONS if option.field}
    layers = values.get("layers")
    return make_config(values.get("preset") or BY_NAME["preset"].default, device_type=device_type,
                       seed=values.get("seed"), layers=tuple(layers) if layers else None,
                       **overrides, **settings)


def region_label(name: str) -> str:
    """The user's word for a region: the object is the "foreground"."""
    return "foreground" if name == "object" else name


def region_name(label: str) -> str:
    """The engine's name of a region the user calls `label` (region_label's inverse)."""
    return "object" if label == "foreground" else label


@dataclass(frozen=True)
class StepCounts:
    """The training steps a run makes, for the user: per region (by its label) and layer (as
    a string, the JSON key) the fidelity steps, the steps per simplicity row, the rows, and
    the seeds each sketch is tried with."""

    fidelity: dict[str, dict[str, int]]
    row_steps: int
    rows: int
    seeds: tuple[int, ...]

    @property
    def cell_steps(self) -> int:
        """The cell-steps of the run: every fidelity sketch and its chain of simplicity rows,
        once per seed."""
        chain = self.rows * self.row_steps
        per_seed = sum(count + chain for region in self.fidelity.values() for count in region.values())
        return per_seed * max(len(self.seeds), 1)

    def to_dict(self) -> dict:
        return {"fidelity": {region: dict(layers) for region, layers in self.fidelity.items()},
                "row_steps": self.row_steps, "rows": self.rows, "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, values: dict) -> StepCounts:
        return cls({str(region): {str(layer): int(steps) for layer, steps in layers.items()}
                    for region, layers in values["fidelity"].items()},
                   int(values["row_steps"]), int(values["rows"]),
                   tuple(int(seed) for seed in values["seeds"]))


def step_counts(config: SketchConfig, regions: Iterable[str] | None = None) -> StepCounts:
    """The training steps a run of `config` makes. regions: those the run sketches (names or
    labels); by default those the configuration plans."""
    if regions is None:
        regions = ("background", "object") if config.split else ("scene",)
    return StepCounts(
        {region_label(region): {str(layer): config.fidelity_iterations(region_name(region), layer)
                                for layer in config.layers} for region in regions},
        config.simplicity_steps, config.simplicity_rows, tuple(config.seeds))


def config_dict(config: SketchConfig) -> dict:
    """JSON-ready parameters, for manifests."""
    values = dataclasses.asdict(config)
    values["layers"] = list(config.layers)
    values["seeds"] = list(config.seeds)
    return values
