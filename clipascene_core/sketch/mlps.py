"""The small networks CLIPascene optimises instead of the stroke points themselves."""

from __future__ import annotations

import math

import torch
from torch import nn


def _reset_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default Linear initialisation, drawn from `generator` for reproducibility."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)


class LocationMLP(nn.Module):
    """MLP_loc: moves N initial strokes; output = input + residual_scale * MLP(input).

    Points enter and leave in canvas pixels, (N, 4, 2); inside, they are normalised to
    [-1, 1] and flattened (8N values): Linear(8N, h) -> SELU -> Linear(h, h) -> SELU ->
    Linear(h, 8N).
    """

    def __init__(
        self,
        initial_points: torch.Tensor,
        canvas_size: int,
        hidden: int = 1000,
        residual_scale: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.canvas_size = canvas_size
        self.residual_scale = residual_scale
        normalised = initial_points.reshape(-1) / canvas_size * 2 - 1
        self.register_buffer("initial", normalised.float())
        size = normalised.numel()
        self.layers = nn.Sequential(
            nn.Linear(size, hidden), nn.SELU(), nn.Linear(hidden, hidden), nn.SELU(),
            nn.Linear(hidden, size),
        )
        generator = torch.Generator().manual_seed(seed)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                _reset_linear(layer, generator)

    def forward(self) -> torch.Tensor:
        """The current strokes, (N, 4, 2) canvas pixels."""
        moved = self.initial + self.residual_scale * self.layers(self.initial)
        return ((moved + 1) / 2 * self.canvas_size).view(-1, 4, 2)


class SimplifyMLP(nn.Module):
    """MLP_simp: per-stroke keep probabilities from a constant input.

    Input: N values of `input_value`; Linear(N, h) -> SELU -> Linear(h, h) -> SELU ->
    Linear(h, N) -> Sigmoid. Xavier-uniform weights, biases 0.01 (as the reference).
    """

    def __init__(self, strokes: int, hidden: int = 1000, input_value: float = 1.5, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("constant", torch.full((strokes,), float(input_value)))
        self.layers = nn.Sequential(
            nn.Linear(strokes, hidden), nn.SELU(), nn.Linear(hidden, hidden), nn.SELU(),
            nn.Linear(hidden, strokes), nn.Sigmoid(),
        )
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight, generator=generator)
                    layer.bias.fill_(0.01)

    def forward(self) -> torch.Tensor:
        """(N,) keep probabilities in (0, 1)."""
        return self.layers(self.constant)
