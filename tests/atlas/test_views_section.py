"""The three views of a layer in the circuit report and on unit pages, on planted curves and the tiny atlas."""

from __future__ import annotations

import json
import math

import pytest
import torch

from circuits_vision.analysis import equivariance as eq
from circuits_vision.atlas import store, views_section
from circuits_vision.models import planted


def arc_image(size: int, angle_deg: float) -> torch.Tensor:
    """A bright arc and a dark blob off-axis, turned by ``angle_deg`` (counter-clockwise, y up): [3, size, size]."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    xx, yy = x[None, :], -x[:, None]
    a = math.radians(angle_deg)
    u, v = (xx * math.cos(a) + yy * math.sin(a)) / 3, (-xx * math.sin(a) + yy * math.cos(a)) / 3
    arc = torch.exp(-((torch.hypot(u + 3, v) - 3) ** 2) / 2.0) * torch.exp(-(v**2) / 8)
    blob = torch.exp(-((u + 1) ** 2 + (v - 2.5) ** 2) / 2.0)
    pattern = (arc - 0.8 * blob) * torch.exp(-(u**2 + v**2) / 40)
    colour = torch.tensor([0.9, 0.3, 0.1], dtype=torch.float64)[:, None, None]
    return (0.5 + 0.45 * colour * pattern).clamp(0, 1).float()


@pytest.fixture(scope="module")
def planted_views(tmp_path_factory):
    """The planted curve family seen three ways; the "atlas" holds rendered-looking arcs at the true angles."""
    pm = planted.curve_circuit()
    atlas_dir = tmp_path_factory.mktemp("atlas")
    for unit, angle in pm.truth["curves"]["orientation_deg"].items():
        store.save_png(atlas_dir / "img" / "curves" / f"{unit}.png", arc_image(99, angle))
    weights = eq.report(pm.model, "curves", source="edges", source_families="auto")
    out = tmp_path_factory.mktemp("report")
    html = views_section.section_html(pm.model, "curves", out, weights=weights, source="edges", atlas_dir=atlas_dir)
    return pm, out, html


def test_every_view_finds_the_planted_family_and_they_agree(planted_views):
    pm, out, html = planted_views
    content = json.loads((out / views_section.file_name("curves")).read_text())
    assert content["families"] == {"weights": [8], "tuning": [8], "visualization": [8]}
    truth = pm.truth["curves"]["orientation_deg"]
    assert set(content["units"]) == {str(u) for u in truth}
    for view in views_section.VIEWS:  # the angles of each view match the truth up to one offset
        angles = {int(u): entry[view]["angle"] for u, entry in content["units"].items()}
        assert eq.orientation_error(angles, truth) <= 10.0, view
    for ag in content["agreements"]:
        assert ag["jaccard"] == 1.0 and ag["shared"] == 8
        assert ag["median_error_deg"] <= 10.0 and ag["shuffled_median_deg"] >= 60.0 and ag["p_value"] < 0.05
    assert [(a["a"], a["b"]) for a in content["agreements"]] == [
        ("weights", "tuning"),
        ("weights", "visualization"),
        ("tuning", "visualization"),
    ]
    assert 'id="views-curves"' in html and "the atlas&#x27;s renders of 8 units" in html
    assert html.count("<td>1.00</td>") == 3 and html.count("family 0 at") == 24
    # the planted curves are rotated copies through their own wiring: the layer null keeps their family
    assert "1 family (8 units) made by curves's own wiring" in html


def test_unit_pages_say_which_view_puts_the_unit_in_which_family(planted_views):
    pm, out, _ = planted_views
    manifest = [{"layer": "curves", "unit": u} for u in range(8)] + [{"layer": "edges", "unit": 0}]
    views_section.attach(out / "index.html", manifest)
    assert "views" not in manifest[-1]  # no memberships file for that layer: left alone
    record = manifest[3]["views"]
    assert [record[v]["family"] for v in views_section.VIEWS] == [0, 0, 0]
    assert all(record[v]["size"] == 8 for v in views_section.VIEWS)
    text = views_section.unit_html(record)
    for view in views_section.VIEWS:
        assert f"by {view}: family 0 (8 units) at {record[view]['angle']}&deg;" in text
    assert "weights vs tuning: Jaccard 1.00" in text
    assert "not computed" in views_section.unit_html(None)


def test_a_unit_in_no_family_says_how_many_the_view_found():
    value = {
        "weights": None,
        "tuning": {"family": 1, "angle": 45.0, "size": 4},
        "visualization": None,
        "*": {"agreements": [], "families": {"weights": [5], "tuning": [3, 4], "visualization": []}},
    }
    text = views_section.unit_html(value)
    assert "by weights: in no family (that view found 1)" in text
    assert "by tuning: family 1 (4 units) at 45.0&deg;" in text
    assert "by visualization: in no family (that view found none)" in text


def test_a_damaged_memberships_file_is_named(tmp_path):
    (tmp_path / views_section.file_name("curves")).write_text("[1, 2]")
    with pytest.raises(store.CorruptAtlasFileError, match="views_curves.json"):
        views_section.attach(tmp_path / "index.html", [{"layer": "curves", "unit": 0}])


def test_the_atlas_report_and_unit_pages_carry_the_three_views(full_atlas):
    report = (full_atlas / "report" / "index.html").read_text()
    for layer in ("mixed3a", "mixed3b"):
        assert f'id="views-{layer}"' in report and f"Three views of {layer}" in report
        content = json.loads((full_atlas / "report" / views_section.file_name(layer)).read_text())
        assert content["views"] == list(views_section.VIEWS)
    assert report.count('-agreement"') == 2 and "the atlas&#x27;s renders of 12 units" in report
    assert 'id="views-mixed3a-agreement"' in report and 'id="views-mixed3b-agreement"' in report
    records = [json.loads(line) for line in (full_atlas / store.MANIFEST_FILE).read_text().splitlines()]
    for r in records:
        page = (full_atlas / r["page"]).read_text()
        assert '<td id="views">by weights: ' in page and "by tuning: " in page and "by visualization: " in page


def test_the_visualization_view_prefers_the_atlas_neuron_renders(tmp_path):
    # Channel renders of noise, neuron renders of the planted arcs: only the neuron renders hold the family.
    pm = planted.curve_circuit()
    generator = torch.Generator().manual_seed(0)
    for unit, angle in pm.truth["curves"]["orientation_deg"].items():
        store.save_png(tmp_path / "img" / "curves" / f"{unit}.png", torch.rand(3, 99, 99, generator=generator))
        store.save_png(tmp_path / "img" / "curves" / f"{unit}_neuron.png", arc_image(99, angle))
    units = sorted(pm.truth["curves"]["orientation_deg"])
    found, origin = views_section.layer_views(pm.model, "curves", source="edges", atlas_dir=tmp_path)
    assert "neuron objectives" in origin and f"renders of {len(units)} units" in origin
    assert [len(f) for f in found.views["visualization"].families] == [8]

    shown, channel = views_section.atlas_images(tmp_path, "curves", units, "channel")
    assert shown == units and channel.shape == (8, 3, 99, 99)
    with pytest.raises(ValueError, match="'channel' or 'neuron'"):
        views_section.atlas_images(tmp_path, "curves", units, "facets")


def test_the_layer_null_line_says_why_it_was_not_computed():
    pm = planted.curve_circuit()
    tuning = eq.report(pm.model, "edges", method="tuning", steps=36)
    html = views_section._inherited_html(pm.model, "edges", "curves", tuning, None)
    assert "Not computed: no parameters lie between &#x27;curves&#x27; and &#x27;edges&#x27;" in html
