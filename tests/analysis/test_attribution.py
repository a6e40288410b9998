"""Attribution: exact on a linear model with hand-set weights, consistent between its entry points."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from circuits_vision.analysis import attribution as A
from circuits_vision.analysis import groups, semantic_dictionary


class PlantedLinear(nn.Module):
    """conv1 (3 -> 4, 3x3) -> conv2 (4 -> 3, 1x1) -> mean over positions -> fc (3 -> 2): linear end to end."""

    def __init__(self, bias: bool = False, relu: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 3, 1, bias=bias)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2, bias=bias)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv2(self.conv1(x)))).flatten(1))


def images(n=2, size=6, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def effective_logit_weights(model: PlantedLinear) -> torch.Tensor:
    """``[classes, C_conv1]``: d logit / d conv1 activation at any one position, times H*W."""
    return model.fc.weight @ model.conv2.weight[:, :, 0, 0]


@pytest.mark.parametrize("method", ["gradient", "integrated"])
def test_logit_attribution_on_a_linear_model_is_weight_times_activation_and_sums_to_the_logit(method):
    model = PlantedLinear().eval()
    x = images()
    attr = A.attribute(model, x, "conv1", 1, method=method, steps=3)
    acts = model.conv1(x).detach()
    per_position = effective_logit_weights(model)[1].view(1, -1, 1, 1) / (6 * 6)
    torch.testing.assert_close(attr.values, acts * per_position, rtol=1e-5, atol=1e-6)
    logits = model(x).detach()[:, 1]
    torch.testing.assert_close(attr.total, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attr.target_value, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attr.baseline_value, torch.zeros(2), rtol=0, atol=1e-6)
    assert attr.spatial.shape == (2, 6, 6) and attr.channel.shape == (2, 4)


def test_with_biases_integrated_gradients_explain_target_minus_baseline_exactly():
    model = PlantedLinear(bias=True).eval()
    x = images()
    attr = A.attribute(model, x, "conv1", 0, method="integrated", steps=2)
    with torch.no_grad():
        bias_only = float(model.fc.bias[0] + model.fc.weight[0] @ model.conv2.bias)
    torch.testing.assert_close(attr.baseline_value, torch.full((2,), bias_only), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attr.total, attr.target_value - attr.baseline_value, rtol=1e-5, atol=1e-5)


def test_unit_target_attribution_is_the_unit_weights_times_activation():
    model = PlantedLinear().eval()
    x = images()
    attr = A.attribute(model, x, "conv1", "conv2:2")
    acts = model.conv1(x).detach()
    expected = acts * model.conv2.weight[2, :, 0, 0].detach().view(1, -1, 1, 1)
    torch.testing.assert_close(attr.values, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attr.total, model.conv2(acts)[:, 2].sum((1, 2)).detach(), rtol=1e-5, atol=1e-5)


def test_direction_target_at_one_position_touches_only_that_position():
    model = PlantedLinear().eval()
    x = images()
    vector = torch.tensor([1.0, -2.0, 0.5])
    attr = A.attribute(model, x, "conv1", A.direction("conv2", vector, y=2, x=3))
    acts = model.conv1(x).detach()
    weights = (vector @ model.conv2.weight[:, :, 0, 0]).detach()
    expected = torch.zeros_like(acts)
    expected[:, :, 2, 3] = acts[:, :, 2, 3] * weights
    torch.testing.assert_close(attr.values, expected, rtol=1e-5, atol=1e-6)


def test_between_layers_gives_every_units_inputs_and_places_in_one_call():
    model = PlantedLinear().eval()
    x = images(n=3)
    result = A.between(model, x, "conv1", "conv2", units=[2, 0], batch_size=4)
    acts = model.conv1(x).detach()
    w = model.conv2.weight[:, :, 0, 0].detach()
    for j, u in enumerate([2, 0]):
        torch.testing.assert_close(result.channel[:, j], acts.sum((2, 3)) * w[u], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.spatial[:, j], (acts * w[u].view(1, -1, 1, 1)).sum(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        result.target_value, model.conv2(acts).sum((2, 3))[:, [2, 0]].detach(), rtol=1e-5, atol=1e-5
    )
    assert result.top_inputs(2, k=1, image=0)[0][0] == int(result.channel[0, 0].argmax())


@pytest.mark.parametrize("method", ["gradient", "integrated"])
def test_between_matches_attribute_unit_by_unit_on_a_nonlinear_model(method):
    model = PlantedLinear(bias=True, relu=True).eval()
    x = images(n=2)
    both = A.between(model, x, "conv1", "act", units=[0, 1], method=method, steps=4, position=(1, 4), batch_size=5)
    for j in range(2):
        one = A.attribute(model, x, "conv1", A.unit("act", j, y=1, x=4), method=method, steps=4)
        torch.testing.assert_close(both.channel[:, j], one.channel, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both.spatial[:, j], one.spatial, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both.target_value[:, j], one.target_value)
        torch.testing.assert_close(both.baseline_value[:, j], one.baseline_value)


def test_integrated_gradients_converge_to_completeness_where_gradient_times_activation_does_not():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    x = images(n=2, size=8)
    model(x)
    model.eval()
    gap = lambda a: float((a.total - (a.target_value - a.baseline_value)).abs().max())  # noqa: E731
    coarse = A.attribute(model, x, "1", 2, method="integrated", steps=1)
    fine = A.attribute(model, x, "1", 2, method="integrated", steps=64)
    scale = float(fine.target_value.abs().max())
    assert gap(fine) < 1e-3 * scale
    assert gap(fine) < gap(coarse)


def test_attribution_errors_name_the_problem():
    model = PlantedLinear().eval()
    x = images()
    with pytest.raises(ValueError, match="does not depend on layer 'conv2'"):
        A.attribute(model, x, "conv2", "conv1:0")
    with pytest.raises(ValueError, match="method must be one of"):
        A.attribute(model, x, "conv1", 0, method="saliency")
    with pytest.raises(ValueError, match="not 'layer:channel'"):
        A.attribute(model, x, "conv1", "conv2")
    with pytest.raises(IndexError, match="has 2 outputs"):
        A.attribute(model, x, "conv1", 5)
    with pytest.raises(ValueError, match="does not broadcast"):
        A.attribute(model, x, "conv1", 0, method="integrated", baseline=torch.zeros(5))
    with pytest.raises(IndexError, match="3 channels"):
        A.between(model, x, "conv1", "conv2", units=[3])


def test_attribution_tables_and_text():
    model = PlantedLinear().eval()
    attr = A.attribute(model, images(), "conv1", 1)
    rows = attr.table(k=2)
    assert len(rows) == 4 and rows[0]["channel"] == int(attr.channel[0].argmax())
    assert "gradient attribution of conv1 to logit 1" in str(attr)
    assert "Attribution(" in repr(attr)


# --- neuron groups and the semantic dictionary -------------------------------------------------------

D1 = torch.tensor([1.0, 0.5, 0.0, 0.0, 2.0])
D2 = torch.tensor([0.0, 0.2, 1.5, 1.0, 0.0])


class TwoGroups(nn.Module):
    """``layer`` = relu(image red) * D1 + relu(image green) * D2 at every position: exactly two groups,
    followed by a linear read-out ``out`` (channel sums weighted by ``READOUT``)."""

    READOUT = torch.tensor([[1.0, -1.0, 2.0, 0.5, 0.25]])

    def __init__(self):
        super().__init__()
        self.layer = nn.Conv2d(3, 5, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(5, 1, bias=False)
        with torch.no_grad():
            self.layer.weight.zero_()
            self.layer.weight[:, 0, 0, 0] = D1
            self.layer.weight[:, 1, 0, 0] = D2
            self.out.weight.copy_(self.READOUT)

    def forward(self, x):
        return self.out(self.pool(self.layer(x)).flatten(1))


def separable_images(n=1, size=8, seed=4):
    """Random images whose left columns have no green and right columns no red: every group has positions
    of its own, which makes the non-negative factorisation unique (up to scale)."""
    x = images(n, size, seed)
    x[:, 1, :, :2] = 0
    x[:, 0, :, -2:] = 0
    return x


def _cosine(a, b):
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_neuron_groups_recover_the_planted_directions_and_where_they_are():
    model = TwoGroups().eval()
    x = separable_images(n=1, size=8, seed=4)
    found = groups.neuron_groups(model, x[0], "layer", k=2)
    assert found.relative_error < 1e-3
    first = 0 if _cosine(found.directions[0], D1) > _cosine(found.directions[1], D1) else 1
    assert _cosine(found.directions[first], D1) > 0.999
    assert _cosine(found.directions[1 - first], D2) > 0.999
    # where group "D1" is present follows the red channel of the image
    assert _cosine(found.spatial[0, first].flatten(), x[0, 0].flatten()) > 0.999
    assert _cosine(found.spatial[0, 1 - first].flatten(), x[0, 1].flatten()) > 0.999
    assert found.top_units(first, k=1)[0][0] == 4


def test_neuron_group_attributions_split_the_total():
    model = TwoGroups().eval()
    x = separable_images(n=2, size=8, seed=5)
    found = groups.neuron_groups(model, x, "layer", k=2, target=0)
    total = A.attribute(model, x, "layer", 0).total
    torch.testing.assert_close(found.attribution.sum(1), total, rtol=1e-4, atol=1e-5)
    # the planted read-out: group D1 contributes relu(red) . (D1 . READOUT) / HW per image
    w1 = float(D1 @ TwoGroups.READOUT[0])
    first = 0 if _cosine(found.directions[0], D1) > 0.99 else 1
    torch.testing.assert_close(found.attribution[:, first], x[:, 0].mean((1, 2)) * w1, rtol=1e-3, atol=1e-4)
    assert "2 neuron groups of layer" in str(found)


def test_groups_render_in_one_batched_call(monkeypatch):
    model = TwoGroups().eval()
    found = groups.neuron_groups(model, separable_images(), "layer", k=2)
    calls = []
    monkeypatch.setattr(groups, "render", lambda m, objectives, **kw: calls.append(objectives) or "rendered")
    assert found.render(model, steps=3) == "rendered"
    assert len(calls) == 1 and [o.name for o in calls[0]] == ["direction", "direction"]


def test_neuron_groups_reject_negative_layers_and_bad_k():
    model = TwoGroups().eval()
    with pytest.raises(ValueError, match="between 1 and the layer's 5 channels"):
        groups.neuron_groups(model, images(n=1), "layer", k=6)
    with torch.no_grad():
        model.layer.weight[0, 2] = -1.0
    with pytest.raises(ValueError, match="NMF needs a non-negative"):
        groups.neuron_groups(model, images(n=1), "layer", k=2)


def test_semantic_dictionary_lists_each_positions_strongest_units():
    model = TwoGroups().eval()
    x = images(n=1, size=4, seed=6)
    words = semantic_dictionary(model, x, "layer", k=2)
    acts = model.layer(x).detach()[0]  # [5, 4, 4]
    for y in range(4):
        for col in range(4):
            expected = acts[:, y, col].argsort(descending=True)[:2]
            assert words.units[0, y, col].tolist() == expected.tolist()
    assert words.used_units() == sorted({int(u) for u in words.units.flatten()})
    torch.testing.assert_close(words.magnitude[0], acts.norm(dim=0))
    rendered = words.render(model, steps=2, size=8, progress=False, redirect_relu=None)
    assert rendered.images.shape == (len(words.used_units()), 3, 8, 8)
    assert words.thumbnail_index(words.used_units()[-1]) == len(words.used_units()) - 1
