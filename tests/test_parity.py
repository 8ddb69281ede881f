"""Parity with the CLIPascene reference code (github.com/yael-vinker/SceneSketch).

Each test re-derives one formula from the reference's definitions, independently of our
engine (its own autograd passes, scipy where the reference uses scipy, values worked out by
hand), and checks the engine against it on the tiny model with fixed seeds. The comment on
each test names the reference file and function it mirrors. docs/algorithm.md lists the
differences we keep on purpose; tests of those say so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipascene_core.config import make_config
from clipascene_core.io.images import InputImage, to_canvas_tensor
from clipascene_core.models.clip import CLIP_MEAN, CLIP_STD
from clipascene_core.scene.split import split_scene
from clipascene_core.sketch.engine import Engine, cell_layer_losses, render_batch
from clipascene_core.sketch.fidelity import FidelityCell, FidelityResult, FidelityTask
from clipascene_core.sketch.keep import choose_kept, expected_kept, kept_widths
from clipascene_core.sketch.losses import gradnorm_factors
from clipascene_core.sketch.mlps import LocationMLP
from clipascene_core.sketch.seeding import initialise_strokes, saliency_map, xdog_edges
from clipascene_core.sketch.simplicity import RowCandidate, RowStart, SimplicityColumn, SimplicityRowTask
from clipascene_core.sketch.targets import TargetBank
from tests.scenes import draw_scene

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scene(tiny_encoder):
    target = to_canvas_tensor(draw_scene())
    _, sampling = saliency_map(tiny_encoder, target)
    return target, sampling


def object_bank(encoder, target, augmentations=2):
    return TargetBank(encoder, {"object": target}, {"object": [4, 8]}, augmentations, 0,
                      torch.Generator().manual_seed(3))


def reference_gradnorm(losses: list[torch.Tensor], network: torch.nn.Module) -> list[float]:
    """models/loss.py compute_grad_norm_losses, written afresh: backward each loss alone,
    mean |grad| over the network's parameters, w_k = (G - g_k) / ((n - 1) G)."""
    norms = []
    for loss in losses:
        network.zero_grad()
        loss.backward(retain_graph=True)
        grads = [p.grad for p in network.parameters() if p.grad is not None]
        norms.append(sum(float(g.abs().sum()) for g in grads) / sum(g.numel() for g in grads))
    network.zero_grad()
    total = sum(norms)
    return [(total - norm) / ((len(norms) - 1) * total) for norm in norms]


def close(produced: torch.Tensor, wanted: torch.Tensor) -> bool:
    """Equal up to float32 rounding, relative to the gradient's scale."""
    return float((produced - wanted).abs().max()) <= 1e-4 * float(wanted.abs().max()) + 1e-12


# --- 1. CLIP with QuickGELU on every path (CLIP_/clip/model.py: QuickGELU in every block) -----


def _activations(visual) -> set[str]:
    return {type(block.mlp.gelu).__name__ for block in visual.transformer.resblocks}


def test_every_clip_path_builds_quickgelu(monkeypatch, tmp_path):
    import open_clip

    from clipascene_core.models import clip as models
    real_create = open_clip.create_model
    built = []

    def without_download(name, pretrained=None, **kwargs):
        # The OpenAI download is not reachable here: build the same network, keep its kwargs.
        kwargs.pop("cache_dir", None)
        model = real_create(name, pretrained=None, **kwargs)
        built.append(pretrained)
        return model

    # The real ViT-B-32 from the random path, then the OpenAI path as it asks open_clip.
    assert _activations(models.load_clip("ViT-B-32", "random").visual) == {"QuickGELU"}
    monkeypatch.setattr(open_clip, "create_model", without_download)
    assert _activations(models.load_clip("ViT-B-32", "openai", cache_dir=tmp_path).visual) == {
        "QuickGELU"}
    assert built == ["openai"]
    monkeypatch.undo()
    # The tiny model (random and from a weights file) is of the same family.
    tiny = models.load_clip("tiny-test", "random")
    assert _activations(tiny.visual) == {"QuickGELU"}
    clip = open_clip.create_model("clipascene-tiny-test", pretrained=None)
    weights = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), weights)
    assert _activations(models.load_clip("tiny-test", str(weights)).visual) == {"QuickGELU"}


# --- 2. The layer loss over the clean and augmented pairs (models/loss.py CLIPConvLoss, l2_layers)


