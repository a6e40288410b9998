"""Parameterizations: FFT/pixel/CPPN images, colour decorrelation, per-image generators."""

from __future__ import annotations

import pytest
import torch

from circuits_vision.optvis import param


def _generators(n, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_imagenet_color_matrix_is_lucids_normalized_sqrt():
    m = param.imagenet_color_matrix(torch.float64)
    raw = torch.tensor(param.IMAGENET_COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    assert torch.allclose(m * raw.norm(dim=0).max(), raw)
    assert m.norm(dim=0).max().item() == pytest.approx(1.0)


def test_image_defaults_are_lucids():
    params, image_f = param.image(16, generator=torch.Generator().manual_seed(0))
    (spectrum,) = params
    assert spectrum.shape == (1, 3, 16, 9, 2)
    assert spectrum.std().item() == pytest.approx(0.01, rel=0.15)  # lucid's init sd
    img = image_f()
    assert img.shape == (1, 3, 16, 16)
    assert 0.45 < img.min() and img.max() < 0.55  # near grey at the start


def test_fft_image_odd_width_and_decay_power():
    params, raw = param.fft_image((2, 3, 7, 9), decay_power=1.5, generator=torch.Generator().manual_seed(0))
    assert params[0].shape == (2, 3, 7, 9 // 2 + 2, 2)
    assert raw().shape == (2, 3, 7, 9)


def test_fft_scale_is_one_over_frequency():
    from circuits_vision.optvis.param.spatial import fft_spectrum_scale

    scale = fft_spectrum_scale(8, 8, decay_power=1.0)
    freqs = param.rfft2d_freqs(8, 8)
    assert scale[0, 0].item() == pytest.approx(8.0)  # DC clamped at 1/max(h, w)
    assert scale[0, 1].item() == pytest.approx(1.0 / freqs[0, 1].item())


def test_per_image_generators_make_each_start_independent_of_the_batch():
    _, f4 = param.image(12, batch=4, generator=_generators(4, seed=10))
    _, f1 = param.image(12, batch=1, generator=_generators(1, seed=12))
    assert torch.equal(f4()[2:3], f1())


@pytest.mark.needs_lucent
def test_fft_decorrelated_image_equals_lucents():
    from lucent.optvis.param import color, spatial

    torch.manual_seed(3)  # lucent draws from the global generator
    lucent_params, lucent_raw = spatial.fft_image((2, 3, 15, 17))
    lucent_image = color.to_valid_rgb(lucent_raw, decorrelate=True)
    params, image_f = param.image(17, 15, batch=2)
    with torch.no_grad():
        params[0].copy_(lucent_params[0])
    assert torch.allclose(image_f(), lucent_image(), atol=1e-6)


def test_pixel_image_and_no_decorrelation():
    params, image_f = param.image(5, fft=False, decorrelate=False, generator=torch.Generator().manual_seed(0))
    assert params[0].shape == (1, 3, 5, 5)
    assert torch.allclose(image_f(), torch.sigmoid(params[0]))


def test_user_color_matrix_is_used():
    matrix = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, -1.0]])
    params, image_f = param.image(4, fft=False, color_matrix=matrix, generator=torch.Generator().manual_seed(0))
    x = params[0]
    expected = torch.sigmoid(torch.stack([x[:, 0], 2 * x[:, 1], -x[:, 2]], 1))
    assert torch.allclose(image_f(), expected)


def test_color_matrix_from_images_recovers_the_covariance_square_root():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[0.3, 0.1, 0.0], [0.25, -0.05, 0.02], [0.2, -0.1, 0.05]])
    z = torch.randn(64, 3, 16, 16, generator=generator)
    images = 0.5 + torch.einsum("ij,njhw->nihw", mixing, z)
    m = param.color_matrix_from_images(images).double()
    true_cov = (mixing @ mixing.T).double()
    # M M^T is the covariance up to the normalising scale
    ratio = (m @ m.T) / true_cov
    assert torch.allclose(ratio, ratio[0, 0].expand(3, 3), rtol=0.05)
    assert m.norm(dim=0).max().item() == pytest.approx(1.0, abs=1e-6)
    # streaming over batches (with labels, as a DataLoader yields) gives the same matrix
    streamed = param.color_matrix_from_images((images[i : i + 16], 0) for i in range(0, 64, 16))
    assert torch.allclose(streamed, m.float(), atol=1e-5)


def test_color_matrix_from_images_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        param.color_matrix_from_images(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="no colour variance"):
        param.color_matrix_from_images(torch.full((1, 3, 4, 4), 0.5))


def test_cppn_starts_grey_and_learns():
    params, image_f = param.cppn(10, batch=2, num_layers=3, generator=_generators(2))
    img = image_f()
    assert img.shape == (2, 3, 10, 10)
    assert torch.allclose(img, torch.full_like(img, 0.5))  # zero output weights, as lucid
    img[0, 0].mean().backward()
    last_weight = params[3]
    assert last_weight.grad[0].abs().sum() > 0 and last_weight.grad[1].abs().sum() == 0  # per-image networks


def test_alpha_channel():
    params, image_f = param.image(6, alpha=True, generator=torch.Generator().manual_seed(0))
    img = image_f()
    assert img.shape == (1, 4, 6, 6) and not image_f.fusable
    raw = image_f.raw()
    assert torch.allclose(img[:, 3], torch.sigmoid(raw[:, 3]))
    assert torch.allclose(img[:, :3], torch.sigmoid(param.decorrelate_color(raw[:, :3], param.imagenet_color_matrix())))
