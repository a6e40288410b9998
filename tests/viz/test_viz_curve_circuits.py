"""The echo figures draw what the reports hold: the curves, the opposite orientation, the growth bars."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from circuits_vision.analysis.curve_experiments import ECHO_GROWTH
from circuits_vision.viz import echo_survey_figure, echo_tuning_figure


def fake_report(unit: int, preferred: float, echo_after: float) -> SimpleNamespace:
    angles = torch.arange(0.0, 360.0, 10.0)
    before = torch.cos(torch.deg2rad(angles - preferred)).clamp_min(0)
    after = before + echo_after * torch.cos(torch.deg2rad(angles - preferred - 180)).clamp_min(0)
    return SimpleNamespace(
        target="mixed3b",
        unit=unit,
        orientations=angles,
        before=before,
        after=after,
        preferred_orientation=preferred,
        echo_before=0.0,
        echo_after=echo_after,
    )


def test_echo_tuning_figure_draws_both_curves_and_marks_the_opposite_orientation():
    report = fake_report(7, 30.0, 0.6)
    (ax,) = echo_tuning_figure(report).axes
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 36]
    np.testing.assert_allclose(lines[1].get_ydata(), report.after.numpy())
    marks = sorted(float(line.get_xdata()[0]) for line in ax.get_lines() if len(line.get_xdata()) == 2)
    assert marks == [30.0, 210.0]
    assert ax.get_title() == "mixed3b:7: echo 0.00 -> 0.60"


def test_echo_survey_figure_shows_the_strongest_detector_with_its_control_and_every_growth():
    reports = [fake_report(u, p, e) for u, p, e in ((3, 200.0, 0.05), (5, 20.0, 0.7), (9, 110.0, 0.3))]
    survey = SimpleNamespace(
        target="mixed3b",
        reports=reports,
        strongest=1,
        control_curves=[r.before * 0.9 for r in reports],
        growth=[0.05, 0.7, 0.3],
        control_growth=[0.0, 0.02, 0.2],
        n_echo=2,
        n_control_echo=1,
        p_value=0.25,
    )
    left, right = echo_survey_figure(survey).axes
    assert left.get_title() == "mixed3b:5: echo 0.00 -> 0.70"
    curves = [line for line in left.get_lines() if len(line.get_xdata()) == 36]
    np.testing.assert_allclose(curves[2].get_ydata(), survey.control_curves[1].numpy())  # the control, grey
    heights = [round(bar.get_height(), 6) for bar in right.patches]
    assert heights == [0.7, 0.3, 0.05, 0.02, 0.2, 0.0]  # edit then control, detectors by preferred orientation
    assert [t.get_text() for t in right.get_xticklabels()] == ["5", "9", "3"]
    assert any(line.get_ydata()[0] == ECHO_GROWTH for line in right.get_lines())
