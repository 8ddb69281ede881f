"""The keep/drop law of the simplicity axis: each stroke's Gumbel-softmax keep sample.

MLP_simp gives stroke i a keep probability p_i; the reference draws a soft keep sample
softmax(([log p, log(1 - p)] + Gumbel noise) / tau)[0] every training step (it scales the
stroke's width), and at the end keeps stroke i when a fresh sample exceeds a threshold,
drawing it at that sample x the base width. Here: the training sample (`gumbel_keep`), the
expected count of the final rule (`expected_kept`), the deterministic choice that follows
it (`choose_kept`) and the widths of the chosen strokes (`kept_widths`).
"""

from __future__ import annotations

import math

import torch


def _keep_logits(probabilities: torch.Tensor) -> torch.Tensor:
    """(..., 2) logits [log p, log(1 - p)] of the keep/drop choice."""
    return torch.stack([probabilities.clamp_min(1e-12).log(),
                        (1 - probabilities).clamp_min(1e-12).log()], -1)


def expected_kept(probabilities: torch.Tensor, temperature: float, threshold: float) -> torch.Tensor:
    """(...) expected number of strokes the reference keeps: sum over the last axis of
    P(softmax(([log p, log(1 - p)] + Gumbel noise) / tau)[0] > threshold).

    The difference of two Gumbel variables is logistic, so each probability is
    sigmoid(logit p - tau * logit threshold).
    """
    logits = _keep_logits(probabilities)
    margin = logits[..., 0] - logits[..., 1] - temperature * math.log(threshold / (1 - threshold))
    return torch.sigmoid(margin).sum(-1)


def choose_kept(probabilities: torch.Tensor, in_play: torch.Tensor, temperature: float,
                threshold: float) -> tuple[torch.Tensor, float]:
    """Deterministic keep mask (N,) bool and the expected count it follows.

    The k most probable strokes in play, k = the expected count of the reference's rule over
    the strokes in play, rounded, at least 1 (0 only when nothing is in play).
    """
    expected = float(expected_kept(probabilities[in_play], temperature, threshold))
    count = min(max(1, math.floor(expected + 0.5)), int(in_play.sum()))
    scores = torch.where(in_play, probabilities, torch.full_like(probabilities, -1.0))
    keep = torch.zeros_like(in_play)
    keep[torch.argsort(scores, descending=True, stable=True)[:count]] = True
    return keep, expected


def kept_widths(probabilities: torch.Tensor, keep: torch.Tensor, temperature: float,
                threshold: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each kept stroke's width as a fraction of the base width, as the reference draws it.

    The reference draws a kept stroke at its fresh Gumbel-softmax keep sample times the base
    width (sketch_utils.inference_sketch); it keeps the stroke only when that sample exceeds
    `threshold`. Here the strokes are chosen first (`choose_kept`), so each kept stroke's
    sample is drawn from that same distribution given that it exceeds `threshold`: its
    sample is softmax(([log p, log(1 - p)] + Gumbel noise) / tau)[0], which depends on the
    noise only through the difference of the two Gumbel variables, a logistic variable D;
    D is drawn from the logistic distribution cut below where the sample reaches `threshold`.

    Returns (fractions (N,), noise (N,)): float64, the sample of each kept stroke (0 for the
    others) and its D (NaN for the others).
    """
    logits = _keep_logits(probabilities.detach().double().cpu())
    margin = logits[..., 0] - logits[..., 1]
    lowest = temperature * math.log(threshold / (1 - threshold)) - margin
    uniform = torch.rand(margin.shape, generator=generator, dtype=torch.float64).clamp_min(1e-9)
    floor = torch.sigmoid(lowest)
    # Uniform over the logistic CDF above `lowest` (below 1, so that D stays finite).
    position = (floor + (1 - floor) * uniform).clamp_max(1 - 2.0**-53)
    noise = torch.log(position) - torch.log1p(-position)
    samples = torch.sigmoid((margin + noise) / temperature)
    kept = keep.cpu()
    return (torch.where(kept, samples, torch.zeros_like(samples)),
            torch.where(kept, noise, torch.full_like(noise, math.nan)))


def gumbel_keep(probabilities: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Soft 'keep' sample of a two-way Gumbel-softmax per stroke: (N,) in (0, 1), differentiable."""
    logits = _keep_logits(probabilities)
    uniform = torch.rand(logits.shape, generator=generator).to(logits.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-10)))
    return torch.softmax((logits + gumbel) / temperature, -1)[..., 0]
