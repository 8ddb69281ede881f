import numpy as np
import pytest
import torch

from clipascene_core.config import make_config
from clipascene_core.io.images import to_canvas_tensor
from clipascene_core.sketch.engine import (
    Cancelled,
    Engine,
    cell_layer_losses,
    render_batch,
    strokes_on_canvas,
)
from clipascene_core.sketch.fidelity import FidelityCell, FidelityTask, loss_terms, train_fidelity
from clipascene_core.sketch.losses import gradnorm_weights, mean_abs_gradient
from clipascene_core.sketch.seeding import initialise_strokes, saliency_map
from clipascene_core.sketch.targets import TargetBank
from tests.scenes import draw_scene


@pytest.fixture(scope="module")
def scene(tiny_encoder):
    target = to_canvas_tensor(draw_scene())
    _, sampling = saliency_map(tiny_encoder, target)
    return target, sampling


def make_bank(encoder, target, layers, pool=0, augmentations=2, region="scene"):
    return TargetBank(encoder, {region: target}, {region: layers}, augmentations, pool,
                      torch.Generator().manual_seed(0))


def make_cells(sampling, layers, iterations, region="scene", strokes=12, seed=0):
    points = initialise_strokes(sampling, strokes, seed)
    return [FidelityCell(region, layer, seed, points, iterations) for layer in layers]


def test_loss_terms_follow_the_paper():
    config = make_config("standard")
    assert loss_terms(config, "scene", 8) == [(8, 1.0)]
    assert loss_terms(config, "background", 2) == [(2, 1.0)]
    assert loss_terms(config, "object", 8) == [(8, 1.0), (4, 0.5)]
    # The reference sets 0.5 on layer 4, then 1 on the column's layer: layer 4 alone, weight 1.
    assert loss_terms(config, "object", 4) == [(4, 1.0)]


def test_gradnorm_weights_balance_the_terms():
    assert gradnorm_weights([1.0, 3.0]) == [0.75, 0.25]
    assert gradnorm_weights([2.0]) == [1.0]
    assert gradnorm_weights([0.0, 0.0]) == [0.5, 0.5]
    weights = gradnorm_weights([1.0, 2.0, 5.0])
    assert abs(sum(weights) - 1) < 1e-12 and weights[0] > weights[1] > weights[2]


def test_iteration_counts_and_eval_schedule_of_the_presets():
    config = make_config("standard")
    assert config.fidelity_iterations("background", 2) == 1500
    assert config.fidelity_iterations("object", 7) == 600
    assert config.fidelity_iterations("object", 8) == 1000
    evals = [step for step in range(1, 1501) if config.is_eval_step(step, 1500)]
    assert evals[:3] == [400, 450, 500] and evals[-1] == 1500
    assert make_config("preview").fidelity_iterations("object", 11) == 500
    assert make_config("paper").seeds == (0, 1000)
    assert make_config("paper", iterations=7).fidelity_iterations("scene", 2) == 7


@pytest.mark.parametrize("cells_per_batch", [0, 1])
def test_batched_cells_train_exactly_as_they_would_alone(tiny_encoder, scene, cells_per_batch):
    """One CLIP batch for all cells (0, the GPU default) or one cell per batch (the CPU
    default): either way each cell ends exactly where it would alone."""
    target, sampling = scene
    config = make_config("standard", iterations=5, augmentations=2, cells_per_batch=cells_per_batch,
                         schedule="lockstep")
    cells = make_cells(sampling, [2, 8], 5)
    together = train_fidelity(tiny_encoder, make_bank(tiny_encoder, target, [2, 8]), cells, config)
    for cell, batched in zip(cells, together, strict=True):
        alone = train_fidelity(tiny_encoder, make_bank(tiny_encoder, target, [cell.layer]),
                               [cell], config)[0]
        assert np.allclose(alone.points, batched.points, atol=1e-4)
        assert abs(alone.best_loss - batched.best_loss) < 1e-5


def test_training_lowers_the_loss_and_keeps_the_best_checkpoint(tiny_encoder, scene):
    target, sampling = scene
    config = make_config("standard", iterations=40, eval_start=10, eval_every=10)
    result = train_fidelity(tiny_encoder, make_bank(tiny_encoder, target, [2], pool=8),
                            make_cells(sampling, [2], 40), config)[0]
    assert [step for step, _ in result.eval_losses] == [10, 20, 30, 40]
    assert result.best_loss == min(loss for _, loss in result.eval_losses)
    assert result.best_loss < result.initial_loss
    assert result.points.shape == (12, 4, 2)
    assert not np.allclose(result.points, result.cell.initial_points)