def test_layer_loss_is_the_mean_over_clean_and_augmented_pairs(tiny_encoder, scene):
    """Features read with forward hooks on open_clip's own forward, as the reference reads
    its CLIP's blocks, against the engine's per-layer losses."""
    target, sampling = scene
    bank = object_bank(tiny_encoder, target, augmentations=2)
    grids, augmented = bank.draw()
    points = torch.from_numpy(initialise_strokes(sampling, 10, 0)).float()
    sketch = render_batch([(points, torch.full((10,), 3.0))], 224)
    ours = cell_layer_losses(tiny_encoder, bank, sketch, [("object", [4, 8])], grids, augmented)[0]

    visual = tiny_encoder.visual
    captured = {}
    hooks = [visual.transformer.resblocks[layer].register_forward_hook(
        lambda _m, _i, out, layer=layer: captured.__setitem__(layer, out)) for layer in (4, 8)]
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def features(images):
        with torch.no_grad():
            visual((images - mean) / std)
        return {layer: value.clone() for layer, value in captured.items()}

    warped_sketch = F.grid_sample(sketch.expand(2, -1, -1, -1), grids, align_corners=False)
    warped_target = F.grid_sample(target[None].expand(2, -1, -1, -1), grids, align_corners=False)
    sketches = features(torch.cat([sketch, warped_sketch]))
    targets = features(torch.cat([target[None], warped_target]))
    for hook in hooks:
        hook.remove()
    for layer in (4, 8):
        pairs = [((sketches[layer][i] - targets[layer][i]) ** 2).mean() for i in range(3)]
        assert float(ours[layer][0]) == pytest.approx(float(sum(pairs) / 3), rel=1e-4)
        assert float(ours[layer][1]) == pytest.approx(float(pairs[0]), rel=1e-4)


# --- 3. Gradnorm weights with coefficients (models/loss.py compute_grad_norm_losses, Loss.forward)


def test_gradnorm_measures_raw_losses_then_applies_coefficients():
    # Mean |g| of 1 and 3: G = 4, w = (3/4, 1/4); then the coefficients 1 and 0.5.
    terms = [[torch.ones(2, 3), torch.ones(4)], [torch.full((2, 3), -3.0), torch.full((4,), 3.0)]]
    assert gradnorm_factors(terms, [1.0, 0.5], slice(None)) == pytest.approx([0.75, 0.125])
    # Measured on the last parameter only (MLP_simp in the simplicity stage): mean 1 and 3 again.
    terms = [[torch.full((5,), 9.0), torch.ones(4)], [torch.zeros(5), torch.full((4,), 3.0)]]
    assert gradnorm_factors(terms, [1.0, 1.0], slice(-1, None)) == pytest.approx([0.75, 0.25])


# --- 4. The fidelity update of an object column (painterly_rendering.py main loop, gradnorm=1)


class FidelityStep:
    """One fidelity step of an object column at `layer`, twice from the same start: `reference`
    (for the test's own autograd) and `ours` (for the engine's update), on one fixed draw of
    augmentations; `losses(task)` renders the task's sketch and gives its per-layer losses."""

    def __init__(self, encoder, scene, layer: int) -> None:
        target, sampling = scene
        config = make_config("standard", augmentations=2)
        cell = FidelityCell("object", layer, 0, initialise_strokes(sampling, 12, 0), 1)
        self.encoder, self.bank = encoder, object_bank(encoder, target)
        self.grids, self.augmented = self.bank.draw()
        self.reference = FidelityTask(cell, config, CPU)
        self.ours = FidelityTask(cell, config, CPU)

    def losses(self, task):
        sketch = render_batch([task.sketch()], 224)
        return cell_layer_losses(self.encoder, self.bank, sketch, [("object", [8, 4])], self.grids,
                                 self.augmented)[0]

    def our_update_is(self, expected: list[torch.Tensor]) -> int:
        """Apply the engine's update to `ours`, check it against `expected`; its term count."""
        terms = self.ours.loss_terms(self.losses(self.ours))
        self.ours._set_gradients(Engine._term_gradients([self.ours], [terms])[0])
        for produced, wanted in zip((p.grad for p in self.ours.mlp.parameters()), expected,
                                    strict=True):
            assert close(produced, wanted)
        return len(terms)


