"""compose_kernels: the op against its pure-PyTorch twin and against the convolutions it composes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support import devices

from circuits_vision.ops import _extension, _reference, compose_kernels

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
        compose_kernels(outer, inner, 2, 1),
        _reference.compose_kernels(outer, inner, (2, 2), (1, 1)),
        atol=1e-5,
        rtol=1e-5,
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
@pytest.mark.parametrize("stride,dilation", [((2, 1), (1, 2)), ((1, 1), (1, 1))])
def test_gradgradcheck_fp64(device, stride, dilation):
    """Second-order gradients are exact (the backward is differentiable through the ops themselves)."""
    g = torch.Generator().manual_seed(8)
    outer = torch.randn(3, 2, 3, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    inner = torch.randn(2, 4, 2, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda a, b: compose_kernels(a, b, stride, dilation), (outer, inner))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("outer_shape,inner_shape,stride,dilation", GEOMETRIES[:3] + GEOMETRIES[4:5])
def test_second_order_gradients_match_twin(device, outer_shape, inner_shape, stride, dilation):
    """create_graph=True twice through a non-linear loss gives the twin's second derivatives."""
    g = torch.Generator().manual_seed(9)
    outer = torch.randn(outer_shape, generator=g, dtype=torch.float64).to(device)
    inner = torch.randn(inner_shape, generator=g, dtype=torch.float64).to(device)
    v_outer = torch.randn(outer_shape, generator=g, dtype=torch.float64).to(device)
    v_inner = torch.randn(inner_shape, generator=g, dtype=torch.float64).to(device)
    results = []
    for fn in (compose_kernels, _reference.compose_kernels):
        a, b = outer.clone().requires_grad_(), inner.clone().requires_grad_()
        loss = fn(a, b, stride, dilation).pow(2).sum()
        ga, gb = torch.autograd.grad(loss, (a, b), create_graph=True)
        hvp = torch.autograd.grad((ga * v_outer).sum() + (gb * v_inner).sum(), (a, b), create_graph=True)
        third = torch.autograd.grad(hvp[0].pow(2).sum() + hvp[1].sum(), (a, b))
        results.append((ga, gb, *hvp, *third))
    scale = max(r.abs().max().item() for r in results[1])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, atol=1e-10 * scale, rtol=1e-10)


