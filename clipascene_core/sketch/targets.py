"""CLIP features of the target images, clean and augmented, computed without autograd.

Every cell of a run draws the same augmentations in a step (each cell alone still sees i.i.d.
random transforms, so its training is distributed exactly as if it ran alone), which lets the
augmented targets be encoded once per step for all cells. With a pool, a fixed set of random
augmentations is drawn once and their target features are cached for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..models.clip import ClipEncoder
from .augment import apply_grids, sample_transforms, sampling_grid


class TargetBank:
    """Targets keyed by name ("scene", "object", "background"), with their layer features.

    targets: {name: (3, S, S) canvas image in [0, 1]}; layers: {name: layers needed}.
    """

    def __init__(
        self,
        encoder: ClipEncoder,
        targets: dict[str, torch.Tensor],
        layers: dict[str, Iterable[int]],
        augmentations: int,
        pool: int,
        generator: torch.Generator,
        distortion: float = 0.5,
        crop_scale: float = 0.8,
        encode_batch: int = 16,
    ) -> None:
        self.encoder = encoder
        self.device = next(iter(targets.values())).device
        self.targets = targets
        self.layers = {name: sorted(set(values)) for name, values in layers.items()}
        self.augmentations = augmentations
        self.generator = generator
        #: Steps drawn so far (`draw` and `skip`): the clock a run's checkpoints are taken on.
        self.draws = 0
        self.distortion = distortion
        self.crop_scale = crop_scale
        self.encode_batch = encode_batch
        self.size = next(iter(targets.values())).shape[-1]
        self.clean = {
            name: self._encode(image[None], self.layers[name]) for name, image in targets.items()
        }
        self.pool_transforms: torch.Tensor | None = None
        self.pool_features: dict[str, dict[int, torch.Tensor]] = {}
        if pool and augmentations:
            self.pool_transforms = self._sample(pool)
            grids = sampling_grid(self.pool_transforms, self.size, self.device)
            self.pool_features = {
                name: self._encode(apply_grids(image, grids), self.layers[name])
                for name, image in targets.items()
            }

    def _sample(self, count: int) -> torch.Tensor:
        return sample_transforms(
            count, self.size, self.generator, self.distortion, self.crop_scale
        )

    @torch.no_grad()
    def _encode(self, images: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        for start in range(0, images.shape[0], self.encode_batch):
            features = self.encoder.layer_features(images[start : start + self.encode_batch], layers)
            for layer in layers:
                parts[layer].append(features[layer])
        return {layer: torch.cat(chunks) for layer, chunks in parts.items()}

    def no_augmentation(self) -> dict[str, dict[int, torch.Tensor]]:
        """Empty augmented-target features, for steps without augmentation (evaluation)."""
        return {
            name: {layer: value[:0] for layer, value in features.items()}
            for name, features in self.clean.items()
        }

    def _random_part(self) -> torch.Tensor | None:
        """What a step draws from the generator: pool picks, or fresh transforms."""
        if self.augmentations == 0:
            return None
        if self.pool_transforms is not None:
            count = self.pool_transforms.shape[0]
            picks = torch.randperm(count, generator=self.generator)[: self.augmentations]
            if len(picks) < self.augmentations:
                picks = torch.randint(0, count, (self.augmentations,), generator=self.generator)
            return picks
        return self._sample(self.augmentations)

    def skip(self) -> None:
        """Advance the stream by one step's draw without computing it (a step in which no
        task trains: a resumed task waits for the step its checkpoint was taken at)."""
        self.draws += 1
        self._random_part()

    def draw(self) -> tuple[torch.Tensor, dict[str, dict[int, torch.Tensor]]]:
        """This step's augmentations: grids (A, S, S, 2) and the augmented target features
        {name: {layer: (A, T, D)}}; A = `augmentations` (0 gives empty tensors)."""
        self.draws += 1
        drawn = self._random_part()
        if drawn is None:
            grids = torch.empty(0, self.size, self.size, 2, device=self.device)
            return grids, self.no_augmentation()
        if self.pool_transforms is not None:
            grids = sampling_grid(self.pool_transforms[drawn], self.size, self.device)
            device_picks = drawn.to(self.device)
            return grids, {
                name: {layer: value[device_picks] for layer, value in features.items()}
                for name, features in self.pool_features.items()
            }
        grids = sampling_grid(drawn, self.size, self.device)
        return grids, {
            name: self._encode(apply_grids(image, grids), self.layers[name])
            for name, image in self.targets.items()
        }

    def stream_state(self) -> tuple[torch.Tensor, int]:
        """Where the augmentation stream stands: the generator's state and the draws so far."""
        return self.generator.get_state(), self.draws

    def set_stream_state(self, state: tuple[torch.Tensor, int]) -> None:
        self.generator.set_state(state[0])
        self.draws = state[1]