def test_object_fidelity_step_follows_the_reference_update(tiny_encoder, scene):
    step = FidelityStep(tiny_encoder, scene, 8)
    # The reference: weights from the raw losses on MLP_loc, then loss = sum c_k w_k L_k.
    losses = step.losses(step.reference)
    weights = reference_gradnorm([losses[8][0], losses[4][0]], step.reference.mlp)
    (1.0 * weights[0] * losses[8][0] + 0.5 * weights[1] * losses[4][0]).backward()
    assert step.our_update_is([p.grad.clone() for p in step.reference.mlp.parameters()]) == 2


def test_object_column_at_layer_4_has_one_term_without_the_anchor(tiny_encoder, scene):
    # scripts/generate_fidelity_levels.py sets the weight of the column's layer to 1, which for
    # the layer-4 column of an object overrides the 0.5 anchor on that same layer: one CLIP
    # term, so the update is the plain gradient of L_4 (nothing to balance).
    step = FidelityStep(tiny_encoder, scene, 4)
    step.losses(step.reference)[4][0].backward()
    assert step.our_update_is([p.grad.clone() for p in step.reference.mlp.parameters()]) == 1


# --- 5. The three-term simplicity gradient (models/loss.py Loss.forward with width_optim,
#        WidthLoss, RatioLoss; models/painter_params.py mlp_pass)


def fake_fidelity(sampling, region="object", layer=8, strokes=10, layer_losses=None,
                  seed=0, off_canvas=0) -> FidelityResult:
    """A trained-looking fidelity result; its first `off_canvas` strokes are moved 1000 px
    left of the canvas (still counted as on the canvas when the row starts)."""
    points = initialise_strokes(sampling, strokes, seed)
    points[:off_canvas, :, 0] -= 1000.0
    mlp = LocationMLP(torch.from_numpy(points).float(), 224, 1000, 0.1)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=1e-4)
    mlp().sum().backward()
    optimizer.step()  # a non-empty Adam state, as a trained fidelity sketch has
    return FidelityResult(
        cell=FidelityCell(region, layer, seed, points, 10), points=points,
        on_canvas=np.ones(strokes, bool), initial_loss=1.0, best_loss=0.5, best_step=10,
        best_layer_losses=layer_losses or {8: 0.2, 4: 0.3}, eval_losses=[], seconds=0.0,
        mlp_state=mlp.state_dict(), optimizer_state=optimizer.state_dict())


def test_object_simplicity_step_balances_three_terms_and_the_ratio(tiny_encoder, scene):
    target, sampling = scene
    config = make_config("standard", augmentations=2, simplicity_rows=2)
    # Three of the ten strokes lie 1000 px off the canvas: seven are on it.
    column = SimplicityColumn(fake_fidelity(sampling, off_canvas=3), config, CPU)
    task = column.start()[0]
    bank = object_bank(tiny_encoder, target)
    grids, augmented = bank.draw()
    noise_state = task.generator.get_state()
    drawn = task.sketch()
    points = drawn[0].detach()
    assert (points[:3, :, 0] < -500).all()
    assert all(((stroke >= 0) & (stroke <= 224)).all(-1).any() for stroke in points[3:])
    sketch = render_batch([drawn], 224)
    losses = cell_layer_losses(tiny_encoder, bank, sketch, [("object", [8, 4])], grids, augmented)[0]
    clip8, clip4, ours_sparsity = terms = task.loss_terms(losses)

    # The reference, from its definitions: the soft keep values y = gumbel_softmax([log p,
    # log(1 - p)], tau 0.2)[0] (here with the task's own Gumbel noise), sparsity = sum of y
    # over the strokes on the canvas / their number (models/loss.py WidthLoss with the
    # painter's in-canvas mask); gradnorm over (L_8, L_4, L_sparse) measured on MLP_simp;
    # total = 1 w_8 L_8 + 0.5 w_4 L_4 + 1 w_s L_sparse + MSE(L_sparse, r (L_8 + L_4)).
    noise = torch.Generator()
    noise.set_state(noise_state)
    uniform = torch.rand((10, 2), generator=noise).clamp(1e-10, 1 - 1e-10)
    p = task.simplify()
    logits = torch.stack([p.log(), (1 - p).log()], -1) - torch.log(-torch.log(uniform))
    kept = torch.softmax(logits / 0.2, -1)[:, 0]
    sparsity = kept[3:].sum() / 7
    assert float(ours_sparsity.detach()) == pytest.approx(float(sparsity.detach()), rel=1e-5)
    weights = reference_gradnorm([clip8, clip4, sparsity], task.simplify)
    ratio = column.ratios[0]
    total = (1.0 * weights[0] * clip8 + 0.5 * weights[1] * clip4 + weights[2] * sparsity
             + F.mse_loss(sparsity, ratio * (clip8 + clip4)))
    parameters = task.parameters()
    expected = torch.autograd.grad(total, parameters, retain_graph=True, allow_unused=True)

    for optimizer in (task.location_optimizer, task.simplify_optimizer):
        optimizer.step = lambda *args, **kwargs: None
        optimizer.zero_grad = lambda *args, **kwargs: None
    task.apply(Engine._term_gradients([task], [terms])[0], losses)
    assert ratio == pytest.approx(1 / (0.2 + 0.3))
    for parameter, wanted in zip(parameters, expected, strict=True):
        assert close(parameter.grad, wanted)


