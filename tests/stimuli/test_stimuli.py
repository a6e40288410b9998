"""Geometry, anti-aliasing, batching and validation of the drawn stimuli."""

from __future__ import annotations

import math

import pytest
import torch

from circuits_vision import stimuli

SIZE = 33  # odd, so the image centre is a pixel centre
CENTRE = SIZE // 2


def pixel(x: float, y: float) -> tuple[int, int]:
    """(row, col) of the pixel at (x, y) pixels from the centre, y up."""
    return CENTRE - round(y), CENTRE + round(x)


def test_curve_centre_line_is_foreground_and_far_pixels_background():
    img = stimuli.curves(0, 10, thickness=3, color=(1, 0, 0), background=(0, 0, 1), size=SIZE)[0]
    # The arc's midpoint is the image centre; orientation 0 means its convex side faces +x.
    assert torch.allclose(img[:, CENTRE, CENTRE], torch.tensor([1.0, 0.0, 0.0]))
    # 45 degrees along the arc (circle centre at (-10, 0)) is also on the stroke.
    r, c = pixel(-10 + 10 * math.cos(math.radians(30)), 10 * math.sin(math.radians(30)))
    assert img[0, r, c] > 0.9
    # The circle's centre and a corner are far from the stroke.
    r, c = pixel(-10, 0)
    assert torch.allclose(img[:, r, c], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(img[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    # Beyond the arc's angular width (90 deg) the circle is not drawn: the point facing -x.
    r, c = pixel(-20, 0)
    assert img[0, r, c] == 0


def test_rotating_the_image_by_90_degrees_adds_90_to_the_orientation():
    for family, kwargs in [
        (stimuli.curves, {"radius": 8, "angular_width": 120}),
        (stimuli.angles, {"opening": 60, "arm_length": 10}),
        (stimuli.lines, {"length": 20}),
        (stimuli.edges, {}),
        (stimuli.high_low, {"ratio": 4}),
        (stimuli.gratings, {"frequency": 0.1}),
    ]:
        for orientation in (0.0, 30.0, 200.0):
            rotated = torch.rot90(family(orientation, size=SIZE, **kwargs), 1, dims=(-2, -1))
            expected = family(orientation + 90, size=SIZE, **kwargs)
            assert (rotated - expected).abs().max() < 2e-3, (family.__name__, orientation)


def test_different_orientations_really_differ():
    a, b = stimuli.curves([0, 180], 8, size=SIZE)
    assert (a - b).abs().max() == 1


def test_antialiasing_gives_intermediate_values_on_edges():
    img = stimuli.circles(7.3, thickness=None, color=(1, 1, 1), background=(0, 0, 0), size=SIZE)[0, 0]
    values = img.flatten()
    intermediate = ((values > 0.05) & (values < 0.95)).sum()
    assert intermediate >= 20  # a ring of partially covered pixels around the disc
    # Coverage adds up to the disc's area (pi r^2) within a pixel's worth of perimeter error.
    assert abs(float(values.sum()) - math.pi * 7.3**2) < 2.0


def test_edge_coverage_is_linear_across_the_boundary():
    img = stimuli.edges(0, center=(0.25, 0), color=(1, 1, 1), background=(0, 0, 0), size=SIZE)[0, 0]
    # Pixel centres at x = -0.75, 0, 0.75 from the boundary at 0.25: coverage 0, 0.25, 1.
    assert img[CENTRE, CENTRE - 1] == 0
    assert img[CENTRE, CENTRE] == pytest.approx(0.25)
    assert img[CENTRE, CENTRE + 1] == 1


def test_deterministic_and_batched_equals_one_by_one():
    params, shape = stimuli.parameter_grid(orientation=[0, 45, 170], radius=[0, 4, 9])
    batch = stimuli.curves(params["orientation"], params["radius"], arm_length=5, size=SIZE)
    assert batch.shape == (9, 3, SIZE, SIZE) and shape == (3, 3)
    assert torch.equal(batch, stimuli.curves(params["orientation"], params["radius"], arm_length=5, size=SIZE))
    for i in range(9):
        single = stimuli.curves(float(params["orientation"][i]), float(params["radius"][i]), arm_length=5, size=SIZE)
        assert torch.allclose(batch[i : i + 1], single, atol=1e-6)


def test_all_families_return_images_in_unit_range():
    for img in [
        stimuli.curves([0, 90], 6, size=SIZE),
        stimuli.angles([0, 90], [60, 90], size=SIZE),
        stimuli.lines([0, 45], size=SIZE),
        stimuli.edges([0, 45], size=SIZE),
        stimuli.circles([3, 6], size=SIZE),
        stimuli.gratings([0, 45], [0.1, 0.2], size=SIZE),
        stimuli.high_low([0, 45], [1, 10], size=SIZE),
        stimuli.blobs([2, 4], size=SIZE),
        stimuli.solid([[1, 0, 0], [0, 1, 0]], size=SIZE),
    ]:
        assert img.shape == (2, 3, SIZE, SIZE)
        assert img.min() >= 0 and img.max() <= 1


def test_radius_zero_curve_is_the_sharp_angle():
    angle = stimuli.angles(30, 90, arm_length=10, size=SIZE)
    corner = stimuli.curves(30, 0, angular_width=90, arm_length=10, size=SIZE)
    assert torch.equal(angle, corner)
    # The apex is on the stroke, the point 5 px behind it along the bisector is not.
    assert angle[0, 0, CENTRE, CENTRE] == 0
    r, c = pixel(-5 * math.cos(math.radians(30)), -5 * math.sin(math.radians(30)))
    assert angle[0, 0, r, c] == 1


def test_high_low_has_high_frequency_on_the_oriented_side():
    img = stimuli.high_low(0, 8, frequency=0.25, size=65)[0, 0]
    high_side, low_side = img[:, 40:], img[:, :25]
    # Orientation 0: high frequency on the right (+x). The waves run along the boundary (vertically),
    # so neighbouring rows change a lot at 0.25 cycles/px and little at 0.25 / 8.
    assert (high_side[1:] - high_side[:-1]).abs().mean() > 4 * (low_side[1:] - low_side[:-1]).abs().mean()


def test_gratings_have_the_requested_period():
    img = stimuli.gratings(0, 0.125, color=(1, 1, 1), background=(0, 0, 0), size=SIZE)[0, 0]
    row = img[CENTRE]
    assert torch.allclose(row[CENTRE], torch.tensor(1.0))  # phase 0: crest at the centre
    assert torch.allclose(row[CENTRE + 8], torch.tensor(1.0), atol=1e-5)  # one period (8 px) later
    assert torch.allclose(row[CENTRE + 4], torch.tensor(0.0), atol=1e-5)  # half a period: trough


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: stimuli.curves(0, -1), "radius"),
        (lambda: stimuli.curves(0, 0), "radius"),  # zero length: no arc and no arms
        (lambda: stimuli.curves(0, 5, thickness=0), "thickness"),
        (lambda: stimuli.curves(0, 5, angular_width=400), "angular_width"),
        (lambda: stimuli.curves(0, 5, size=0), "size"),
        (lambda: stimuli.curves([0, 1], [1, 2, 3]), "radius"),
        (lambda: stimuli.curves(0, 5, color=(2, 0, 0)), "color"),
        (lambda: stimuli.curves(0, 5, center=(1, 2, 3)), "center"),
        (lambda: stimuli.high_low(0, 0.5), "ratio"),
        (lambda: stimuli.gratings(0, 0.7), "frequency"),
        (lambda: stimuli.lines(0, length=0), "length"),
        (lambda: stimuli.circles(0), "radius"),
        (lambda: stimuli.blobs(-2), "radius"),
        (lambda: stimuli.angles(0, 0), "opening"),
        (lambda: stimuli.parameter_grid(orientation=[]), "orientation"),
    ],
)
def test_impossible_parameters_raise_value_error_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_parameter_grid_first_axis_slowest():
    params, shape = stimuli.parameter_grid(orientation=[0, 90, 180], radius=[4, 8])
    assert shape == (3, 2)
    assert params["orientation"].tolist() == [0, 0, 90, 90, 180, 180]
    assert params["radius"].tolist() == [4, 8, 4, 8, 4, 8]


