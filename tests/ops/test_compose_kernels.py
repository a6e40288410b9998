"""compose_kernels: the op against its pure-PyTorch twin and against the convolutions it composes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from circuits_vision.ops import _extension, _reference, compose_kernels
from support import devices

pytestmark = pytest.mark.skipif(not _extension.extension_available(), reason="compiled extension not built")

GEOMETRIES = [
    # outer shape, inner shape, stride, dilation
    ((5, 4, 3, 3), (4, 6, 2, 2), (1, 1), (1, 1)),
    ((7, 3, 5, 5), (3, 2, 1, 1), (1, 1), (1, 1)),
    ((4, 3, 3, 2), (3, 5, 3, 4), (2, 3), (1, 2)),
    ((3, 8, 1, 1), (8, 3, 7, 7), (2, 2), (1, 1)),
    ((1, 1, 3, 3), (1, 9, 4, 5), (2, 2), (1, 1)),  # one filter on every map: a pool passed through a kernel
    ((1, 1, 2, 3), (1, 4, 3, 3), (1, 3), (2, 1)),
]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("outer_shape,inner_shape,stride,dilation", GEOMETRIES)
def test_matches_twin(device, dtype, atol, outer_shape, inner_shape, stride, dilation):
    g = torch.Generator().manual_seed(1)
    outer = torch.randn(outer_shape, generator=g, dtype=dtype).to(device)
    inner = torch.randn(inner_shape, generator=g, dtype=dtype).to(device)
    got = compose_kernels(outer, inner, stride, dilation)
    want = _reference.compose_kernels(outer, inner, stride, dilation)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=atol, rtol=atol)


def test_shared_filter_skips_zero_taps_exactly():
    """A spread box filter (zeros between its taps), as pools produce, gives the twin's values."""
    g = torch.Generator().manual_seed(4)
    box = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    box[0, 0, ::2, ::2] = 1.0 / 9.0
    maps = torch.randn(1, 7, 6, 6, generator=g, dtype=torch.float64)
    got = compose_kernels(box, maps, 2, 1)
    torch.testing.assert_close(got, _reference.compose_kernels(box, maps, (2, 2), (1, 1)), atol=1e-14, rtol=1e-12)
    assert got.shape == (1, 7, 14, 14)


