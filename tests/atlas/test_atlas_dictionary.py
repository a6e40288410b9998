"""The dictionary part: sparse-autoencoder features of a layer as atlas units, and the circuit neighbourhood."""

import re

import pytest
import torch

from circuits_vision import atlas
from circuits_vision.analysis import dictionary
from circuits_vision.atlas import analyses, dictionary_units, store
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.neighbourhood import NEGATIVE, POSITIVE, neighbourhood_svg

FEATURE_LAYER = "mixed3b/dictionary"


def _features(out):
    return {r["unit"]: r for r in store.read_jsonl(out / "manifest.jsonl") if r["layer"] == FEATURE_LAYER}


def _feature_acts(tiny, found):
    """``[scenes, h, w, F]`` the features on the example scenes, computed here from the saved dictionary."""
    from circuits_vision.stimuli.scenes import scene_batches

    acts = dictionary.activations(
        tiny, "mixed3b", scene_batches(analyses.EXAMPLE_SCENES, analyses.EXAMPLE_SEED, size=32)
    )
    return found.encode(acts).reshape(analyses.EXAMPLE_SCENES, -1, found.n_features)


def test_every_live_feature_is_a_unit_with_its_examples_and_strongest_neurons(tiny, dictionary_atlas):
    out, _ = dictionary_atlas
    state = torch.load(out / "dictionary" / "mixed3b.pt", weights_only=True)  # plain tensors and numbers
    found = dictionary.Dictionary.load(out / "dictionary" / "mixed3b.pt")
    assert torch.equal(state["directions"], found.directions) and found.n_features == 24
    f = _feature_acts(tiny, found)  # [scenes, positions, F]
    live = sorted(int(i) for i in torch.nonzero(f.amax((0, 1)) > 0).flatten())
    records = _features(out)
    assert 0 < len(live) <= 24 and sorted(records) == live
    peaks = f.amax(1)  # [scenes, F] spatial max per scene
    for unit, record in records.items():
        assert record["dictionary_of"] == "mixed3b" and (out / record["image"]).is_file()
        top = peaks[:, unit].sort(descending=True).values[: len(record["examples"]["values"])]
        assert record["examples"]["values"] == pytest.approx(top.tolist(), abs=2e-3)
        assert (out / record["examples"]["image"]).is_file()
        d = found.directions[unit]
        assert [n["unit"] for n in record["neurons"]] == d.abs().argsort(descending=True)[:6].tolist()
        assert record["neurons"][0]["weight"] == pytest.approx(float(d[record["neurons"][0]["unit"]]), abs=1e-4)
        assert record["frequency"] == pytest.approx(float((f[..., unit] > 0).float().mean()), abs=1e-5)
        assert record["polysemanticity"]["layer"] == FEATURE_LAYER


def test_feature_pages_link_neurons_and_the_comparison_counts_cleaner_features(dictionary_atlas):
    out, _ = dictionary_atlas
    records = _features(out)
    index = (out / "index.html").read_text()
    layer_page = f"layers/{slug(FEATURE_LAYER)}.html"
    assert f'href="{layer_page}"' in index and 'href="dictionary/mixed3b.html"' in index
    assert f"{len(records)} units" in (out / layer_page).read_text()
    unit, record = next(iter(records.items()))
    page = (out / record["page"]).read_text()
    assert f"<h1>{FEATURE_LAYER}:{unit}</h1>" in page and 'id="neurons"' in page
    for neuron in record["neurons"]:  # every strongest neuron links to its page, in the table and the graph
        assert page.count(f'href="../../units/mixed3b/{neuron["unit"]}.html"') == 2
    edges = re.findall(r'<line class="edge input (positive|negative)', page)
    assert edges == ["positive" if n["weight"] > 0 else "negative" for n in record["neurons"]]
    neuron_scores = {
        int(u): v["score"]
        for u, v in store.read_json(out / "analysis" / "mixed3b.polysemanticity.json", fix="").items()
    }
    cleaner = sorted(
        u for u, r in records.items() if r["polysemanticity"]["score"] < min(neuron_scores[n] for n in r["covering"])
    )
    assert sorted(u for u, r in records.items() if r["cleaner"]) == cleaner
    assert all(r["covering"] == [n["unit"] for n in r["neurons"][:3]] for r in records.values())
    comparison = (out / "dictionary" / "mixed3b.html").read_text()
    assert f"covering neurons</th><td>{len(cleaner)} of {len(records)}</td>" in comparison
    strongest = sum(r["polysemanticity"]["score"] < neuron_scores[r["neurons"][0]["unit"]] for r in records.values())
    assert f"(largest decoder weight)</th><td>{strongest} of {len(records)}</td>" in comparison
    assert comparison.count('<rect class="features"') == 10 and 'id="scores"' in comparison


