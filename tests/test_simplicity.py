import numpy as np
import pytest
import torch

from clipascene_core.config import make_config
from clipascene_core.io.images import to_canvas_tensor
from clipascene_core.sketch.engine import Engine
from clipascene_core.sketch.fidelity import FidelityCell, train_fidelity
from clipascene_core.sketch.keep import choose_kept
from clipascene_core.sketch.mlps import SimplifyMLP
from clipascene_core.sketch.seeding import initialise_strokes, saliency_map
from clipascene_core.sketch.simplicity import SimplicityColumn, ratio_schedule, zscore_choice
from clipascene_core.sketch.targets import TargetBank
from tests.scenes import draw_scene


def test_ratio_schedule_halves_the_ratio_every_one_over_delta_rows():
    # By hand: with delta 0.5 the ratio halves every second row, a factor sqrt(2) a row.
    assert ratio_schedule(4.0, 0.5, 5) == pytest.approx([4.0, 2.8284271, 2.0, 1.4142136, 1.0])
    # With delta 0.25, every fourth row: 3, 1.5, 0.75 in rows 1, 5 and 9.
    assert ratio_schedule(3.0, 0.25, 9)[::4] == pytest.approx([3.0, 1.5, 0.75])
    # The first row gets the ratio given; each later one a lower ratio: fewer strokes.
    ratios = ratio_schedule(0.37, 0.9, 8)
    assert ratios[0] == 0.37 and np.all(np.diff(ratios) < 0)


def test_delta_table_per_region_and_layer():
    config = make_config("standard")
    assert config.simplicity_delta("background", 2) == 0.35
    assert config.simplicity_delta("object", 11) == 0.9
    assert config.simplicity_delta("scene", 8) == 0.5
    assert config.simplicity_delta("object", 10) == 0.9  # nearest tabulated layer


def test_simplify_mlp_starts_as_the_reference():
    mlp = SimplifyMLP(64, seed=0)
    assert torch.all(mlp.constant == 1.5)
    assert all(torch.all(layer.bias == 0.01) for layer in mlp.layers if hasattr(layer, "bias"))
    probabilities = mlp()
    assert probabilities.shape == (64,) and probabilities.min() > 0 and probabilities.max() < 1
    assert torch.equal(probabilities, SimplifyMLP(64, seed=0)())


def test_kept_strokes_are_the_most_probable_in_play():
    p = torch.tensor([0.3, 0.5, 0.54, 0.55, 0.9, 0.99])
    in_play = torch.tensor([True, True, True, True, True, False])
    keep, expected = choose_kept(p, in_play, 0.2, 0.7)
    # By hand: tau * logit(0.7) = 0.16946; sigmoid(logit p - 0.16946) over the five in play
    # = 0.2657 + 0.4577 + 0.4977 + 0.5078 + 0.8837 = 2.6126 -> the 3 most probable in play.
    assert expected == pytest.approx(2.6126, abs=1e-3)
    assert keep.tolist() == [False, False, True, True, True, False]
    # Probabilities all near 0.5 still keep strokes (a threshold at 0.542 would keep none).
    keep, expected = choose_kept(torch.full((10,), 0.5), torch.ones(10, dtype=torch.bool), 0.2, 0.7)
    assert int(keep.sum()) == round(expected) >= 4


def test_zscore_choice_weighs_each_loss_by_its_own_spread():
    # (CLIP loss, sparsity loss) of three candidates. Worked by hand: the z-scores of the first
    # column are -0.98, 1.37, -0.39 and of the second 1.41, -0.82, -0.59; their sums 0.43,
    # 0.56, -0.99 choose the third, the balanced one. The lowest raw sum (13, the second), the
    # lowest CLIP loss (the first) and the lowest sparsity (the second) are not it.
    candidates = [[1.0, 30.0], [3.0, 10.0], [1.5, 12.0]]
    assert zscore_choice(candidates) == 2
    # A loss's unit does not matter: the sparsity counted ten times larger chooses the same.
    assert zscore_choice([[clip, 10 * sparsity] for clip, sparsity in candidates]) == 2
    # A loss that is the same for every candidate decides nothing (and divides by no zero).
    assert zscore_choice([[2.0, 7.0], [1.0, 7.0], [3.0, 7.0]]) == 1


@pytest.fixture(scope="module")
def fidelity(tiny_encoder):
    target = to_canvas_tensor(draw_scene())
    _, sampling = saliency_map(tiny_encoder, target)
    config = make_config("standard", iterations=10, strokes=16, simplicity_rows=4,
                         simplicity_steps=12, augmentations=1, augment_pool=8)

    def bank():
        return TargetBank(tiny_encoder, {"scene": target}, {"scene": [8]}, 1, 8,
                          torch.Generator().manual_seed(0))

    cell = FidelityCell("scene", 8, 0, initialise_strokes(sampling, 16, 0), 10)
    return config, bank, train_fidelity(tiny_encoder, bank(), [cell], config)[0]


def run_chain(tiny_encoder, fidelity, config=None):
    """A column's rows run as a matrix run does it: with a freshly seeded target bank."""
    default, bank, result = fidelity
    column = SimplicityColumn(result, config or default, torch.device("cpu"))
    levels = []
    Engine(tiny_encoder, bank()).run(column.start(), on_sketch=levels.append)
    return levels


def test_rows_are_nested_and_never_grow(tiny_encoder, fidelity):
    levels = run_chain(tiny_encoder, fidelity)
    assert [level.row for level in levels] == [1, 2, 3, 4]
    previous = fidelity[2].on_canvas
    for level in levels:
        assert not np.any(level.keep & ~previous), "a removed stroke came back"
        assert level.strokes <= previous.sum() and level.strokes >= 1
        assert [entry["step"] for entry in level.eval_losses] == [3, 6, 9, 12]
        assert level.strokes == max(1, min(round(level.expected_strokes), previous.sum()))
        previous = level.keep
    assert levels[-1].strokes < fidelity[2].on_canvas.sum()
    assert levels[0].ratio == pytest.approx(1 / fidelity[2].best_layer_losses[8])


def test_selection_is_reproducible_for_a_seed(tiny_encoder, fidelity):
    first = run_chain(tiny_encoder, fidelity)
    second = run_chain(tiny_encoder, fidelity)
    for one, two in zip(first, second, strict=True):
        assert np.array_equal(one.keep, two.keep)
        assert np.allclose(one.points, two.points, atol=1e-5)


def test_each_row_is_the_best_of_every_seeds_run(tiny_encoder, fidelity):
    config = fidelity[0]
    two_seeds = make_config("standard", iterations=10, strokes=16, simplicity_rows=2,
                            simplicity_steps=12, augmentations=1, augment_pool=8, seeds=(0, 1000))
    levels = run_chain(tiny_encoder, fidelity, two_seeds)
    assert [level.row for level in levels] == [1, 2]
    for level in levels:
        # Both seeds' evaluations were pooled, and the chosen step is one of them.
        assert sorted({entry["seed"] for entry in level.eval_losses}) == [0, 1000]
        assert len(level.eval_losses) == 8
        rows = [[entry["layers"]["8"], entry["sparsity"]] for entry in level.eval_losses]
        chosen = level.eval_losses[zscore_choice(rows)]
        assert (chosen["seed"], chosen["step"]) == (level.seed, level.chosen_step)
    assert config.seeds == (0,)