@pytest.mark.parametrize("device", devices())
def test_opcheck(device):
    g = torch.Generator().manual_seed(6)
    outer = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    inner = torch.randn(4, 2, 2, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    torch.library.opcheck(torch.ops.circuits_vision.compose_kernels.default, (outer, inner, [2, 1], [1, 1]))
    grad = torch.randn(3, 2, 6, 4, dtype=torch.float64).to(device)
    torch.library.opcheck(
        torch.ops.circuits_vision._compose_kernels_backward.default,
        (grad, outer.detach(), inner.detach(), [2, 1], [1, 1]),
    )
    # the backward's own autograd registration (second-order gradients)
    torch.library.opcheck(
        torch.ops.circuits_vision._compose_kernels_backward.default,
        (grad.requires_grad_(), outer, inner, [2, 1], [1, 1]),
    )


@pytest.mark.parametrize(
    "outer,inner,message",
    [
        (torch.randn(3, 4, 3), torch.randn(4, 2, 1, 1), "`outer` must be a 4-D kernel"),
        (torch.randn(3, 4, 3, 3), torch.randn(5, 2, 1, 1), "`outer` reads 4 channels"),
        (
            torch.ones(3, 4, 3, 3, dtype=torch.int64),
            torch.ones(4, 2, 1, 1, dtype=torch.int64),
            "must be float32 or float64",
        ),
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


@pytest.mark.parametrize(
    "stride,error,message",
    [
        (2.5, TypeError, r"`stride` must be an int or a pair \(y, x\), got 2.5"),  # int() would truncate it to 2
        ((1, 2.0), TypeError, r"got \(1, 2.0\)"),
        (True, TypeError, "got True"),
        (2**63, ValueError, "of values that fit in int64, got 9223372036854775808"),  # past what the schema holds
    ],
)
def test_stride_that_is_not_an_int64_is_named(stride, error, message):
    with pytest.raises(error, match=message):
        compose_kernels(torch.randn(2, 2, 2, 2), torch.randn(2, 2, 2, 2), stride)


def test_stride_accepts_integer_likes():
    outer, inner = torch.randn(2, 2, 2, 2), torch.randn(2, 2, 2, 2)
    want = compose_kernels(outer, inner, (2, 1))
    for stride in [(np.int64(2), 1), torch.tensor([2, 1]), [2, 1]]:
        torch.testing.assert_close(compose_kernels(outer, inner, stride), want, atol=0, rtol=0)


HUGE = [
    # outer shape, inner shape, stride, dilation: each composed size or element count overflows int64
    pytest.param((1, 1, 9, 9), (1, 1, 3, 3), 2**61, 1, "size", id="stride_2^61"),  # was a segfault
    pytest.param((1, 1, 3, 3), (1, 1, 9, 9), 1, 2**61, "size", id="dilation_2^61"),  # was a segfault
    pytest.param((1, 1, 5, 5), (1, 1, 3, 3), 2**62, 1, "size", id="stride_2^62"),  # was a silent 3x3
    pytest.param((2, 3, 3, 3), (3, 2, 2, 2), (1, 2**62), 1, "size", id="channel_mixing_x_axis"),
    pytest.param((2, 3, 3, 3), (3, 2, 2, 2), 2**40, 1, "elements", id="elements_2^82"),
]
_MESSAGES = {
    "size": r"composed kernel's [yx] size .* does not fit in int64; use a smaller stride or dilation",
    "elements": r"has more elements than int64 can count; use a smaller stride or dilation",
}


@pytest.mark.parametrize("path", ["op", "fallback", "meta"])
@pytest.mark.parametrize("outer_shape,inner_shape,stride,dilation,kind", HUGE)
def test_huge_stride_or_dilation_is_a_value_error_before_allocating(
    monkeypatch, path, outer_shape, inner_shape, stride, dilation, kind
):
    """Every path (kernels, twin fallback, shape inference) rejects the same sizes with the same message."""
    device = "meta" if path == "meta" else "cpu"
    if path == "fallback":
        monkeypatch.setattr(_extension, "_LOAD_ERROR", ImportError("simulated missing build"))
        monkeypatch.setattr(_extension, "_warned", True)
        monkeypatch.delenv("CIRCUITS_VISION_REQUIRE_EXT", raising=False)
    for dtype in (torch.float32, torch.float64):
        outer = torch.randn(outer_shape, dtype=dtype, device=device)
        inner = torch.randn(inner_shape, dtype=dtype, device=device)
        with pytest.raises(ValueError, match=_MESSAGES[kind]):
            compose_kernels(outer, inner, stride, dilation)


def test_huge_stride_message_names_the_arithmetic():
    with pytest.raises(ValueError) as error:
        compose_kernels(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), 2**62)
    assert "composed kernel's y size (5 - 1) * stride 4611686018427387904 + (3 - 1) * dilation 1 + 1" in str(
        error.value
    )


@pytest.mark.parametrize("path", ["op", "meta"])
def test_size_limit_is_exact(path):
    """float64 [1, 1, kh, 1] fits while kh * 8 bytes <= 2**63 - 1, i.e. up to kh = 2**60 - 1 (stride 2**60 - 2)."""
    device = "meta" if path == "meta" else "cpu"
    outer = torch.randn(1, 1, 2, 1, dtype=torch.float64, device=device)
    inner = torch.randn(1, 1, 1, 1, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match=_MESSAGES["elements"]):
        compose_kernels(outer, inner, (2**60 - 1, 1))
    if path == "op":
        # past the checks, allocating 2**63 - 8 bytes fails: an allocation error, not a wrong size
        with pytest.raises(RuntimeError, match="alloc|memory"):
            compose_kernels(outer, inner, (2**60 - 2, 1))
    else:
        assert compose_kernels(outer, inner, (2**60 - 2, 1)).shape == (1, 1, 2**60 - 1, 1)


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


def _recording_backend(graphs: list):
    """A torch.compile backend that keeps each graph dynamo captures and runs it as captured."""

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    return backend


@pytest.mark.slow  # the first compile in a process imports and warms up dynamo and AOTAutograd: ~10 s
def test_compile_fullgraph_forward_and_backward():
    """torch.compile(fullgraph=True) traces the op and its backward (aot_eager: inductor's C++ build takes
    minutes on a small CPU) and gives the eager values and gradients."""
    torch.compiler.reset()
    g = torch.Generator().manual_seed(10)
    outer = torch.randn(5, 4, 3, 3, generator=g)
    inner = torch.randn(4, 6, 2, 2, generator=g)

    def loss(a, b):
        return compose_kernels(a, b, (2, 1), (1, 2)).sin().sum()

    results = []
    for fn in (loss, torch.compile(loss, fullgraph=True, backend="aot_eager")):
        a, b = outer.clone().requires_grad_(), inner.clone().requires_grad_()
        value = fn(a, b)
        value.backward()
        results.append((value.detach(), a.grad, b.grad))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_compile_keeps_stride_and_dilation_symbolic():
    """Sizes are SymInts in the schema: one compiled graph serves every stride and dilation (an int[] schema
    made dynamo specialise and recompile for each value)."""
    torch.compiler.reset()
    graphs: list = []

    def composed(a, b, stride, dilation):
        return compose_kernels(a, b, stride, dilation)

    compiled = torch.compile(composed, fullgraph=True, dynamic=True, backend=_recording_backend(graphs))
    outer, inner = torch.randn(3, 4, 3, 3), torch.randn(4, 2, 2, 2)
    for stride, dilation in [(2, 1), (3, 2), (5, 3)]:
        got = compiled(outer, inner, stride, dilation)
        assert got.shape == (3, 2, 2 * stride + dilation + 1, 2 * stride + dilation + 1)
        torch.testing.assert_close(got, compose_kernels(outer, inner, stride, dilation), atol=0, rtol=0)
    assert len(graphs) == 1
    targets = {str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert "circuits_vision.compose_kernels" in targets
