"""The sparse dictionary recovers planted superposed directions that no neuron holds."""

import pytest
import torch

from circuits_vision.analysis import dictionary
from circuits_vision.models.superposition import sparse_codes, superposition


def data(seed: int = 1, batches: int = 8):
    g = torch.Generator().manual_seed(seed)
    return [sparse_codes(64, 32, g) for _ in range(batches)]  # 8 x 64 images x 64 positions = 32768 vectors


def test_the_dictionary_recovers_the_planted_directions_where_neurons_cannot():
    model = superposition(n_features=32, n_neurons=12, seed=0)
    planted = model.truth["directions"]  # [32, 12] unit vectors
    # a neuron is an axis of the 12-d space: the best neuron for each planted feature is a poor match
    neuron_match = planted.abs().max(1).values.mean()
    found = dictionary.train(model, "neurons", data(), n_features=64, seed=0)
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
