"""Ablation on a model whose answer is known: class k is read from channel k of one layer."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import circuits_vision as cv
from circuits_vision.analysis.ablation import AblationReport, ablate, ablated, parse_units, with_replacement

CLASSES = 3


def channel_reader() -> nn.Module:
    """``features`` copies the image's channels (1x1 identity conv); the logits are their spatial means."""
    features = nn.Conv2d(CLASSES, CLASSES, 1, bias=False)
    with torch.no_grad():
        features.weight.copy_(torch.eye(CLASSES).view(CLASSES, CLASSES, 1, 1))
    model = nn.Sequential(
        OrderedDict(features=features, relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten())
    )
    model.input_size = 8
    return model.eval()


def data(per_class: int = 4):
    """Class-k images: channel k at 1.0, the others at 0.2."""
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    images = torch.full((labels.numel(), CLASSES, 8, 8), 0.2)
    images[torch.arange(labels.numel()), labels] = 1.0
    return images, labels, ["a", "b", "c"]


def test_zero_ablation_removes_exactly_the_class_its_channel_carries():
    report = ablate(channel_reader(), {"features": [0]}, data())
    assert isinstance(report, AblationReport) and report.mode == "zero"
    assert report.before == 1.0
    assert report.after == pytest.approx(2 / 3)
    assert report.delta == pytest.approx(-1 / 3)
    assert report.per_class_delta == {"a": -1.0, "b": 0.0, "c": 0.0}
    assert report.changed == pytest.approx(1 / 3)
    assert report.class_delta("a").n == 4
    # 4 of 12 paired predictions flipped, all losses: s.e. = sqrt(4 - 16/12) / 12.
    assert report.standard_error == pytest.approx((4 - 16 / 12) ** 0.5 / 12)


def test_mean_ablation_keeps_what_the_unit_adds_on_average():
    # Channel 0's mean over the data is (1 + 0.2 + 0.2) / 3 = 0.467 > 0.2: class-a images still win on it.
    report = ablate(channel_reader(), ["features:0"], data(), value="mean")
    assert report.mode == "mean" and report.delta == 0.0 and report.per_class_delta["a"] == 0.0


def test_two_units_and_the_table():
    report = ablate(channel_reader(), [("features", 0), ("features", 1)], data())
    assert report.units == {"features": [0, 1]}
    rows = report.table()
    assert [r["class"] for r in rows] == ["a", "b", "c", "(all)"]
    assert [r["delta"] for r in rows[:3]] == [-1.0, -1.0, 0.0]
    assert rows[-1]["after"] == pytest.approx(1 / 3)
    text = str(report)
    assert "100.0% -> 33.3%" in text and "features x2" in text
    assert repr(report).startswith("AblationReport(2 units, zero, n=12")


def test_replacement_restores_the_unit():
    # Hand-building channel 0 again (it is the input's channel 0) gives back the original accuracy.
    spec = with_replacement("features", [0], lambda inputs, output: inputs[:, :1])
    report = ablate(channel_reader(), data=data(), **spec)
    assert report.mode == "replacement" and report.after == 1.0 and report.changed == 0.0
    # A replacement that inverts it breaks class a and only class a.
    spec = with_replacement("features", [0], lambda inputs, output: -inputs[:, :1])
    assert ablate(channel_reader(), data=data(), **spec).per_class_delta == {"a": -1.0, "b": 0.0, "c": 0.0}


def test_hooks_are_removed_and_the_model_is_untouched():
    model, (images, labels, _) = channel_reader(), data()
    before = model(images)
    with ablated(model, {"features": [0]}):
        assert torch.all(model(images)[:, 0] == 0)
    assert torch.equal(model(images), before)
    ablate(model, {"features": [0]}, (images, labels))
    assert torch.equal(model(images), before)


def test_logits_select_a_head():
    images, labels, _ = data()
    # Only columns 1..2 are the classifier: labels are relative to them.
    report = ablate(channel_reader(), {"features": [1]}, (images[4:], labels[4:] - 1), logits=slice(1, 3))
    assert report.per_class_delta == {"0": -1.0, "1": 0.0}


def test_public_name():
    assert cv.analysis.ablate is ablate


@pytest.mark.parametrize(
    "units, error",
    [
        ({"features": [3]}, IndexError),
        ({"nope": [0]}, ValueError),
        (["features"], ValueError),
        ({}, ValueError),
        ([3.5], TypeError),
    ],
)
def test_bad_units_are_named(units, error):
    with pytest.raises(error):
        parse_units(channel_reader(), units)


def test_bad_data_and_value_are_named():
    model, (images, labels, names) = channel_reader(), data()
    with pytest.raises(ValueError, match="labels must be integer"):
        ablate(model, {"features": [0]}, (images, labels.float()))
    with pytest.raises(TypeError, match="data must be"):
        ablate(model, {"features": [0]}, images)
    with pytest.raises(ValueError, match="value must be"):
        ablate(model, {"features": [0]}, (images, labels), value="noise")
    with pytest.raises(ValueError, match="class_names has 2"):
        ablate(model, {"features": [0]}, (images, labels, names[:2]))
