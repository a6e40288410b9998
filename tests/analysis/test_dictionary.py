"""The sparse dictionary recovers planted superposed directions that no neuron holds."""

import pytest
import torch

from circuits_vision.analysis import dictionary
from circuits_vision.models.superposition import sparse_codes, superposition


def data(seed: int = 1, batches: int = 8):
    g = torch.Generator().manual_seed(seed)
    return [sparse_codes(64, 32, g) for _ in range(batches)]  # 8 x 64 images x 64 positions = 32768 vectors


@pytest.fixture(scope="module")
def planted():
    """The planted superposition model (32 features in 12 neurons) and a 64-feature dictionary of it."""
    model = superposition(n_features=32, n_neurons=12, seed=0)
    return model, dictionary.train(model, "neurons", data(), n_features=64, seed=0)


def test_the_dictionary_recovers_the_planted_directions_where_neurons_cannot(planted):
    model, found = planted
    planted = model.truth["directions"]  # [32, 12] unit vectors
    # a neuron is an axis of the 12-d space: the best neuron for each planted feature is a poor match
    neuron_match = planted.abs().max(1).values.mean()
    match = (planted @ found.directions.T).max(1).values  # best dictionary feature per planted feature
    assert neuron_match < 0.7 and match.mean() >= 0.9
    assert found.directions.shape == (64, 12)
    assert torch.allclose(found.directions.norm(dim=1), torch.ones(64), atol=1e-5)
    # sparse (about 1 feature is on per position in the data) and a faithful reconstruction
    assert found.l0 < 4 and found.fraction_unexplained < 0.2
    acts = dictionary.activations(model, "neurons", data(seed=2, batches=1))
    f = found.encode(acts)
    residual = ((found.decode(f) - acts) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum()
    assert float(residual) < 0.25  # on held-out codes too


def test_deterministic_from_the_seed_and_round_trips(tmp_path):
    model = superposition(seed=0)
    runs = [dictionary.train(model, "neurons", data(batches=2), n_features=40, steps=50, seed=s) for s in (3, 3, 4)]
    assert torch.equal(runs[0].directions, runs[1].directions)
    assert not torch.equal(runs[0].directions, runs[2].directions)
    path = runs[0].save(tmp_path / "d.pt")
    again = dictionary.Dictionary.load(path)
    assert torch.equal(again.directions, runs[0].directions) and again.layer == "neurons"
    assert again.strongest_neurons(0, 2)[0][0] == int(runs[0].directions[0].abs().argmax())
    assert "features=40" in repr(again)


def test_bad_input():
    model = superposition(seed=0)
    with pytest.raises(ValueError, match="n_features"):
        dictionary.train(model, "neurons", data(batches=1), n_features=0)
    with pytest.raises(ValueError, match="zero on every position"):
        dictionary.train(model, "neurons", [torch.zeros(2, 32, 8, 8)], n_features=4, steps=1)
    with pytest.raises(TypeError, match="data must yield"):
        dictionary.train(model, "neurons", ["not a tensor"], n_features=4, steps=1)
    with pytest.raises(ValueError, match="n_neurons < n_features"):
        superposition(n_features=8, n_neurons=8)


# --- dead-feature resampling, the feature layer, neurons vs features ----------------------------------------


@pytest.fixture(scope="module")
def shipped_mixed3b():
    """The shipped model and its mixed3b activations on 256 example scenes (16384 vectors)."""
    from circuits_vision import models
    from circuits_vision.stimuli.scenes import scene_batches

    model = models.load("shapes").eval()
    return model, dictionary.activations(model, "mixed3b", scene_batches(256, 2_000_029, size=64))


@pytest.mark.slow
def test_resampling_revives_dead_features_on_the_shipped_mixed3b(shipped_mixed3b):
    model, acts = shipped_mixed3b
    runs = {
        r: dictionary.train(model, "mixed3b", acts, n_features=640, steps=800, batch_size=512, seed=0, resample=r)
        for r in (0, 3)
    }
    plain, resampled = runs[0], runs[3]
    assert plain.resampled == [] and plain.alive_before_resampling is None
    # measured on the shipped checkpoint: 135 dead features without resampling, 47 with (505 and 593 alive); the
    # layer has 160 neurons
    assert resampled.dead <= 0.5 * plain.dead and resampled.alive > plain.alive, (plain, resampled)
    assert [r["step"] for r in resampled.resampled] == dictionary.resample_steps(800, 3) == [200, 400, 600]
    assert sum(r["dead"] for r in resampled.resampled) > 0
    assert all(r["alive"] + r["dead"] == 640 for r in resampled.resampled)
    # reconstruction is not bought with the revived features: FVU stays close
    assert resampled.fraction_unexplained < plain.fraction_unexplained + 0.05
    assert resampled.alive == dictionary.quality(resampled, acts)["alive"]  # the final count is on all vectors


def test_the_attached_feature_layer_reads_the_encoder_and_leaves_the_model_as_it_was(tmp_path):
    from circuits_vision import hooks

    model = superposition(seed=0)
    found = dictionary.train(model, "neurons", data(batches=2), n_features=40, steps=50, seed=0)
    names = hooks.layer_names(model)
    codes = data(seed=5, batches=1)[0][:4]
    with dictionary.attached(model, found) as name:
        assert name == "neurons.dictionary"
        out = hooks.run_with_cache(model, codes, [name, "neurons"])
        assert out[name].shape == (4, 40, 8, 8)
        expected = found.encode(out["neurons"].permute(0, 2, 3, 1).reshape(-1, 12)).reshape(4, 8, 8, 40)
        assert torch.allclose(out[name].permute(0, 2, 3, 1), expected, atol=1e-5)
        with pytest.raises(ValueError, match="already"):
            with dictionary.attached(model, found):
                pass
    assert hooks.layer_names(model) == names and not model.neurons._forward_hooks
    path = found.save(tmp_path / "d.pt")
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, moved into place
    state = torch.load(path, weights_only=True)
    assert state["resample"] == 3 and torch.equal(state["encoder"], found.encoder)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no saved Dictionary"):
        dictionary.Dictionary.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="resample"):
        dictionary.train(model, "neurons", data(batches=1), n_features=4, steps=1, resample=-1)