# One call per public drawing function, with parameters that exercise its geometry.
DRAWINGS = [
    ("curves", lambda **kw: stimuli.curves(0.0, 5.0, **kw)),  # no arms: zero-length segments
    ("curves_with_arms", lambda **kw: stimuli.curves(30.0, 6.0, arm_length=4.0, **kw)),
    ("angles", lambda **kw: stimuli.angles(45.0, 60.0, **kw)),
    ("lines", lambda **kw: stimuli.lines(20.0, **kw)),
    ("edges", lambda **kw: stimuli.edges(20.0, **kw)),
    ("circles", lambda **kw: stimuli.circles(7.0, **kw)),
    ("gratings", lambda **kw: stimuli.gratings(30.0, **kw)),
    ("high_low", lambda **kw: stimuli.high_low(60.0, **kw)),
    ("blobs", lambda **kw: stimuli.blobs(4.0, **kw)),
    ("solid", lambda **kw: stimuli.solid((0.2, 0.5, 0.9), **kw)),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,draw", DRAWINGS, ids=[d[0] for d in DRAWINGS])
def test_half_precision_is_the_float32_drawing_rounded(name, draw, dtype):
    """Half-precision drawings are finite and equal the float32 drawing cast to the dtype (not a NaN image)."""
    half = draw(size=SIZE, dtype=dtype)
    assert half.dtype == dtype
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half, draw(size=SIZE).to(dtype), atol=0, rtol=0)


@pytest.mark.parametrize("name,draw", DRAWINGS, ids=[d[0] for d in DRAWINGS])
def test_float64_is_drawn_in_float64(name, draw):
    img = draw(size=SIZE, dtype=torch.float64)
    assert img.dtype == torch.float64
    torch.testing.assert_close(img.float(), draw(size=SIZE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64, "float32"])
@pytest.mark.parametrize("name,draw", DRAWINGS, ids=[d[0] for d in DRAWINGS])
def test_non_floating_dtype_is_rejected_by_name(name, draw, dtype):
    with pytest.raises(TypeError, match="parameter 'dtype' must be a floating torch dtype"):
        draw(size=SIZE, dtype=dtype)
