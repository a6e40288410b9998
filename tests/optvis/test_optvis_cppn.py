"""CPPN renders with lucid's CPPN-notebook defaults carry structure, not a flat colour."""

from __future__ import annotations

import pytest
import torch

from circuits_vision import models
from circuits_vision.optvis import param, render


@pytest.fixture(scope="module")
def shapes():
    return models.load("shapes")


def _curve_detectors(layer: str, count: int) -> list[str]:
    """Live, tuned units of the shipped model: the curve detectors its metadata records, read before their
    ReLU as lucid's CPPN notebook reads its units (``mixed4b_pre_relu``): a unit that is off on the CPPN's
    first image still gets a gradient (after the ReLU the first of these stayed at 0 for all 32 steps)."""
    import json

    recorded = json.loads(models.shapes.default_weights_path().with_suffix(".json").read_text())
    return [f"{layer}_pre_relu:{u}" for u in recorded["curve_detectors"][layer]["units"][:count]]


def test_cppn_render_has_spatial_structure_and_raises_the_objective(shapes):
    result = render(shapes, _curve_detectors("mixed3b", 5), param="cppn", steps=32, size=64, progress=False)
    spatial_std = result.images.std(dim=(2, 3)).mean(dim=1)  # [N]: per image, averaged over colours
    assert bool((spatial_std > 0.05).all()), spatial_std  # a flat square has ~1e-9
    start, end = result.history[0], result.history[-1]
    assert bool((end < start - 0.5).all()), (start, end)  # losses: lower is a stronger activation


def test_cppn_defaults_are_lucids_notebook():
    cppn = param.CPPN()
    assert (cppn.learning_rate, cppn.num_layers, cppn.num_hidden_channels) == (0.005, 8, 24)
    assert cppn.normalize  # measured on the shipped model: see CPPN's docstring


def test_cppn_normalize_gives_unit_variance_hidden_layers():
    params, image_f = param.cppn(8, batch=1, num_layers=2, normalize=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        params[2].normal_()  # non-zero output weights so the image depends on the hidden layers
    assert torch.isfinite(image_f()).all() and image_f().std() > 0