def test_row_one_gives_mlp_loc_a_fresh_adam_and_later_rows_inherit(sampling_only):
    # scripts/run_ratio.py: row 1 loads points_mlp.pt's weights with load_points_opt_weights=0,
    # rows 2.. load both networks and both optimiser states of the row above's winner.
    fidelity = fake_fidelity(sampling_only)
    config = make_config("standard", simplicity_rows=2)
    column = SimplicityColumn(fidelity, config, CPU)
    first = column.start()[0]
    assert first.location_optimizer.state_dict()["state"] == {}
    for name, value in first.location.state_dict().items():
        assert torch.equal(value, fidelity.mlp_state[name])
    carried = RowStart(fidelity.mlp_state, fidelity.optimizer_state, first.simplify.state_dict(),
                       first.simplify_optimizer.state_dict(), np.ones(10, bool))
    second = SimplicityRowTask(column, 2, 0, carried)
    state = second.location_optimizer.state_dict()["state"]
    assert state and torch.equal(state[0]["exp_avg"], fidelity.optimizer_state["state"][0]["exp_avg"])
    # Each run (one per seed) updates its own copy: two seeds never share Adam's moments.
    assert state[0]["exp_avg"] is not fidelity.optimizer_state["state"][0]["exp_avg"]


@pytest.fixture(scope="module")
def sampling_only(scene):
    return scene[1]


# --- 6. The ratio schedule and r_1 (scripts/scripts_utils.py get_ratios_dict, get_clip_loss2)


def test_ratio_schedule_starts_at_the_raw_clip_loss(sampling_only):
    config = make_config("standard")
    # Object column at layer 8: r_1 = 1 / (L_8 + L_4) at the best checkpoint, raw (no 0.5);
    # the reference fits a*exp(c x) to r_1 / 2^j, so r_i = r_1 * 2^(-i * 0.5) for this layer.
    column = SimplicityColumn(fake_fidelity(sampling_only, layer_losses={8: 0.2, 4: 0.3}),
                              config, CPU)
    assert column.ratios[:3] == pytest.approx([2.0, 2.0 / math.sqrt(2), 1.0])
    assert len(column.ratios) == 8
    # Background layer 2: Delta 0.35.
    column = SimplicityColumn(fake_fidelity(sampling_only, "background", 2, layer_losses={2: 0.25}),
                              config, CPU)
    assert column.ratios[1] == pytest.approx(4.0 * 2 ** -0.35)
    # Deliberate: an object column at layer 4 counts L_4 once (the reference adds it twice).
    column = SimplicityColumn(fake_fidelity(sampling_only, "object", 4, layer_losses={4: 0.25}),
                              config, CPU)
    assert column.ratios[0] == pytest.approx(4.0)


# --- 7. The expected number of kept strokes (models/painter_params.py mlp_pass + save_svg:
#        a stroke stays when a fresh gumbel_softmax(tau=0.2) keep value exceeds 0.7)


def test_expected_count_matches_the_reference_random_rule():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(64, generator=generator) * 0.98 + 0.01
    logits = torch.stack([probabilities.log(), (1 - probabilities).log()], -1)
    torch.manual_seed(1)
    counts = [(F.gumbel_softmax(logits, tau=0.2, hard=False)[:, 0] > 0.7).sum().item()
              for _ in range(4000)]
    expected = float(expected_kept(probabilities, 0.2, 0.7))
    assert np.mean(counts) == pytest.approx(expected, abs=0.15)
    keep, follows = choose_kept(probabilities, torch.ones(64, dtype=torch.bool), 0.2, 0.7)
    assert follows == pytest.approx(expected) and int(keep.sum()) == round(expected)
    assert probabilities[keep].min() >= probabilities[~keep].max()