def test_a_rerun_loads_the_dictionary_and_other_settings_train_it_again(tiny, dictionary_atlas, build_with_dictionary):
    out, _ = dictionary_atlas
    pt = out / "dictionary" / "mixed3b.pt"
    before, pages = pt.stat().st_mtime_ns, sorted(_features(out))
    messages = []
    build_with_dictionary(tiny, out, messages, dictionary_features=24)
    assert pt.stat().st_mtime_ns == before and sorted(_features(out)) == pages
    assert not any("trained with other settings" in m or "rendered" in m for m in messages)
    messages = []
    build_with_dictionary(tiny, out, messages, dictionary_features=12)
    assert any("trained with other settings" in m for m in messages)
    assert dictionary.Dictionary.load(pt).n_features == 12
    assert max(_features(out)) < 12
    left = [p.name for p in (out / "img" / slug(FEATURE_LAYER)).iterdir()]
    assert all(int(name.split(".")[0]) < 12 for name in left)  # the old dictionary's images are gone
    # and a run that does not ask for the part still shows it
    atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        out,
        steps=2,
        size=32,
        progress=False,
        report=False,
        parts=["inputs"],
        config=atlas.AtlasConfig(
            chunk_size=8, log=messages.append, dictionary_features=12, dictionary_options={"steps": 300, "l1": 0.05}
        ),
    )
    assert len(_features(out)) > 0


def test_bad_dictionary_settings_are_named():
    with pytest.raises(ValueError, match="dictionary_options: unknown \\['steps_'\\]"):
        atlas.AtlasConfig(dictionary_options={"steps_": 3})
    with pytest.raises(ValueError, match="dictionary_features"):
        atlas.AtlasConfig(dictionary_features=0)
    assert atlas.AtlasConfig(dictionary_layers="mixed3b").dictionary_layers == ("mixed3b",)
    assert dictionary_units.feature_layer("mixed3b") == FEATURE_LAYER


def test_neuron_pages_draw_their_weight_links_coloured_by_the_net_weight(tiny, full_atlas):
    from circuits_vision import expanded_weights

    page = (full_atlas / "units" / "mixed3b" / "0.html").read_text()
    record = next(
        r for r in store.read_jsonl(full_atlas / "manifest.jsonl") if (r["layer"], r["unit"]) == ("mixed3b", 0)
    )
    net = expanded_weights(tiny, "mixed3a", "mixed3b")[0].sum((1, 2))  # [104] net weight of each mixed3a unit
    expected = ["positive" if float(net[link["unit"]]) > 0 else "negative" for link in record["inputs"]]
    assert re.findall(r'<line class="edge input (positive|negative)', page) == expected
    for link in record["inputs"]:
        assert f'<a class="node input" href="../../units/mixed3a/{link["unit"]}.html">' in page


def test_the_neighbourhood_escapes_names_and_links_only_known_units():
    hostile = '<script>alert("x")</script>'
    svg = neighbourhood_svg(
        hostile,
        [
            {"layer": hostile, "unit": 1, "strength": 2.0, "sign": -0.5},
            {"layer": "a", "unit": 2, "strength": 1.0, "sign": None},
        ],
        [{"layer": "b", "unit": 3, "strength": 1.0, "sign": 1.0}],
        lambda layer, unit: f"u/{unit}.html" if layer == "b" else None,
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<a ") == 1 and 'href="u/3.html"' in svg
    widths = [float(w) for w in re.findall(r'stroke-width="([0-9.]+)"', svg)]
    assert widths == [5.0, 3.0, 3.0]  # 1 + 4 x strength / strongest
    assert f'stroke="{NEGATIVE}"' in svg and f'stroke="{POSITIVE}"' in svg and 'stroke="#999999"' in svg


def test_a_small_atlas_pages_the_most_often_active_features(tiny, tmp_path):
    out = tmp_path / "small"
    atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        out,
        steps=2,
        size=32,
        progress=False,
        report=False,
        units_per_layer=4,
        parts=["dictionary"],
        config=atlas.AtlasConfig(
            chunk_size=8, log=lambda m: None, dictionary_features=24, dictionary_options={"steps": 300, "l1": 0.05}
        ),
    )
    found = dictionary.Dictionary.load(out / "dictionary" / "mixed3b.pt")
    frequency = (_feature_acts(tiny, found) > 0).float().mean((0, 1))  # [F]
    assert sorted(_features(out)) == sorted(frequency.argsort(descending=True)[:4].tolist())
    assert "active on at least 4 / 16 / 64 training positions" in (out / "dictionary" / "mixed3b.html").read_text()