def test_comparison_counts_features_cleaner_than_their_covering_neurons():
    from circuits_vision.analysis.dictionary_comparison import compare, covering_neurons

    directions = torch.tensor([[0.8, 0.6, 0.0, 0.0], [0.0, 0.0, 0.6, -0.8], [0.6, 0.0, 0.0, 0.8]])
    found = dictionary.Dictionary(
        layer="l",
        directions=directions,
        encoder=directions.clone(),
        encoder_bias=torch.zeros(3),
        decoder_bias=torch.zeros(4),
        scale=1.0,
        l1=0.1,
        seed=0,
        fraction_unexplained=0.25,
        l0=1.5,
        dead=0,
    )
    assert covering_neurons(found, 0, 2) == [0, 1] and covering_neurons(found, 1, 2) == [3, 2]
    neurons = {0: 0.9, 1: 0.4, 2: 0.1, 3: 0.7}
    result = compare(found, {0: 0.3, 1: 0.2, 2: 0.0}, neurons, cover=2)
    # feature 0: 0.3 < min(0.9, 0.4); feature 1: 0.2 > min(0.7, 0.1); feature 2 covers 3 and 0: 0.0 < 0.7
    assert result.cleaner == [0, 2] and result.uncovered == [] and result.compared == 3
    assert result.table()[1] == {
        "feature": 1,
        "score": 0.2,
        "covering": [3, 2],
        "cleanest_covering": 0.1,
        "cleaner": False,
    }
    partial = compare(found, {0: 0.3, 1: 0.2}, {0: 0.9}, cover=2)
    assert partial.cleaner == [] and partial.uncovered == [0, 1] and partial.compared == 0
    assert "0 of 0 features are cleaner" in str(partial)
    with pytest.raises(ValueError, match="outside"):
        compare(found, {7: 0.1}, neurons)


def test_comparison_shows_the_planted_directions_recovered_by_the_dictionary_not_the_neurons(planted):
    from circuits_vision.analysis.dictionary_comparison import compare

    model, found = planted
    result = compare(found, truth=model.truth["directions"])
    planted = model.truth["directions"]
    assert result.planted["dictionary"] == pytest.approx(float((planted @ found.directions.T).max(1).values.mean()))
    assert result.planted["dictionary"] >= 0.9 and result.planted["neurons"] < 0.7
    assert "planted directions recovered" in str(result) and result.summary()["planted_dictionary"] >= 0.9
