"""Losses of the sketch optimisation, and gradnorm's balancing weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def layer_loss(sketch_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """CLIPascene's layer loss: mean over batch, tokens and channels of the squared difference.

    sketch_features, target_features: (A, T, D) for A image pairs. Returns a scalar.
    """
    return (sketch_features - target_features).square().mean()


def mean_abs_gradient(gradients: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Mean |g| over all elements of a parameter set's gradients (None counts as zeros)."""
    total = torch.zeros(())
    count = 0
    for gradient in gradients:
        if gradient is None:
            continue
        total = total + gradient.abs().sum().detach().cpu()
        count += gradient.numel()
    return total / max(count, 1)


def gradnorm_weights(magnitudes: Sequence[float | torch.Tensor]) -> list[float]:
    """CLIPascene's gradnorm: w_k = (G - g_k) / ((n - 1) G) with G = sum g_k.

    Terms with larger gradients get smaller weights; the weights sum to 1. A single term
    gets weight 1; all-zero gradients give equal weights.
    """
    values = [float(value) for value in magnitudes]
    count = len(values)
    if count == 1:
        return [1.0]
    total = sum(values)
    if total <= 0:
        return [1.0 / count] * count
    return [(total - value) / ((count - 1) * total) for value in values]