def test_object_cells_combine_their_terms_with_gradnorm(tiny_encoder, scene):
    target, sampling = scene
    config = make_config("standard", iterations=1, augmentations=1)
    cells = make_cells(sampling, [8], 1, region="object")
    bank = make_bank(tiny_encoder, target, [4, 8], region="object", augmentations=1)
    task = FidelityTask(cells[0], config, torch.device("cpu"))
    grids, augmented = bank.draw()
    params = task.parameters()

    def term_losses():
        sketches = render_batch([task.sketch()], 224)
        return cell_layer_losses(tiny_encoder, bank, sketches, [("object", [8, 4])], grids,
                                 augmented)[0]

    losses = term_losses()
    task._set_gradients(Engine._term_gradients([task], [task.loss_terms(losses)])[0])
    produced = [parameter.grad.clone() for parameter in params]
    losses = term_losses()
    # Reference models/loss.py: gradnorm weights from the RAW per-layer losses' gradients,
    # then the layer coefficients (1 on layer 8, 0.5 on the layer-4 anchor) on top.
    separate = [torch.autograd.grad(losses[layer][0], params, retain_graph=True) for layer in (8, 4)]
    weights = gradnorm_weights([mean_abs_gradient(grads) for grads in separate])
    assert weights[0] != pytest.approx(weights[1])
    for index, gradient in enumerate(produced):
        expected = 1.0 * weights[0] * separate[0][index] + 0.5 * weights[1] * separate[1][index]
        assert torch.allclose(gradient, expected, rtol=1e-4, atol=1e-7)


def test_cells_finish_on_their_own_schedule_and_progress_is_reported(tiny_encoder, scene):
    target, sampling = scene
    config = make_config("standard", augmentations=1, schedule="lockstep")
    points = initialise_strokes(sampling, 8, 0)
    cells = [FidelityCell("scene", 2, 0, points, 3), FidelityCell("scene", 8, 0, points, 5)]
    reports = []
    train_fidelity(tiny_encoder, make_bank(tiny_encoder, target, [2, 8], augmentations=1),
                   cells, config, on_progress=reports.append)
    assert [report.steps_done for report in reports] == [2, 4, 6, 7, 8]
    finished = [(report.step, [r.cell.layer for r in report.finished]) for report in reports]
    assert finished[2] == (3, [2]) and finished[4] == (5, [8])
    assert reports[-1].fraction == 1.0


def test_cancelling_stops_before_the_next_step(tiny_encoder, scene):
    target, sampling = scene
    config = make_config("standard", augmentations=0)
    steps = []
    bank = make_bank(tiny_encoder, target, [2], augmentations=0)
    with pytest.raises(Cancelled):
        train_fidelity(tiny_encoder, bank, make_cells(sampling, [2], 50), config,
                       on_progress=lambda report: steps.append(report.step),
                       should_stop=lambda: len(steps) >= 2)
    assert steps == [1, 2]


def test_strokes_entirely_off_the_canvas_are_flagged():
    inside = [[10, 10], [20, 20], [30, 10], [40, 20]]
    outside = [[300, 300], [310, 320], [330, 300], [340, 310]]
    grazing = [[-10, 50], [-5, 50], [-2, 50], [0.5, 50]]
    points = torch.tensor([inside, outside, grazing], dtype=torch.float64)
    flags = strokes_on_canvas(points, torch.full((3,), 3.0, dtype=torch.float64), 224)
    assert flags.tolist() == [True, False, True]


def test_column_first_finishes_a_column_before_starting_the_next(tiny_encoder, scene):
    """On a CPU the engine completes the first requested column before the next one starts,
    so the user can import a first cell early; lock-step advances every cell together."""
    target, sampling = scene
    config = make_config("standard", augmentations=1)
    points = initialise_strokes(sampling, 8, 0)
    cells = [FidelityCell("scene", layer, 0, points, 3) for layer in (8, 2)]

    def order(schedule):
        finished = []
        bank = make_bank(tiny_encoder, target, [2, 8], augmentations=1)
        Engine(tiny_encoder, bank, schedule=schedule, columns=[8, 2]).run(
            [FidelityTask(cell, config, torch.device("cpu")) for cell in cells],
            on_progress=lambda report: finished.extend(
                (report.step, result.cell.layer) for result in report.finished))
        return finished

    assert order("column") == [(3, 8), (6, 2)]
    assert order("lockstep") == [(3, 8), (3, 2)]
    assert order("auto") == order("column")  # the tiny encoder runs on the CPU
