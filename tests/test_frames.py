"""The affine maps between input-image px, canvas px and the object's re-framed canvas px."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipascene_core.io.frames import Affine2D, CanvasFrame

RNG = np.random.default_rng(0)

# --- Affine2D -------------------------------------------------------------------------------------


def test_affine_maps_worked_out_points():
    halve_and_shift = Affine2D(0.5, 10.0, -4.0)
    np.testing.assert_array_equal(halve_and_shift.apply([[0.0, 0.0], [20.0, 8.0]]),
                                  [[10.0, -4.0], [20.0, 0.0]])
    np.testing.assert_array_equal(halve_and_shift.inverse().apply([[10.0, -4.0], [20.0, 0.0]]),
                                  [[0.0, 0.0], [20.0, 8.0]])


def test_then_applies_the_left_map_first():
    double = Affine2D(2.0, 0.0, 0.0)
    shift = Affine2D(1.0, 5.0, 7.0)
    point = np.array([1.0, 1.0])
    # (1, 1) doubled is (2, 2), then shifted is (7, 9); shifted first it is (6, 8), doubled (12, 16).
    np.testing.assert_array_equal(double.then(shift).apply(point), [7.0, 9.0])
    np.testing.assert_array_equal(shift.then(double).apply(point), [12.0, 16.0])
    assert double.then(shift) == Affine2D(2.0, 5.0, 7.0)
    assert shift.then(double) == Affine2D(2.0, 10.0, 14.0)


def test_affine_apply_inverse_then_are_exact_on_numpy_and_torch():
    forward = Affine2D(0.37, -12.5, 80.25)
    other = Affine2D(2.5, 3.0, -1.0)
    points = RNG.uniform(-500, 500, (5, 7, 2))
    np.testing.assert_allclose(forward.inverse().apply(forward.apply(points)), points, rtol=0, atol=1e-9)
    np.testing.assert_allclose(forward.then(other).apply(points), other.apply(forward.apply(points)),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(forward.then(forward.inverse()).apply(points), points, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(Affine2D.IDENTITY.apply(points), points)
    tensor = torch.from_numpy(points)
    mapped = forward.apply(tensor)
    assert isinstance(mapped, torch.Tensor) and mapped.dtype == torch.float64
    torch.testing.assert_close(forward.inverse().apply(mapped), tensor, rtol=0, atol=1e-9)
    np.testing.assert_allclose(mapped.numpy(), forward.apply(points), rtol=0, atol=1e-12)


def test_then_is_associative_and_identity_is_neutral():
    a, b, c = Affine2D(0.3, 1.5, -2.0), Affine2D(4.0, -7.0, 0.25), Affine2D(1.25, 100.0, 3.0)
    left, right = a.then(b).then(c), a.then(b.then(c))
    np.testing.assert_allclose([left.scale, left.tx, left.ty], [right.scale, right.tx, right.ty],
                               rtol=1e-12)
    assert Affine2D.IDENTITY.then(a) == a and a.then(Affine2D.IDENTITY) == a
    assert a.then(b) != b.then(a)


def test_tensors_keep_dtype_and_integers_become_floats():
    forward = Affine2D(0.5, 1.0, 2.0)
    single = forward.apply(torch.ones(3, 2, dtype=torch.float32))
    assert single.dtype == torch.float32
    torch.testing.assert_close(single, torch.tensor([[1.5, 2.5]] * 3))
    integers = forward.apply(torch.tensor([[2, 4]]))
    assert integers.dtype == torch.get_default_dtype()
    torch.testing.assert_close(integers, torch.tensor([[2.0, 4.0]]))
    from_list = forward.apply([[2, 4]])
    assert isinstance(from_list, np.ndarray) and from_list.dtype == np.float64


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf])
def test_affine_scale_must_be_positive_and_finite(scale):
    with pytest.raises(ValueError, match="scale"):
        Affine2D(scale, 1.0, 1.0)


# --- CanvasFrame ----------------------------------------------------------------------------------


def test_wide_image_frame_worked_out_by_hand():
    # 300x120 on a 300-px square: 90 px of paper above and below; 300/224 input px per canvas px.
    frame = CanvasFrame(300, 120)
    assert frame.side == 300 and frame.scale == pytest.approx(300 / 224) and frame.offset == (0.0, -90.0)
    corners = np.array([[0.0, 0.0], [224.0, 224.0], [112.0, 112.0]])
    np.testing.assert_allclose(frame.canvas_to_image.apply(corners),
                               [[0.0, -90.0], [300.0, 210.0], [150.0, 60.0]], atol=1e-12)
    # The image's own corners: 90 px of paper is 67.2 canvas px.
    np.testing.assert_allclose(frame.image_to_canvas.apply(np.array([[0.0, 0.0], [300.0, 120.0]])),
                               [[0.0, 67.2], [224.0, 156.8]], atol=1e-12)
    assert frame.canvas_to_image.scale == pytest.approx(300 / 224)
    assert (frame.canvas_to_image.tx, frame.canvas_to_image.ty) == (0.0, -90.0)
    assert frame.image_to_canvas.scale == pytest.approx(224 / 300)
    assert frame.image_to_canvas.ty == pytest.approx(67.2)


def test_tall_image_is_padded_left_and_right():
    frame = CanvasFrame(120, 300, canvas_size=100)
    assert frame.offset == (-90.0, 0.0)
    np.testing.assert_allclose(frame.canvas_to_image.apply(np.array([[50.0, 50.0], [100.0, 0.0]])),
                               [[60.0, 150.0], [210.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(frame.canvas_to_image.apply(np.array([[0.0, 0.0], [100.0, 100.0]])),
                               [[-90.0, 0.0], [210.0, 300.0]], atol=1e-12)


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (224, 224), (101, 7)])
def test_frame_maps_are_exact_inverses(size):
    frame = CanvasFrame(*size)
    points = RNG.uniform(-50, 500, (10, 4, 2))
    assert np.abs(frame.image_to_canvas.apply(frame.canvas_to_image.apply(points)) - points).max() < 1e-9
    tensor = torch.from_numpy(points)
    assert torch.allclose(frame.canvas_to_image.apply(frame.image_to_canvas.apply(tensor)), tensor, atol=1e-9)
    np.testing.assert_allclose(frame.canvas_to_image.then(frame.image_to_canvas).apply(points), points,
                               rtol=0, atol=1e-9)
    # The image's own corners land on the canvas, centred, nothing outside.
    corners = frame.image_to_canvas.apply(np.array([[0.0, 0.0], [size[0], size[1]]]))
    assert corners.min() >= -1e-9 and corners.max() <= 224 + 1e-9
    assert np.allclose(corners[0] + corners[1], 224)


def test_object_to_image_worked_out_by_hand():
    # An object canvas zoomed x4 whose corner sits at scene canvas (56, 84), in the 300x120 image.
    frame = CanvasFrame(300, 120)
    object_frame = Affine2D(0.25, 56.0, 84.0)
    object_to_image = object_frame.then(frame.canvas_to_image)
    assert isinstance(object_to_image, Affine2D)
    # Object (0, 0) -> scene (56, 84) -> image (75, 22.5); object (224, 224) -> scene (112, 140)
    # -> image (150, 97.5): the object canvas covers x 75..150, y 22.5..97.5 of the image.
    np.testing.assert_allclose(object_to_image.apply(np.array([[0.0, 0.0], [224.0, 224.0]])),
                               [[75.0, 22.5], [150.0, 97.5]], atol=1e-12)
    assert object_to_image.scale == pytest.approx(75 / 224)
    np.testing.assert_allclose(object_to_image.inverse().apply(np.array([[75.0, 22.5], [150.0, 97.5]])),
                               [[0.0, 0.0], [224.0, 224.0]], atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_composed_map_equals_applying_one_then_the_other(dtype):
    frame = CanvasFrame(300, 120)
    object_frame = Affine2D(0.31, 47.5, 101.25)
    object_to_image = object_frame.then(frame.canvas_to_image)
    points = torch.from_numpy(RNG.uniform(-20, 244, (40, 4, 2))).to(dtype)
    stepwise = frame.canvas_to_image.apply(object_frame.apply(points))
    composed = object_to_image.apply(points)
    assert composed.dtype == dtype
    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(composed, stepwise, rtol=0, atol=tolerance)
    back = object_to_image.inverse().apply(composed)
    torch.testing.assert_close(back, points, rtol=0, atol=tolerance)
    # The way back is the reverse composition of the inverses.
    reverse = frame.image_to_canvas.then(object_frame.inverse())
    torch.testing.assert_close(reverse.apply(composed), points, rtol=0, atol=tolerance)
