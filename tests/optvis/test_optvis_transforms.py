"""Transforms: sequential (lucid/lucent) and fused (one affine resample) forms agree."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from circuits_vision.optvis import transforms as T
from circuits_vision.optvis.pipeline import image_pipeline_torch


def _fused(chain, x, generator):
    """Apply ``chain`` to ``x`` through its sampled affine map (the fused path), pad value 0.5."""
    size = tuple(x.shape[-2:])
    out_size = chain.output_size(size)
    theta = T.affine_to_theta(chain.sample(x.shape[0], size, generator), size, out_size).float()
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *out_size], align_corners=False)
    return F.grid_sample(x - 0.5, grid, align_corners=False) + 0.5


def test_pad_and_crop_jitter_fused_equals_sequential():
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    chain = T.compose(
        [T.pad(3, mode="constant", constant_value=0.5), T.jitter(4), T.crop_or_pad_to(18, 18, value=0.5), T.jitter(2)]
    )
    sequential = chain(x, torch.Generator().manual_seed(5))
    fused = _fused(chain, x, torch.Generator().manual_seed(5))
    assert sequential.shape == fused.shape == (1, 3, 16, 16)
    assert torch.allclose(sequential, fused, atol=1e-5)


def test_rotation_fused_equals_sequential_and_turns_counter_clockwise():
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    rotate = T.random_rotate([7.0])
    theta = T.affine_to_theta(rotate.sample(1, (20, 20), None), (20, 20), (20, 20)).float()
    fused = F.grid_sample(x, F.affine_grid(theta, [1, 3, 20, 20], align_corners=False), align_corners=False)
    assert torch.allclose(rotate(x), fused, atol=1e-6)
    dot = torch.zeros(1, 1, 21, 21)
    dot[0, 0, 10, 16] = 1.0  # right of the centre
    turned = T.random_rotate([90.0])(dot)
    assert (turned[0, 0] > 0.5).nonzero().tolist() == [[4, 10]]  # now above it


def test_fused_scale_zooms_about_the_centre():
    matrix = T.random_scale([2.0]).sample(1, (20, 20), None)[0]
    centre = torch.tensor([10.0, 10.0, 1.0], dtype=torch.float64)
    assert torch.allclose(matrix @ centre, centre)
    corner = matrix @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert corner[:2].tolist() == [5.0, 5.0]  # output corner reads half way to the centre


def test_sequential_scale_follows_lucent():
    x = torch.rand(1, 3, 10, 10)
    smaller = T.random_scale([0.8])(x)
    assert smaller.shape[-2:] == (10, 10)  # resized to 8, zero padded by 1 on each side
    assert smaller[..., 0, :].abs().sum() == 0
    assert T.random_scale([1.1])(x).shape[-2:] == (11, 11)


def test_lucent_jitter_shifts_with_zero_fill():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    generator = torch.Generator().manual_seed(0)
    expected_dx, expected_dy = (int(v) for v in torch.randint(3, (1, 2), generator=torch.Generator().manual_seed(0))[0])
    shifted = T.jitter(3, crop=False)(x, generator)
    assert torch.equal(shifted[..., expected_dy:, expected_dx:], x[..., : 4 - expected_dy, : 4 - expected_dx])
    assert shifted[..., :expected_dy, :].abs().sum() == 0


def test_draws_come_from_the_generator_and_differ_per_image():
    chain = T.standard_transforms()
    a = chain.sample(8, (32, 32), torch.Generator().manual_seed(0))
    b = chain.sample(8, (32, 32), torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert len({tuple(m.flatten().tolist()) for m in a}) > 1


def test_standard_transforms_are_lucids():
    chain = T.standard_transforms()
    assert chain.fusable and chain.pad_value == 0.5
    assert chain.output_size((128, 128)) == (140, 140)  # pad 12, crop 8, crop 4
    assert [type(t).__name__ for t in chain.transforms] == ["pad", "jitter", "random_scale", "random_rotate", "jitter"]
    assert not T.compose([T.pad(4)]).fusable  # reflect padding cannot be fused
    assert not T.compose([lambda x: x]).fusable


def test_identity_theta_and_pad_value_in_the_pipeline():
    x = torch.randn(2, 3, 6, 6)
    color = torch.eye(3)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    out, img = image_pipeline_torch(x, color, identity, 0.5, (6, 6), torch.ones(3), torch.zeros(3))
    assert torch.allclose(img, torch.sigmoid(x)) and torch.allclose(out, img, atol=1e-6)
    far = torch.tensor([[1.0, 0, 10.0], [0, 1.0, 10.0]]).expand(2, 2, 3)  # reads far outside the image
    out, _ = image_pipeline_torch(x, color, far, 0.25, (3, 4), torch.full((3,), 2.0), torch.ones(3))
    assert out.shape == (2, 3, 3, 4) and torch.allclose(out, torch.full_like(out, 0.25 * 2 + 1))


def test_crop_or_pad_to():
    x = torch.ones(1, 1, 4, 6)
    out = T.crop_or_pad_to(6, 4)(x)
    assert out.shape == (1, 1, 6, 4)
    assert out[0, 0, 0].sum() == 0 and out[0, 0, 1].sum() == 4


def test_collapse_alpha_blends_over_a_random_background():
    rgba = torch.cat([torch.ones(2, 3, 8, 8), torch.ones(2, 1, 8, 8)], 1)
    assert torch.allclose(T.collapse_alpha()(rgba, torch.Generator().manual_seed(0)), torch.ones(2, 3, 8, 8))
    rgba[:, 3] = 0
    background = T.collapse_alpha()(rgba, torch.Generator().manual_seed(0))
    assert not torch.allclose(background, torch.ones_like(background))
    assert 0 <= background.min() and background.max() <= 1


def test_rotation_units():
    with pytest.raises(ValueError, match="units"):
        T.random_rotate([1], units="turns")
    assert T.random_rotate([3.14159265], units="radians").angles[0] == pytest.approx(3.14159265)


def test_compiled_pipeline_matches_the_torch_twin():
    from circuits_vision import ops

    if not ops.extension_available():
        pytest.skip("the compiled image_pipeline op is not built")
    op = ops.image_pipeline
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 12, 12, generator=generator, requires_grad=True)
    color = torch.randn(3, 3, generator=generator)
    chain = T.standard_transforms()
    theta = T.affine_to_theta(chain.sample(3, (12, 12), generator), (12, 12), chain.output_size((12, 12))).float()
    args = (color, theta, 0.5, chain.output_size((12, 12)), torch.ones(3), torch.zeros(3))
    out_op, img_op = op(x, *args)
    (grad_op,) = torch.autograd.grad((out_op**2).sum() + img_op.sum(), x)
    out_twin, img_twin = image_pipeline_torch(x, *args)
    (grad_twin,) = torch.autograd.grad((out_twin**2).sum() + img_twin.sum(), x)
    assert torch.allclose(out_op, out_twin, atol=1e-5) and torch.allclose(img_op, img_twin, atol=1e-6)
    assert torch.allclose(grad_op, grad_twin, atol=1e-4)