def test_kept_stroke_widths_are_the_reference_samples_of_kept_strokes():
    # sketch_utils.py inference_sketch: width = the fresh keep sample x 1.5, for the strokes
    # whose sample exceeds 0.7. Our strokes are chosen first; each one's width must be drawn
    # as the reference's sample of a stroke it keeps: the same law, given sample > 0.7.
    probabilities = torch.tensor([0.15, 0.4, 0.5, 0.7, 0.9, 0.99])
    draws = 20000
    logits = torch.stack([probabilities.log(), (1 - probabilities).log()], -1)
    torch.manual_seed(2)
    reference = F.gumbel_softmax(logits.expand(draws, -1, -1), tau=0.2, hard=False)[..., 0]
    repeated = probabilities.repeat(draws)
    ours, _ = kept_widths(repeated, torch.ones_like(repeated, dtype=torch.bool), 0.2, 0.7,
                          torch.Generator().manual_seed(3))
    ours = ours.view(draws, -1)
    assert (ours > 0.7).all() and (ours <= 1).all()
    for stroke in range(len(probabilities)):
        kept = reference[:, stroke][reference[:, stroke] > 0.7].double()  # 2,500 or more
        assert float(ours[:, stroke].mean()) == pytest.approx(float(kept.mean()), abs=0.006)
        for below in (0.8, 0.9, 0.99):  # the law's shape: its share under each width
            assert float((ours[:, stroke] < below).double().mean()) == pytest.approx(
                float((kept < below).double().mean()), abs=0.025)
    # Strokes not kept get no width.
    widths, _ = kept_widths(probabilities, torch.tensor([True, False] * 3), 0.2, 0.7,
                            torch.Generator().manual_seed(0))
    assert (widths[1::2] == 0).all() and (widths[::2] > 0.7).all()


# --- 8. The row's checkpoint (sketch_utils.py log_best_normalised_sketch)


def test_row_checkpoint_is_chosen_by_per_layer_zscores(sampling_only):
    config = make_config("standard", simplicity_rows=1)
    column = SimplicityColumn(fake_fidelity(sampling_only), config, CPU)
    table = [(1.0, 1.0, 0.5), (2.0, 1.0, 0.3), (1.0, 3.0, 0.4), (2.0, 3.0, 0.2)]
    start = RowStart({}, None, None, None, np.ones(10, bool))
    candidates = [RowCandidate(0, 100 * (i + 1), {8: l8, 4: l4}, l8 + 0.5 * l4, s, 1.0, 1.0,
                               np.zeros((10, 4, 2)), np.ones(10, bool), start)
                  for i, (l8, l4, s) in enumerate(table)]
    # By hand: z(L_8) = (-1, 1, -1, 1), z(L_4) = (-1, -1, 1, 1), z(L_sparse) = (1.342, -0.447,
    # 0.447, -1.342): sums (-0.658, -0.447, 0.447, 0.658) -> step 100. Merging the CLIP layers
    # into L_8 + 0.5 L_4 would give (-0.072, -0.447, 0.447, 0.072) -> step 200 instead.
    level, chosen = column._choose(1, candidates)
    assert (level.chosen_step, chosen.step) == (100, 100)


# --- 9. XDoG edges (models/painter_params.py XDoG_ on the CLIP-normalised attention input)


