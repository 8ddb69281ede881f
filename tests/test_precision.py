"""The precision policy: bfloat16 CLIP where the hardware has it, float32 elsewhere, and the
same sketches either way (within bfloat16's rounding)."""

from __future__ import annotations

import copy

import pytest
import torch

from clipascene_core.config import make_config
from clipascene_core.engine import cell_layer_losses, render_batch
from clipascene_core.fidelity import FidelityCell, train_fidelity
from clipascene_core.imageio import to_canvas_tensor
from clipascene_core.init import initialise_strokes, saliency_map
from clipascene_core.models import native_bf16, resolve_precision
from clipascene_core.targets import TargetBank
from tests.conftest import draw_scene

CPU = torch.device("cpu")
AMD_WITHOUT_BF16 = "flags\t\t: fpu vme sse sse2 avx avx2 fma f16c bmi2 sha_ni vaes"
XEON_WITH_AMX = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"


def test_auto_picks_bf16_only_where_it_is_native(monkeypatch):
    assert not native_bf16(CPU, AMD_WITHOUT_BF16)
    assert native_bf16(CPU, XEON_WITH_AMX)
    assert native_bf16(CPU, "flags : avx512f avx512_bf16")
    assert not native_bf16(torch.device("mps"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", CPU)


@pytest.fixture(scope="module")
def encoders(tiny_encoder):
    return tiny_encoder, copy.deepcopy(tiny_encoder).use_precision("bf16")


@pytest.fixture(scope="module")
def scene(tiny_encoder):
    target = to_canvas_tensor(draw_scene())
    _, sampling = saliency_map(tiny_encoder, target)
    return target, sampling


def test_bf16_keeps_layernorm_in_float32(encoders):
    _, half = encoders
    assert half.precision == "bf16"
    norms = [m for m in half.visual.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert half.visual.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16


def test_bf16_step_points_the_sketch_the_same_way(encoders, scene):
    """The gradient of an object cell's loss (layers 8 and 4, augmented pairs) w.r.t. the
    sketch: cosine >= 0.99 between bfloat16 and float32 CLIP."""
    target, sampling = scene
    points = torch.from_numpy(initialise_strokes(sampling, 16, 0)).float()
    gradients = []
    for encoder in encoders:
        bank = TargetBank(encoder, {"object": target}, {"object": [4, 8]}, 2, 0,
                          torch.Generator().manual_seed(5))
        grids, augmented = bank.draw()
        moved = points.clone().requires_grad_(True)
        sketch = render_batch([(moved, torch.full((16,), 3.0))], 224)
        losses = cell_layer_losses(encoder, bank, sketch, [("object", [8, 4])], grids, augmented)[0]
        (gradient,) = torch.autograd.grad(losses[8][0] + 0.5 * losses[4][0], moved)
        gradients.append(gradient.flatten())
    cosine = torch.nn.functional.cosine_similarity(gradients[0], gradients[1], dim=0)
    assert cosine >= 0.99


def test_bf16_fidelity_run_ends_where_float32_ends(encoders, scene):
    """30 steps of a fidelity cell: the best clean loss within 2 % of float32's."""
    target, sampling = scene
    config = make_config("standard", iterations=30, eval_start=10, augmentations=2)
    cell = FidelityCell("scene", 8, 0, initialise_strokes(sampling, 16, 0), 30)
    results = []
    for encoder in encoders:
        bank = TargetBank(encoder, {"scene": target}, {"scene": [8]}, 2, 0,
                          torch.Generator().manual_seed(0))
        results.append(train_fidelity(encoder, bank, [cell], config)[0])
    full, half = results
    assert half.best_loss < half.initial_loss
    assert half.best_loss == pytest.approx(full.best_loss, rel=0.02)
