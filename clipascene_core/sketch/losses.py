"""Losses of the sketch optimisation, and gradnorm's balancing weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def layer_loss(sketch_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """CLIPascene's layer loss: mean over batch, tokens and channels of the squared difference.

    sketch_features, target_features: (A, T, D) for A image pairs, in any precision; the loss
    is computed in float32. Returns a scalar.
    """
    return (sketch_features.float() - target_features.float()).square().mean()


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


Gradients = list[torch.Tensor | None]


def gradnorm_factors(term_gradients: Sequence[Gradients], coefficients: Sequence[float],
                     measured: slice) -> list[float]:
    """Factors f_k = c_k * w_k of the update sum_k f_k grad L_k (reference models/loss.py).

    term_gradients[k]: the gradients of the raw loss L_k w.r.t. a task's parameters; gradnorm's
    w_k come from their mean |g| over the parameters `measured` picks (MLP_loc in the fidelity
    stage, MLP_simp in the simplicity stage); coefficients c_k apply afterwards.
    """
    weights = gradnorm_weights([mean_abs_gradient(term[measured]) for term in term_gradients])
    return [coefficient * weight for coefficient, weight in zip(coefficients, weights, strict=True)]


def set_gradients(parameters: Sequence[torch.nn.Parameter], term_gradients: Sequence[Gradients],
                  factors: Sequence[float]) -> None:
    """parameter.grad = sum_k factors[k] * term_gradients[k][parameter] (None when no term
    reaches the parameter)."""
    for index, parameter in enumerate(parameters):
        parts = [factor * term[index] for factor, term in zip(factors, term_gradients, strict=True)
                 if term[index] is not None]
        parameter.grad = sum(parts) if parts else None
