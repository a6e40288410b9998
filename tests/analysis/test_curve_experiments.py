"""Curve circuit statistic, the expanded-weight edit behind the echo, kernel rotation and the equivariant template."""

from __future__ import annotations

import math

import pytest
import torch

from circuits_vision.analysis import curve_experiments as ce
from circuits_vision.analysis.curve_circuits import curve_circuit, orientation_difference
from circuits_vision.analysis.tuning import CurveDetector
from circuits_vision.models.inception import BlockSpec, ConvSpec, InceptionNet, InceptionSpec, Preprocess

pytestmark = pytest.mark.usefixtures("one_thread")


def detector(unit: int, orientation: float) -> CurveDetector:
    return CurveDetector(unit, orientation, 5.0, 0.5, 0.5, 90.0, 1.0)


def test_orientation_difference_wraps():
    got = orientation_difference(torch.tensor([10.0, 350.0, 180.0]), torch.tensor([350.0, 10.0, 0.0]))
    assert got.tolist() == [20.0, -20.0, -180.0]


def test_curve_circuit_of_a_cosine_profile_is_perfect_and_of_noise_is_not():
    src = [detector(u, 45.0 * u) for u in range(8)]
    tgt = [detector(u, 45.0 * u + 10) for u in range(8)]
    delta = orientation_difference(
        torch.tensor([d.preferred_orientation for d in tgt])[:, None],
        torch.tensor([d.preferred_orientation for d in src])[None, :],
    )
    weights = torch.zeros(8, 8, 3, 3)
    weights[:, :, 1, 1] = torch.cos(torch.deg2rad(delta))
    found = curve_circuit(
        None, "a", "b", source_detectors=src, target_detectors=tgt, weights=weights, permutations=2000
    )
    assert found.correlation == pytest.approx(1.0)
    assert found.p_value < 0.01 and found.null_std > 0.05
    assert found.aligned_mean > 0.9 and found.opposite_mean < -0.9 and found.excites_aligned and found.inhibits_opposite
    assert len(found.table()) == 64 and "p = " in str(found) and "pairs=64" in repr(found)
    # Bin 0 (delta in [-22.5, 22.5)) holds the +10 deg pairs: cos(10 deg).
    assert found.profile[found.bins.index(0.0)] == pytest.approx(math.cos(math.radians(10)), abs=1e-5)

    noise = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    shuffled = curve_circuit(
        None, "a", "b", source_detectors=src, target_detectors=tgt, weights=noise, permutations=2000
    )
    assert abs(shuffled.correlation) < 0.35 and shuffled.p_value > 0.01


def test_curve_circuit_needs_two_detectors_per_layer():
    with pytest.raises(ValueError, match="at least 2"):
        curve_circuit(
            None,
            "a",
            "b",
            source_detectors=[detector(0, 0.0)],
            target_detectors=[detector(0, 0.0)] * 2,
            weights=torch.zeros(1, 1, 1, 1),
        )


def test_rotate_kernels_turns_counter_clockwise_with_y_up():
    kernel = torch.zeros(5, 5)
    kernel[2, 4] = 1.0  # x = +2, y = 0 (right of centre)
    turned = ce.rotate_kernels(kernel, 90.0)
    assert turned[0, 2] == pytest.approx(1.0)  # y = +2 (top row)
    assert float(turned.sum()) == pytest.approx(1.0)
    assert torch.allclose(ce.rotate_kernels(kernel, 360.0), kernel, atol=1e-6)