def test_xdog_edges_match_the_reference_filter():
    from scipy.ndimage import gaussian_filter

    image = to_canvas_tensor(draw_scene(224, 224))
    noise = torch.Generator().manual_seed(0)
    image = (image + 0.05 * torch.rand(image.shape, generator=noise)).clamp(0, 1)
    normalised = ((image - torch.tensor(CLIP_MEAN).view(3, 1, 1))
                  / torch.tensor(CLIP_STD).view(3, 1, 1)).double().numpy()
    grey = 0.2125 * normalised[0] + 0.7154 * normalised[1] + 0.0721 * normalised[2]  # rgb2gray
    difference = gaussian_filter(grey, 0.8) - 0.98 * gaussian_filter(grey, 8.0)
    response = np.where(difference < -0.1, 1.0, 1.0 + np.tanh(200 * difference))
    response = (response - response.min()) / (response.max() - response.min())
    # skimage.filters.threshold_otsu: 256 bins over the value range, between-class variance.
    hist, edges = np.histogram(response, bins=256, range=(response.min(), response.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    w1, w2 = np.cumsum(hist), np.cumsum(hist[::-1])[::-1]
    m1 = np.cumsum(hist * centres) / w1
    m2 = (np.cumsum((hist * centres)[::-1]) / w2[::-1])[::-1]
    threshold = centres[np.argmax(w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2)]
    reference = response < threshold  # the reference samples where 1 - (response >= th)
    ours = xdog_edges(image).numpy().astype(bool)
    assert reference.sum() > 500
    assert (ours != reference).mean() < 1e-3


# --- 10. The inpainting hole (sketch_utils.py get_mask_u2net: the U2-Net mask dilated 11x11)


def test_inpainting_hole_is_the_raw_mask_dilated():
    image = Image.new("RGB", (320, 320), (230, 230, 230))
    salient = np.zeros((320, 320))
    salient[100:220, 100:220] = 1.0   # the object
    salient[20:24, 280:284] = 1.0     # a speck of saliency far from it
    holes = []

    class Saliency:
        def predict(self, _image):
            return salient

    class Inpainting:
        def inpaint(self, picture, hole):
            holes.append(hole)
            return picture

    source = InputImage(image, 320, 320, "PNG")
    split = split_scene(source, saliency=Saliency(), inpainting=Inpainting())
    # 120 px < 0.7 x 320: one object, re-framed, and then the reference drops specks.
    assert split.reframed
    assert not split.mask[20:24, 280:284].any()           # the foreground drops the speck
    assert split.mask[100:220, 100:220].all()
    # ndimage.binary_dilation(mask, structure=np.ones((11, 11))) on the 320 px mask: each
    # pixel grows by 5 on every side.
    wanted = np.zeros((320, 320), bool)
    wanted[95:225, 95:225] = True
    wanted[15:29, 275:289] = True
    np.testing.assert_array_equal(holes[0], wanted)       # the background loses the speck too


def test_specks_stay_in_the_object_unless_it_is_reframed():
    # sketch_utils.py get_mask_u2net: small components are removed (remove_small_objects,
    # below a third of the largest) only inside `if max_size < target_size and num_cc == 1`,
    # where the object is re-framed; otherwise the raw mask, specks included, masks the target.
    image = Image.new("RGB", (320, 320), (230, 230, 230))
    salient = np.zeros((320, 320), bool)
    salient[40:280, 40:280] = True    # 240 px >= 0.7 x 320: not re-framed
    salient[5:9, 300:304] = True      # a speck

    class Saliency:
        def predict(self, _image):
            return salient.astype(float)

    class Inpainting:
        def inpaint(self, picture, hole):
            return picture

    split = split_scene(InputImage(image, 320, 320, "PNG"), saliency=Saliency(),
                        inpainting=Inpainting())
    assert not split.reframed
    np.testing.assert_array_equal(split.mask, salient)
    assert (np.asarray(split.foreground)[5:9, 300:304] == 230).all()  # the speck's pixels stay



# --- Augmentations (models/loss.py CLIPConvLoss: fresh RandomPerspective + RandomResizedCrop
#     every step) and the presets that use them


def test_standard_and_paper_draw_fresh_augmentations_every_step(tiny_encoder, scene):
    target, _ = scene
    for preset in ("standard", "paper"):
        config = make_config(preset)
        bank = TargetBank(tiny_encoder, {"scene": target}, {"scene": [2]}, config.augmentations,
                          config.augment_pool, torch.Generator().manual_seed(0))
        grids = [bank.draw()[0] for _ in range(3)]
        assert bank.pool_transforms is None
        assert grids[0].shape[0] == 4
        assert not torch.allclose(grids[0], grids[1]) and not torch.allclose(grids[1], grids[2])
    # The pool stays the CPU draft's speed choice.
    assert make_config("preview").augment_pool > 0


def test_auto_is_standard_on_a_gpu_and_the_draft_on_a_cpu_and_paper_has_two_seeds():
    assert make_config("auto", device_type="cuda").preset == "standard"
    assert make_config("auto", device_type="mps").preset == "standard"
    draft = make_config("auto", device_type="cpu", seed=7)
    assert (draft.preset, draft.preset_requested, draft.seeds) == ("preview", "auto", (7,))
    assert make_config("paper", seed=7).seeds == (7, 1007)
