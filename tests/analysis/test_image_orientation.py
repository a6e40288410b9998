"""The model-free curve orientation read-out: drawn curves of known orientation come back with it."""

from __future__ import annotations

import pytest
import torch

from circuits_vision import stimuli
from circuits_vision.analysis.image_orientation import circular_difference, curve_orientation
from circuits_vision.stimuli.scenes import SHAPE_CLASSES, random_scenes

CURVES = [i for i, name in enumerate(SHAPE_CLASSES) if name.startswith("curve_")]


def test_the_orientation_of_drawn_curve_scenes_is_read_back_within_a_few_degrees():
    images, labels = random_scenes(160, torch.Generator().manual_seed(5))
    curve = torch.isin(labels["shape"], torch.tensor(CURVES))
    found = curve_orientation(images[curve])
    error = circular_difference(found.degrees, labels["orientation"][curve])
    assert int(curve.sum()) >= 40
    # random colours, positions, radii 6..20, arc widths 70..160 and pixel noise: chance would be 90 degrees
    assert float(error.median()) < 10.0 and float((error <= 22.5).double().mean()) > 0.85


def test_the_read_out_follows_the_picture_when_it_is_turned_and_ignores_colour_and_polarity():
    angles = torch.tensor([0.0, 60.0, 135.0, 250.0])
    black_on_white = stimuli.curves(angles, 12.0, angular_width=100.0, thickness=2.0)
    white_on_red = stimuli.curves(
        angles, 12.0, angular_width=100.0, thickness=2.0, color=(1.0, 1.0, 1.0), background=(0.8, 0.1, 0.1)
    )
    for pictures in (black_on_white, white_on_red):
        assert float(circular_difference(curve_orientation(pictures).degrees, angles).max()) <= 15.0
    # a quarter turn of the picture (rot90 over rows, columns) is a quarter turn of the curve: +90 degrees
    turned = curve_orientation(torch.rot90(black_on_white, 1, (2, 3))).degrees
    assert float(circular_difference(turned, angles + 90.0).max()) <= 15.0


def test_noise_prefers_no_orientation_as_much_as_a_curve_does():
    noise = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    curves = stimuli.curves(torch.arange(0.0, 360.0, 45.0), 10.0, angular_width=110.0, thickness=2.5)
    assert float(curve_orientation(noise).contrast.max()) < float(curve_orientation(curves).contrast.min())


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        curve_orientation(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="divide 360"):
        curve_orientation(torch.zeros(1, 3, 64, 64), step=7)
    with pytest.raises(ValueError, match="radii"):
        curve_orientation(torch.zeros(1, 3, 64, 64), radii=())
    assert float(circular_difference(torch.tensor(350.0), torch.tensor(10.0))) == 20.0
