"""The HTML templates: every substituted value is escaped unless it is markup made by a template."""

import pytest

from circuits_vision.atlas import viewer
from circuits_vision.atlas.templates import Safe, escape, html, join

HOSTILE = "<img src=x onerror=alert(1)>\"'&"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;"


def test_values_are_escaped_and_markup_from_templates_is_not():
    cell = html('<td title="{title}">{text}</td>', title=HOSTILE, text=HOSTILE)
    assert cell == f'<td title="{ESCAPED}">{ESCAPED}</td>' and isinstance(cell, Safe)
    row = html("<tr>{cell}</tr>", cell=cell)  # a template's result goes in as it is, not escaped twice
    assert row == f"<tr>{cell}</tr>"


def test_format_specs_apply_before_escaping_and_not_to_markup():
    assert html("{score:.3f} {count:>3}", score=0.12345, count=7) == "0.123   7"
    assert html("{a!r}", a="<b>") == "&#x27;&lt;b&gt;&#x27;"
    with pytest.raises(ValueError, match="format spec"):
        html("{m:.3f}", m=Safe("<b>1</b>"))


def test_join_and_concatenation_escape_plain_text():
    assert join([Safe("<b>1</b>"), "<2>"], ", ") == "<b>1</b>, &lt;2&gt;"
    assert Safe("<b>") + "<i>" == "<b>&lt;i&gt;" and isinstance(Safe("a") + "b", Safe)
    assert "<i>" + Safe("<b>") == "&lt;i&gt;<b>"
    assert escape(Safe("&rarr;")) == "&rarr;" and escape(3) == "3"


def test_every_value_a_unit_page_shows_is_escaped(tmp_path):
    """A manifest whose every text is hostile: no page holds it unescaped."""
    link = {"layer": "mixed3a", "unit": 1, "norm": 0.5, "picture": HOSTILE}
    record = {
        "layer": "mixed3b",
        "unit": 0,
        "image": HOSTILE,
        "page": "units/mixed3b/0.html",
        "label": HOSTILE,
        "loss": HOSTILE,
        "never_active": True,
        "branch": HOSTILE,
        "inputs": [link],
        "outputs": HOSTILE,
        "family": {
            "kind": "rotation",
            "family": HOSTILE,
            "size": HOSTILE,
            "angle": HOSTILE,
            "score": HOSTILE,
            "members": [0],
        },
        "tuning": {
            "curve_detector": True,
            "curve_family": [0],
            "curve_orientation": HOSTILE,
            "curve_peak": HOSTILE,
            "curve_vs_line": HOSTILE,
            "color_category": HOSTILE,
            "color_drive": HOSTILE,
            "bw_drive": HOSTILE,
            "orientation_selectivity": HOSTILE,
        },
        "examples": {"image": HOSTILE, "crops": HOSTILE, "values": [1.0], "labels": [HOSTILE]},
        "polysemanticity": {
            "score": HOSTILE,
            "n_clusters": HOSTILE,
            "previous": HOSTILE,
            "separation": HOSTILE,
            "label_entropy": HOSTILE,
            "note": HOSTILE,
            "clusters": [{"size": HOSTILE, "labels": [HOSTILE]}],
        },
        "facets": {"image": HOSTILE, "k": HOSTILE, "weight": HOSTILE, "similarity": HOSTILE},
    }
    other = {
        **record,
        "layer": "mixed3a",
        "unit": 1,
        "page": "units/mixed3a/1.html",
        "facets": HOSTILE,
        "examples": HOSTILE,
        "polysemanticity": HOSTILE,
        "tuning": HOSTILE,
        "family": HOSTILE,
    }
    settings = {"model": HOSTILE, "steps": HOSTILE, "report_error": HOSTILE, "weights_sha256": HOSTILE}
    viewer.write_viewer(tmp_path, [other, record], settings)
    pages = sorted(tmp_path.rglob("*.html"))
    assert len(pages) == 5  # index, two layers, two units
    for page in pages:
        text = page.read_text()
        assert "<img src=x" not in text and "\"'&<" not in text, page
    unit = (tmp_path / "units" / "mixed3b" / "0.html").read_text()
    assert unit.count(ESCAPED) >= 30  # each of those fields is shown, escaped


def test_fields_may_index_and_read_attributes_and_must_have_names():
    assert html("{a[k]} {b.real}", a={"k": "<"}, b=2) == "&lt; 2"
    with pytest.raises(ValueError, match="need a name"):
        html("{} units")  # a positional field is refused, not left empty
