"""reproduce(): each claim can both hold (a random InceptionV1 with it planted at its published units)
and fail (plain random weights); models without the layers get "not applicable"; the store resumes."""

from __future__ import annotations

import json

import pytest
import torch
from planted_inceptionv1 import ECHO_UNIT, plant_equivariant_circuit, planted_inceptionv1
from torch import nn

import circuits_vision as cv
from circuits_vision import claims
from circuits_vision.claims import FAILS, HOLDS, NOT_APPLICABLE, ClaimResult, store
from circuits_vision.claims.registry import CLAIMS
from circuits_vision.claims.report import Reproduction, render_html
from circuits_vision.cli import main

SIZE = 64
PLANTED = (
    "curve_detectors",
    "curve_circuits",
    "branch_bw_mixed3a_5x5",
    "branch_curves_mixed3b_5x5",
    "equivariance_mixed3b_curves",
    "high_low_frequency_factors",
    "curve_vs_line_mixed3b",
    "weight_banding_mixed5b",
    "curve_echo",
    "high_low_frequency_sides",
    "early_vision_mixed3a_bw_vs_color",
    "early_vision_mixed3b_curves",
    "early_vision_conv2d0_color_contrast",
    "early_vision_conv2d0_gabor_filters",
)


def random_inceptionv1(seed: int = 0):
    return cv.models.inceptionv1(generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def planted_report():
    return cv.reproduce(planted_inceptionv1(SIZE), size=SIZE, progress=False)


@pytest.fixture(scope="module")
def random_report():
    return cv.reproduce(random_inceptionv1(), size=SIZE, progress=False)


def test_every_claim_runs(planted_report):
    inception = [name for name, c in CLAIMS.items() if c.suite == "inceptionv1"]
    assert [r.claim for r in planted_report.results] == inception == claims.available_claims()
    assert len(inception) >= 24
    assert claims.available_claims("shapes") == [n for n, c in CLAIMS.items() if c.suite == "shapes"]


def test_every_verdict_states_its_null(planted_report, random_report):
    for report in (planted_report, random_report):
        for result in report.results:
            if result.verdict == NOT_APPLICABLE:
                continue
            assert result.null, result.claim
            for null in result.numbers.get("nulls", []):
                assert 0 <= null["p_value"] <= 1 and null["statistic"], (result.claim, null)
    # Every claim that holds on the planted model beat a null at p < 0.01 (or, for the echo, cleared noise).
    for name in PLANTED:
        nulls = planted_report[name].numbers["nulls"]
        assert nulls and all(n["p_value"] < 0.01 for n in nulls), (name, planted_report[name].null)


@pytest.mark.parametrize("name", PLANTED)
def test_planted_claims_hold(planted_report, name):
    result = planted_report[name]
    assert result.verdict == HOLDS, str(result)


def test_planted_numbers(planted_report):
    curves = planted_report["curve_detectors"].numbers
    assert curves["fraction_detected"] >= 0.9
    assert curves["median_error_deg"] < 15  # written at the published angles
    assert set(planted_report["curve_circuits"].numbers["ranks"].values()) == {1}  # 379 <- 147 strongest, ...
    bw = planted_report["branch_bw_mixed3a_5x5"].numbers
    assert bw["recall"] == 1.0 and bw["p_value"] < 1e-3
    family = planted_report["early_vision_mixed3b_curves"].numbers
    assert family["recall"] >= 0.9  # the planted family is found; the other published lists are not planted
    frequency = planted_report["high_low_frequency_factors"].numbers
    assert frequency["top_high"] == [119, 102, 123, 90, 173]  # in the published coefficient order
    assert frequency["overlap_low"] == 5
    rotation = planted_report["equivariance_mixed3b_curves"].numbers
    assert rotation["fraction"] >= 6 / 7 and rotation["median_angle_error_deg"] < 15
    echo = planted_report["curve_echo"].numbers
    assert echo["unit"] == ECHO_UNIT and set(echo["opposite_units"]) >= {95, 145}
    assert echo["z_before"] < 2 < echo["z_after"] and echo["echo_after"] > echo["echo_before"] + 0.1
    sides = planted_report["high_low_frequency_sides"].numbers
    assert sides["median_correlation"] < -0.5  # written at the top and bottom rows of the 3x3 kernels
    bw = planted_report["early_vision_mixed3a_bw_vs_color"].numbers
    assert bw["recall"] == 1.0 and set(bw["published"]) <= set(bw["found"])
    # conv2d0: planted at the members outside the relays' silent LRN neighbourhoods (20 of 27, 17 of 28).
    colour = planted_report["early_vision_conv2d0_color_contrast"].numbers
    assert colour["recall"] >= 20 / 27 and colour["precision"] >= 0.9
    gabor = planted_report["early_vision_conv2d0_gabor_filters"].numbers
    assert gabor["recall"] >= 17 / 28 - 1e-9 and gabor["precision"] == 1.0


# Not planted: the planted curve kernels have (almost) no net weight, so no cos-shaped weight pattern.
@pytest.mark.parametrize(
    "name",
    [
        "early_vision_conv2d2_curves",
        "early_vision_mixed3a_curves",
        "curve_weight_pattern",
        "early_vision_mixed3a_high_low_frequency",
        "early_vision_mixed3a_lines",
    ],
)
def test_claims_not_planted_fail(planted_report, name):
    assert planted_report[name].verdict == FAILS, str(planted_report[name])


def test_equivariant_circuit_not_planted_does_not_hold(planted_report):
    # Not written as a circuit, but each planted 3b kernel is the template of its orientation on its
    # partner's map, so some of the symmetry is there: short of "holds" (see the written circuit below).
    result = planted_report["equivariant_circuit_3a_3b"]
    assert result.verdict != HOLDS and result.numbers["score"] < 0.3, str(result)


def test_random_weights_fail_every_claim(random_report):
    assert {r.verdict for r in random_report.results} <= {FAILS, NOT_APPLICABLE}, str(random_report)
    assert random_report["curve_detectors"].numbers["fraction_detected"] < 0.5
    assert max(random_report["curve_circuits"].numbers["ranks"].values()) > 5
    banding = random_report["weight_banding_mixed5b"].numbers
    assert abs(banding["median_row_fraction"] - banding["noise_expectation"]) < 0.1


def test_report_prints_measured_beside_published(planted_report):
    result = planted_report["curve_circuits"]
    assert "379<-147" in result.published and "379<-147: 1" in result.measured
    assert "top 5" in result.rule and result.article.startswith("Curve Circuits")


def test_model_without_the_layers_is_not_applicable():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    report = cv.reproduce(model, size=SIZE, progress=False)
    assert {r.verdict for r in report.results} == {NOT_APPLICABLE}
    assert "mixed3b" in report["curve_detectors"].measured


def test_shipped_model_is_not_applicable():
    # The shipped model has mixed3a / mixed3b, but not InceptionV1's channels: the unit ids do not apply.
    report = cv.reproduce(cv.models.load("shapes"), size=SIZE, progress=False, suite="inceptionv1")
    assert {r.verdict for r in report.results} == {NOT_APPLICABLE}
    assert "channels, published 480" in report["curve_detectors"].measured


def test_wrong_width_is_not_applicable():
    # A layer with the published name but another width: the unit ids mean nothing there.
    class Narrow(nn.Module):
        def __init__(self):
            super().__init__()
            self.mixed3a = nn.Conv2d(3, 16, 3, padding=1)
            self.mixed3b = nn.Conv2d(16, 32, 3, padding=1)

        def forward(self, x):
            return self.mixed3b(self.mixed3a(x))

    result = cv.reproduce(Narrow(), "curve_circuits", size=SIZE, progress=False)["curve_circuits"]
    assert result.verdict == NOT_APPLICABLE
    assert "mixed3a (16 channels, published 256)" in result.measured


def test_store_resumes_and_keys_by_weights(tmp_path, monkeypatch):
    model = random_inceptionv1()
    first = cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE, progress=False)
    records = list((tmp_path / "records").glob("curve_circuits-*.json"))
    assert len(records) == 1
    calls = []
    original = CLAIMS["curve_circuits"]
    monkeypatch.setitem(
        CLAIMS,
        "curve_circuits",
        original.__class__(**{**original.__dict__, "check": lambda ctx: calls.append(1) or original.check(ctx)}),
    )
    again = cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE, progress=False)
    assert calls == [] and again["curve_circuits"] == first["curve_circuits"]
    with torch.no_grad():
        model.get_submodule("mixed3b_5x5_pre_relu_conv").weight.mul_(2)
    cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE, progress=False)
    assert calls == [1]  # other weights: measured again, in a record of their own
    assert len(list((tmp_path / "records").glob("curve_circuits-*.json"))) == 2
    cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE + 16, progress=False)
    assert calls == [1, 1]  # another size is another measurement
    monkeypatch.setattr(store, "RULES", store.RULES + 1)
    cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE + 16, progress=False)
    assert calls == [1, 1, 1]  # records made under other verdict rules are not reused