def test_template_rebuilds_exactly_equivariant_weights():
    base = torch.randn(8, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    src = [detector(u, 90.0 * u) for u in range(4)]
    tgt = [detector(u, 90.0 * u) for u in range(4)]
    E = torch.zeros(4, 4, 5, 5, dtype=torch.float64)
    for j, t in enumerate(tgt):
        for i, s in enumerate(src):
            k = int(
                (
                    (
                        orientation_difference(
                            torch.tensor(t.preferred_orientation), torch.tensor(s.preferred_orientation)
                        )
                        + 180
                        + 22.5
                    )
                    // 45
                )
                % 8
            )
            E[j, i] = ce.rotate_kernels(base[k], t.preferred_orientation)
    built, template = ce._template(E, tgt, src)
    assert torch.allclose(built, E, atol=1e-9)
    assert template.shape == (8, 5, 5)


def tiny_inception() -> InceptionNet:
    spec = InceptionSpec(
        stem=(ConvSpec("conv2d0", 6, 3, stride=2),),
        blocks=(BlockSpec("mixed3a", 4, 3, 4, 2, 3, 3), BlockSpec("mixed3b", 4, 3, 4, 2, 3, 3)),
        num_classes=0,
        preprocess=Preprocess(scale=2.0, offset=-1.0),
        input_size=16,
    )
    return InceptionNet(spec, generator=torch.Generator().manual_seed(0)).eval()


def test_expanded_edit_of_a_1x1_unit_equals_editing_its_weights():
    model = tiny_inception()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    found = ce._expansion(model, "mixed3a", "mixed3b")
    unit = 1  # in mixed3b's 1x1 branch: a direct 1x1 convolution of mixed3a
    delta = torch.zeros(found.weights.shape[1:])
    delta[[0, 5], found.offset[0], found.offset[1]] = torch.tensor([0.7, -0.4])
    from circuits_vision.hooks import run_with_cache

    with ce._ExpandedEdit(model, "mixed3a", "mixed3b", {unit: delta}, found.offset):
        edited = run_with_cache(model, images, ["mixed3b_pre_relu"])["mixed3b_pre_relu"]
    plain = run_with_cache(model, images, ["mixed3b_pre_relu"])["mixed3b_pre_relu"]
    conv = model.mixed3b_1x1_pre_relu_conv
    with torch.no_grad():
        conv.weight[unit, 0, 0, 0] += 0.7
        conv.weight[unit, 5, 0, 0] -= 0.4
    direct = run_with_cache(model, images, ["mixed3b_pre_relu"])["mixed3b_pre_relu"]
    assert not torch.allclose(plain[:, unit], direct[:, unit])
    assert torch.allclose(edited, direct, atol=1e-6)


def test_edits_need_branches():
    with pytest.raises(ValueError, match="branch_ranges"):
        ce._branch_of(torch.nn.Conv2d(1, 1, 1), "x", 0)


def test_echo_draws_its_tuning_stimuli_at_the_given_size(monkeypatch):
    # Without ``size`` the tuning curves are drawn at the model's input size (16 px here).
    model = tiny_inception()
    sizes = []
    original = ce.tuning_curves

    def recording(*args, **kwargs):
        sizes.append(kwargs["size"])
        return original(*args, **kwargs)

    monkeypatch.setattr(ce, "tuning_curves", recording)
    src, tgt = [detector(0, 0.0), detector(1, 180.0)], [detector(2, 0.0), detector(3, 90.0)]
    default = ce.echo(model, source_detectors=src, target_detectors=tgt)
    assert sizes == [16, 16]
    sized = ce.echo(model, source_detectors=src, target_detectors=tgt, size=40)
    assert sizes[2:] == [40, 40] and len(sized.orientations) == len(default.orientations) == 72


def test_sign_test_is_the_binomial_tail():
    from circuits_vision.analysis.stats import sign_test

    # P(X >= 16), X ~ Binomial(18, 1/2) = (C(18,16) + C(18,17) + C(18,18)) / 2^18
    assert sign_test(16, 2) == pytest.approx((153 + 18 + 1) / 2**18, rel=1e-12)
    assert sign_test(1, 0) == 0.5 and sign_test(0, 0) == 1.0 and sign_test(0, 5) == 1.0
    with pytest.raises(ValueError, match="counts"):
        sign_test(-1, 2)


@pytest.mark.slow
def test_echo_survey_finds_the_planted_echo_and_not_in_the_control(tmp_path, monkeypatch):
    # The planted InceptionV1 carries one echo, in 3b:379: an excitatory matched filter for the opposite curve
    # from 3a:95 cancelled by the same filter, negated, from 3a:145. Removing opposite inhibition must make it
    # appear there and nowhere else; removing the orthogonal curves' inhibition (the control) must not.
    from planted_inceptionv1 import ECHO_INHIBITS, ECHO_UNIT, planted_inceptionv1

    from circuits_vision.atlas import report as report_module
    from circuits_vision.claims.echo import published_detectors

    model = planted_inceptionv1(64)
    src = published_detectors("mixed3a")
    tgt = [d for d in published_detectors("mixed3b") if d.unit in (ECHO_UNIT, 406, 343, 324)]
    survey = ce.echo_survey(model, source_detectors=src, target_detectors=tgt, size=64)
    assert [r.unit for r in survey.reports] == [d.unit for d in tgt]
    assert survey.reports[survey.strongest].unit == ECHO_UNIT and survey.n_echo == 1 and survey.n_control_echo == 0
    best = survey.reports[survey.strongest]
    assert ECHO_INHIBITS in best.opposite_units and best.echo_before < 0.05 and best.echo_after > 1.0
    assert survey.control_echo_after[survey.strongest] < 0.05
    assert not set(survey.control_units[survey.strongest]) & set(best.opposite_units)
    assert survey.p_value == 0.5  # one detector differs between edit and control: the sign test's floor
    assert len(survey.table()) == 4 and f"mixed3b:{ECHO_UNIT}" in str(survey) and "1/4" in repr(survey)

    # The circuit report's section shows the survey (this one: the report's own would redo it at 224 px), its
    # table of echoes and the figure.
    monkeypatch.setattr(ce, "echo_survey", lambda *args, **kwargs: survey)
    state = {"mixed3a": src, "mixed3b": tgt}
    page = str(report_module._echo_section(model, "mixed3a", "mixed3b", tmp_path, state))
    assert "an echo appears in 1 (control edit: 0)" in page and f"echo of mixed3b:{ECHO_UNIT}" in page
    assert (tmp_path / "echo.png").stat().st_size > 10_000


def test_the_replacement_control_rebuilds_units_that_read_only_the_curve_units_exactly():
    # mixed3b:1 and :2 (1x1 branch) are rewired to read only mixed3a:0 and :5, the "curve detectors": rebuilt
    # from their own weights from those two units, they are the original units, so the control changes no
    # prediction and explains all of their pre-ReLU variance; the template, one kernel per orientation
    # difference, cannot (both units face 0 deg with different weights, so it averages them).
    spec = InceptionSpec(
        stem=(ConvSpec("conv2d0", 6, 3, stride=2),),
        blocks=(BlockSpec("mixed3a", 4, 3, 4, 2, 3, 3), BlockSpec("mixed3b", 4, 3, 4, 2, 3, 3)),
        num_classes=3,
        preprocess=Preprocess(scale=2.0, offset=-1.0),
        input_size=16,
    )
    model = InceptionNet(spec, generator=torch.Generator().manual_seed(0)).eval()
    conv = model.mixed3b_1x1_pre_relu_conv
    with torch.no_grad():
        for unit, (w0, w5) in ((1, (1.5, -0.8)), (2, (-0.6, 1.2))):
            conv.weight[unit] = 0.0
            conv.weight[unit, 0, 0, 0], conv.weight[unit, 5, 0, 0] = w0, w5
    images = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        labels = model(images).argmax(1)
    report = ce.replace_curve_detectors(
        model,
        (images, labels, ["a", "b", "c"]),
        fit_images=torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(4)),
        curve_classes=["a"],
        source_detectors=[detector(0, 0.0), detector(5, 180.0)],
        target_detectors=[detector(1, 0.0), detector(2, 0.0)],
    )
    assert report.original_accuracy == 1.0 and report.curve_inputs_only.after == 1.0
    assert min(report.curve_inputs_r2) > 0.999 and min(report.fit_r2) < 0.99
    rows = report.table()
    assert rows[-1]["curve_inputs_only"] == 1.0 and set(rows[0]) >= {"hand_built", "curve_inputs_only"}
    assert "own weights from the same curve units" in str(report)
    assert report.summary()["accuracy"]["curve_inputs_only"] == 1.0
