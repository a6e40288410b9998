"""Three views side by side, and equivariant circuits against shuffled angles, on planted ground truth."""

from __future__ import annotations

import math

import pytest
import torch

from circuits_vision.analysis import equivariance as eq
from circuits_vision.analysis.equivariance import agreement, circuits
from circuits_vision.models import planted
from circuits_vision.weights import expanded_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted_curves():
    pm = planted.curve_circuit()
    edges = eq.report(pm.model, "edges")
    curves = eq.report(pm.model, "curves", source="edges", source_families=edges.families)
    bright = next(f for f in edges.families if pm.truth["edges"]["polarity"][f.members[0]] == "bright")
    return pm, bright, curves, expanded_weights(pm.model, "edges", "curves")


def test_weights_and_tuning_agree_on_the_planted_curves(planted_curves):
    pm, _, curves, _ = planted_curves
    tuning = eq.report(pm.model, "curves", method="tuning", steps=36)
    result = agreement.views(pm.model, "curves", results={"weights": curves, "tuning": tuning})
    (ag,) = result.agreements
    assert ag.jaccard == 1.0 and len(ag.shared) == 8
    assert ag.median_error_deg <= 10.0 and ag.shuffled_median_deg >= 60.0 and ag.p_value < 0.05
    rows = result.table()
    assert len(rows) == 8 and all(r["weights_family"] == 0 and r["tuning_family"] == 0 for r in rows)
    assert "Jaccard 1.00" in str(result)
    assert result.membership(0)["tuning"][0] == 0


def test_views_that_disagree_on_angles_score_like_the_shuffled_baseline(planted_curves):
    _, _, curves, _ = planted_curves
    fam = curves.families[0]
    g = torch.Generator().manual_seed(1)
    scrambled = torch.randperm(len(fam.members), generator=g)
    other = eq.Family(
        "rotation",
        fam.members,
        {u: fam.values[fam.members[int(k)]] for u, k in zip(fam.members, scrambled)},
        fam.reference,
        360.0,
        fam.score,
    )
    fake = eq.EquivarianceResult("rotation", "curves", None, "tuning", families=[other])
    ag = agreement.agree(curves, fake, "weights", "shuffled")
    assert ag.jaccard == 1.0 and ag.median_error_deg > 30.0 and ag.p_value > 0.05


def test_views_need_two_known_views(planted_curves):
    pm = planted_curves[0]
    with pytest.raises(ValueError, match="which must name"):
        agreement.views(pm.model, "curves", which=("weights", "dreams"))


def test_planted_circuit_beats_its_shuffled_angle_null(planted_curves):
    pm, bright, curves, weights = planted_curves
    result = circuits.circuit(
        pm.model, "edges", "curves", curves.families[0], source_family=bright, weights=weights, shuffles=49
    )
    assert result.score > 0.95 and result.p_value == pytest.approx(1 / 50)
    assert float(result.null_scores.max()) < 0.6 and result.effect_size > 3
    assert result.reduction == pytest.approx(4.0)
    rows = result.table()
    assert len(rows) == 8 and any(r["outside_null"] for r in rows)
    assert "score" in str(result) and repr(result).startswith("CircuitResult(")


def test_circuit_with_only_a_downstream_family_uses_tuning_orientations(planted_curves):
    pm, _, curves, weights = planted_curves
    result = circuits.circuit(pm.model, "edges", "curves", curves.families[0], weights=weights, shuffles=19)
    assert result.upstream == "tuning" and len(result.source_family) >= 2
    assert all(not math.isnan(v) for v in result.source_family.values.values())
    with pytest.raises(ValueError, match="rotation family"):
        circuits.circuit(pm.model, "edges", "curves", eq.Family("scale", [0, 1], {0: 0.0, 1: 1.0}, 0, None, 1.0))


def test_weights_vs_tuning_decides_by_false_discovery_rate_by_default():
    pm = planted.curve_circuit()
    found = eq.weights_vs_tuning(pm.model, "curves", source="edges", source_families="auto", steps=36)
    settings = found["report"].settings
    assert settings.threshold is None and settings.alpha == 0.05 and settings.null == "scramble"
    assert found["jaccard"] == 1.0 and found["family"] is not None and found["family"].q_value < 0.05
    # strong pairs are the significant ones (all 28 pairs of the planted family), their angles agree
    assert found["strong_pairs"] == 28 and found["strong_pair_median_error_deg"] <= 5.0
    assert found["pair_median_error_deg"] <= 5.0 and found["pair_null_median_deg"] >= 60.0
    fixed = eq.weights_vs_tuning(
        pm.model, "curves", source="edges", source_families="auto", steps=36, threshold=0.5, pair_threshold=0.5
    )
    assert fixed["report"].settings.threshold == 0.5 and fixed["jaccard"] == 1.0