def test_corrupt_record_is_measured_again(tmp_path):
    model = random_inceptionv1()
    cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE, progress=False)
    record = next((tmp_path / "records").glob("*.json"))
    record.write_text("{half a reco")
    result = cv.reproduce(model, "curve_circuits", out=tmp_path, size=SIZE, progress=False)["curve_circuits"]
    assert result.verdict == FAILS and json.loads(record.read_text())["verdict"] == FAILS


def test_report_files(tmp_path, capsys):
    report = cv.reproduce(random_inceptionv1(), ["curve_circuits", "curve_d*"], out=tmp_path, size=SIZE)
    bar = capsys.readouterr().err
    assert "claims: 100%" in bar and "2/2" in bar
    data = json.loads(report.json_path.read_text())
    assert [c["claim"] for c in data["claims"]] == ["curve_detectors", "curve_circuits"]
    assert data["counts"]["fails"] == 2 and data["fingerprint"] == report.fingerprint
    page = report.html_path.read_text()
    assert "curve_circuits" in page and "379&lt;-147" in page
    assert not list(tmp_path.rglob("*.tmp"))
    # One figure per claim, linked from the page: the measurement beside the null it was tested against.
    for name in ("curve_detectors", "curve_circuits"):
        png = tmp_path / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
        assert f'src="figures/{name}.png"' in page
    assert "each partner a random one of the 256 inputs" in data["claims"][1]["null"] and "p = " in page