@pytest.mark.parametrize("device", devices())
def test_non_contiguous_inputs(device):
    g = torch.Generator().manual_seed(2)
    outer = torch.randn(4, 5, 3, 3, generator=g).to(device).transpose(0, 1)  # [5, 4, 3, 3], strided
    inner = torch.randn(6, 4, 3, 3, generator=g).to(device).transpose(0, 1)[:, :, ::1, :]  # [4, 6, 3, 3]
    assert not outer.is_contiguous() and not inner.is_contiguous()
    torch.testing.assert_close(
        compose_kernels(outer, inner, 2, 1), _reference.compose_kernels(outer, inner, (2, 2), (1, 1)), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_equals_stacked_convolutions(stride):
    """conv(conv(x, inner, stride), outer) == conv(x, composed, composite stride), away from borders."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 23, 23, generator=g, dtype=torch.float64)
    inner = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    outer = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    two_step = F.conv2d(F.conv2d(x, inner, stride=stride), outer)
    one_step = F.conv2d(x, compose_kernels(outer, inner, stride, 1), stride=stride)
    torch.testing.assert_close(one_step, two_step, atol=1e-10, rtol=1e-10)


def test_hand_computed_value():
    # 1 channel everywhere: outer [[1, 2]] (1x2), inner [[3], [5]] (2x1) -> composed [[3, 6], [5, 10]]
    outer = torch.tensor([[[[1.0, 2.0]]]], dtype=torch.float64)
    inner = torch.tensor([[[[3.0], [5.0]]]], dtype=torch.float64)
    assert compose_kernels(outer, inner).tolist() == [[[[3.0, 6.0], [5.0, 10.0]]]]
    # with stride 2 along x the outer taps spread apart: [[3, 0, 6], [5, 0, 10]]
    assert compose_kernels(outer, inner, (1, 2), 1).tolist() == [[[[3.0, 0.0, 6.0], [5.0, 0.0, 10.0]]]]


@pytest.mark.parametrize("device", devices())
def test_gradcheck_fp64(device):
    g = torch.Generator().manual_seed(4)
    outer = torch.randn(3, 2, 3, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    inner = torch.randn(2, 4, 2, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: compose_kernels(a, b, (2, 1), (1, 2)), (outer, inner))


@pytest.mark.parametrize("device", devices())
def test_gradients_match_twin(device):
    g = torch.Generator().manual_seed(5)
    outer = torch.randn(6, 5, 3, 3, generator=g).to(device)
    inner = torch.randn(5, 7, 5, 5, generator=g).to(device)
    weight = torch.randn(6, 7, 9, 9, generator=g).to(device)  # composed size (3-1)*2 + (5-1)*1 + 1 = 9
    grads = []
    for fn in (compose_kernels, _reference.compose_kernels):
        a, b = outer.clone().requires_grad_(), inner.clone().requires_grad_()
        out = fn(a, b, (2, 2), (1, 1))
        (out * weight).sum().backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_opcheck(device):
    g = torch.Generator().manual_seed(6)
    outer = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    inner = torch.randn(4, 2, 2, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    torch.library.opcheck(torch.ops.circuits_vision.compose_kernels.default, (outer, inner, [2, 1], [1, 1]))
    grad = torch.randn(3, 2, 6, 4, dtype=torch.float64).to(device)
    torch.library.opcheck(
        torch.ops.circuits_vision._compose_kernels_backward.default, (grad, outer.detach(), inner.detach(), [2, 1], [1, 1])
    )


@pytest.mark.parametrize(
    "outer,inner,message",
    [
        (torch.randn(3, 4, 3), torch.randn(4, 2, 1, 1), "`outer` must be a 4-D kernel"),
        (torch.randn(3, 4, 3, 3), torch.randn(5, 2, 1, 1), "`outer` reads 4 channels"),
        (torch.ones(3, 4, 3, 3, dtype=torch.int64), torch.ones(4, 2, 1, 1, dtype=torch.int64), "must be float32 or float64"),
        (torch.randn(3, 4, 3, 3), torch.randn(4, 2, 1, 1, dtype=torch.float64), "give both the same dtype"),
        (torch.randn(3, 0, 3, 3), torch.randn(0, 2, 1, 1), "is empty"),
    ],
)
def test_bad_input_is_named(outer, inner, message):
    with pytest.raises(RuntimeError, match=message):
        compose_kernels(outer, inner)


def test_bad_stride_is_named():
    with pytest.raises(RuntimeError, match="`stride` must be >= 1"):
        compose_kernels(torch.randn(2, 2, 2, 2), torch.randn(2, 2, 2, 2), 0)
    with pytest.raises(ValueError, match="`dilation` must be an int or a pair"):
        compose_kernels(torch.randn(2, 2, 2, 2), torch.randn(2, 2, 2, 2), 1, (1, 2, 3))


@pytest.mark.needs_cuda
def test_mixed_devices_are_named():
    with pytest.raises(RuntimeError, match="move both to one device"):
        compose_kernels(torch.randn(2, 2, 2, 2, device="cuda"), torch.randn(2, 2, 2, 2))


def test_fallback_uses_twin_and_warns_once(monkeypatch):
    monkeypatch.setattr(_extension, "_LOAD_ERROR", ImportError("simulated missing build"))
    monkeypatch.setattr(_extension, "_warned", False)
    monkeypatch.delenv("CIRCUITS_VISION_REQUIRE_EXT", raising=False)
    outer, inner = torch.randn(3, 2, 3, 3), torch.randn(2, 4, 2, 2)
    with pytest.warns(RuntimeWarning, match="pure-PyTorch twins"):
        got = compose_kernels(outer, inner)
    torch.testing.assert_close(got, F.conv_transpose2d(outer, inner))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compose_kernels(outer, inner)  # second call: no second warning


def test_require_ext_turns_fallback_into_error(monkeypatch):
    monkeypatch.setattr(_extension, "_LOAD_ERROR", ImportError("simulated missing build"))
    monkeypatch.setenv("CIRCUITS_VISION_REQUIRE_EXT", "1")
    with pytest.raises(RuntimeError, match="CIRCUITS_VISION_REQUIRE_EXT=1 forbids the pure-PyTorch fallback"):
        compose_kernels(torch.randn(3, 2, 3, 3), torch.randn(2, 4, 2, 2))
