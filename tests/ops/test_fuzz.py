"""Randomised geometries: each op against its pure-PyTorch twin, forward and gradients (hypothesis).

A bounded number of small examples per op, so the file runs in seconds; hypothesis shrinks any
failure to the smallest geometry that shows it.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuits_vision.ops import _extension, _reference, compose_kernels, image_pipeline

pytestmark = pytest.mark.skipif(not _extension.extension_available(), reason="compiled extension not built")

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([torch.float32, torch.float64])
# float32 sums of up to a few dozen products of unit normals; float64 to round-off
TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-11}


def _loss_weights(shape, dtype, generator):
    return torch.randn(shape, generator=generator, dtype=dtype)


@st.composite
def compose_cases(draw):
    # channel counts of 1 reach the shared-filter path (O == M == 1); M > 1 the channel-mixing paths
    o, m, i = (draw(st.integers(1, 4)) for _ in range(3))
    k2h, k2w, k1h, k1w = (draw(st.integers(1, 4)) for _ in range(4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return (o, m, k2h, k2w), (m, i, k1h, k1w), stride, dilation, draw(DTYPES), draw(st.integers(0, 2**31 - 1))


@FUZZ
@given(compose_cases())
def test_compose_kernels_matches_twin(case):
    outer_shape, inner_shape, stride, dilation, dtype, seed = case
    g = torch.Generator().manual_seed(seed)
    outer = torch.randn(outer_shape, generator=g, dtype=dtype)
    inner = torch.randn(inner_shape, generator=g, dtype=dtype)
    results = []
    for fn in (compose_kernels, _reference.compose_kernels):
        a, b = outer.clone().requires_grad_(), inner.clone().requires_grad_()
        out = fn(a, b, stride, dilation)
        weights = _loss_weights(out.shape, dtype, torch.Generator().manual_seed(seed + 1))
        grads = torch.autograd.grad((out * weights).sum(), (a, b))
        results.append((out.detach(), *grads))
    tol = TOLERANCE[dtype]
    for name, got, want in zip(("out", "grad_outer", "grad_inner"), *results):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=lambda m, name=name: f"{name}: {m}")


@st.composite
def pipeline_cases(draw):
    n = draw(st.integers(1, 3))
    size = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    out_size = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    angle = draw(st.floats(-math.pi, math.pi))
    scale = (draw(st.floats(0.3, 2.5)), draw(st.floats(0.3, 2.5)))
    shift = (draw(st.floats(-1.5, 1.5)), draw(st.floats(-1.5, 1.5)))
    pad_value = draw(st.floats(-1.0, 1.0))
    return n, size, out_size, angle, scale, shift, pad_value, draw(DTYPES), draw(st.integers(0, 2**31 - 1))


@FUZZ
@given(pipeline_cases())
def test_image_pipeline_matches_twin(case):
    n, size, out_size, angle, scale, shift, pad_value, dtype, seed = case
    g = torch.Generator().manual_seed(seed)
    c, s = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[c * scale[0], -s * scale[1], shift[0]], [s * scale[0], c * scale[1], shift[1]]], dtype=dtype)
    # a different small perturbation per image, which also keeps taps off the pixel grid (where the
    # bilinear weights, and so theta's gradient, have kinks)
    theta = theta + 0.01 * torch.randn(n, 2, 3, generator=g, dtype=dtype)
    inputs = [
        torch.randn(n, 3, *size, generator=g, dtype=dtype),
        torch.randn(3, 3, generator=g, dtype=dtype),
        theta,
        torch.rand(3, generator=g, dtype=dtype) + 0.5,
        torch.randn(3, generator=g, dtype=dtype),
    ]
    results = []
    for fn in (image_pipeline, _reference.image_pipeline):
        leaves = [t.clone().requires_grad_() for t in inputs]
        x, color, theta_, scale_, shift_ = leaves
        out, image = fn(x, color, theta_, pad_value, out_size, scale_, shift_)
        w = torch.Generator().manual_seed(seed + 1)
        loss = (out * _loss_weights(out.shape, dtype, w)).sum() + (image * _loss_weights(image.shape, dtype, w)).sum()
        results.append((out.detach(), image.detach(), *torch.autograd.grad(loss, leaves)))
    names = ("out", "image", "grad_x", "grad_color", "grad_theta", "grad_norm_scale", "grad_norm_shift")
    for name, got, want in zip(names, *results):
        assert got.shape == want.shape, name
        # theta's and the norm's gradients sum over every output pixel
        tol = TOLERANCE[dtype] * (10 if name in ("grad_theta", "grad_norm_scale") else 1)
        torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=lambda m, name=name: f"{name}: {m}")