def test_html_escapes():
    bad = ClaimResult("x", "<script>alert(1)</script>", "f", "p & q", "<b>m</b>", FAILS, "r")
    page = render_html(Reproduction([bad], "abc", 64), "<title>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;m" in page and "p &amp; q" in page


def test_bad_input():
    with pytest.raises(ValueError, match="no claim matches.*known claims"):
        cv.reproduce(random_inceptionv1(), "curve_detectorz", progress=False)
    with pytest.raises(TypeError, match="nn.Module"):
        cv.reproduce("inception5h.pth")
    with pytest.raises(ValueError, match="at least 32"):
        cv.reproduce(random_inceptionv1(), size=8)
    with pytest.raises(ValueError, match="verdict must be one of"):
        ClaimResult("x", "a", "f", "p", "m", "maybe", "r")


def test_cli(tmp_path, capsys):
    factory = tmp_path / "random_inception.py"
    factory.write_text(
        "import torch\nimport circuits_vision as cv\n\ndef model():\n"
        "    return cv.models.inceptionv1(generator=torch.Generator().manual_seed(0))\n"
    )
    out = tmp_path / "out"
    assert (
        main(
            ["reproduce", "--model", str(factory), "--claims", "curve_circuits", "--out", str(out), "--size", str(SIZE)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "curve_circuits" in printed and "fails" in printed and "report.html" in printed
    assert (out / "report.html").is_file() and (out / "report.json").is_file()
    assert main(["reproduce", "--model", str(factory), "--claims", "nope", "--out", str(out)]) == 2
    assert "no claim matches" in capsys.readouterr().err


def test_weight_pattern_holds_when_written():
    # Each mixed3b curve unit reads every published mixed3a curve unit with weight cos(orientation difference).
    model = random_inceptionv1()
    bottleneck = model.get_submodule("mixed3b_5x5_bottleneck_pre_relu_conv")
    conv = model.get_submodule("mixed3b_5x5_pre_relu_conv")
    sources = cv.models.facts.curve_orientations("mixed3a")
    with torch.no_grad():
        for k, unit in enumerate(sources):
            bottleneck.weight[k] = 0
            bottleneck.weight[k, unit] = 1
        for target, angle in cv.models.facts.curve_orientations("mixed3b").items():
            conv.weight[target - 320] = 0
            for k, source_angle in enumerate(sources.values()):
                conv.weight[target - 320, k, 2, 2] = float(torch.cos(torch.deg2rad(torch.tensor(angle - source_angle))))
    result = cv.reproduce(model, "curve_weight_pattern", size=SIZE, progress=False)["curve_weight_pattern"]
    assert result.verdict == HOLDS, str(result)
    assert result.numbers["correlation"] > 0.9 and result.numbers["p_value"] < 0.01


def test_equivariant_circuit_holds_when_written():
    model = plant_equivariant_circuit(random_inceptionv1())
    result = cv.reproduce(model, "equivariant_circuit_3a_3b", size=SIZE, progress=False)["equivariant_circuit_3a_3b"]
    assert result.verdict == HOLDS, str(result)
    assert result.numbers["score"] > 0.8 and result.numbers["nulls"][0]["p_value"] <= 0.01
    plain = cv.reproduce(random_inceptionv1(), "equivariant_circuit_3a_3b", size=SIZE, progress=False)
    assert plain["equivariant_circuit_3a_3b"].verdict == FAILS
    assert plain["equivariant_circuit_3a_3b"].numbers["score"] < 0.3


def test_unknown_suite():
    with pytest.raises(ValueError, match="suite must be one of"):
        cv.reproduce(random_inceptionv1(), suite="resnet", progress=False)
