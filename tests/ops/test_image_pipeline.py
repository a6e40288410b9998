"""image_pipeline: the fused op against its pure-PyTorch twin, hand-computed samples, gradcheck, opcheck."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from support import devices

from circuits_vision.ops import _extension, _reference, image_pipeline

# the module, not the function of the same name that circuits_vision.ops re-exports
image_pipeline_module = importlib.import_module("circuits_vision.ops.image_pipeline")

needs_extension = pytest.mark.skipif(not _extension.extension_available(), reason="compiled extension not built")


def affine(angle: float = 0.0, scale: tuple[float, float] = (1.0, 1.0), shift: tuple[float, float] = (0.0, 0.0)):
    """[2, 3] theta: rotation by `angle`, then per-axis scale of the sampled region, then shift (normalised)."""
    c, s = math.cos(angle), math.sin(angle)
    rows = [[c * scale[0], -s * scale[1], shift[0]], [s * scale[0], c * scale[1], shift[1]]]
    return torch.tensor(rows, dtype=torch.float64)


THETAS = {
    "identity": [affine(), affine()],
    "rotation": [affine(0.4), affine(-2.0)],
    "zoom_out": [affine(scale=(1.7, 1.3)), affine(0.3, scale=(2.5, 2.5))],  # many taps outside the image
    "zoom_in": [affine(scale=(0.6, 0.8)), affine(1.0, scale=(0.5, 0.7))],
    "translation": [affine(shift=(0.45, -0.3)), affine(shift=(-1.6, 0.9))],  # partly and mostly outside
    "far_outside": [affine(shift=(5.0, 0.0)), affine(0.2, shift=(1e9, -1e9))],  # only padding
}


def make_inputs(device, dtype, theta_name="rotation", size=(9, 11), generator_seed=0):
    g = torch.Generator().manual_seed(generator_seed)
    x = torch.randn(2, 3, *size, generator=g, dtype=dtype)
    color = torch.randn(3, 3, generator=g, dtype=dtype)
    theta = torch.stack(THETAS[theta_name]).to(dtype)
    theta = theta + 0.01 * torch.randn(theta.shape, generator=g, dtype=dtype)  # keep taps off the integer grid
    norm_scale = torch.rand(3, generator=g, dtype=dtype) + 0.5
    norm_shift = torch.randn(3, generator=g, dtype=dtype)
    return [t.to(device) for t in (x, color, theta, norm_scale, norm_shift)]


def outputs_and_grads(fn, x, color, theta, norm_scale, norm_shift, pad_value, out_size, seed=5):
    """Both outputs and the gradients of a random linear loss on both w.r.t. every tensor input."""
    inputs = [t.detach().clone().requires_grad_() for t in (x, color, theta, norm_scale, norm_shift)]
    x_, color_, theta_, scale_, shift_ = inputs
    out, image = fn(x_, color_, theta_, pad_value, out_size, scale_, shift_)
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)
    w_image = torch.randn(image.shape, generator=g, dtype=image.dtype).to(image.device)
    grads = torch.autograd.grad((out * w_out).sum() + (image * w_image).sum(), inputs)
    return [out.detach(), image.detach(), *grads]


NAMES = ["out", "image", "grad_x", "grad_color", "grad_theta", "grad_norm_scale", "grad_norm_shift"]


@needs_extension
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("theta_name", list(THETAS))
def test_matches_twin(device, dtype, atol, theta_name):
    x, color, theta, scale, shift = make_inputs(device, dtype, theta_name)
    got = outputs_and_grads(image_pipeline, x, color, theta, scale, shift, 0.3, (6, 7))
    want = outputs_and_grads(_reference.image_pipeline, x, color, theta, scale, shift, 0.3, (6, 7))
    for name, a, b in zip(NAMES, got, want):
        assert a.shape == b.shape, name
        # theta's gradient sums over every output pixel; allow for that sum's size in float32
        tol = atol * (10 if name in ("grad_theta", "grad_norm_scale") else 1)
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, name=name: f"{name}: {m}")


@needs_extension
@pytest.mark.parametrize("device", devices())
def test_matches_twin_on_larger_batch(device):
    """Enough rows and images that the kernels split the work across threads / blocks."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 3, 60, 70, generator=g, dtype=torch.float64)
    color = torch.randn(3, 3, generator=g, dtype=torch.float64)
    theta = torch.stack([affine(0.3 * k, (0.8 + 0.1 * k, 1.1), (0.05 * k, -0.1)) for k in range(5)])
    scale, shift = (
        torch.rand(3, generator=g, dtype=torch.float64) + 0.5,
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    args = [t.to(device) for t in (x, color, theta, scale, shift)]
    got = outputs_and_grads(image_pipeline, *args, 0.5, (48, 52))
    want = outputs_and_grads(_reference.image_pipeline, *args, 0.5, (48, 52))
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


@needs_extension
@pytest.mark.parametrize("device", devices())
def test_non_contiguous_inputs(device):
    x, color, theta, scale, shift = make_inputs(device, torch.float64, "zoom_out", size=(10, 8))
    x_strided = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, channels-last-like strides
    color_strided = color.t().contiguous().t()
    theta_strided = torch.stack([theta, theta], 3)[..., 0]  # [2, 2, 3] with the last stride 2
    scale_strided = torch.stack([scale, scale], 1)[:, 0]
    for original, strided in [(x, x_strided), (color, color_strided), (theta, theta_strided), (scale, scale_strided)]:
        assert torch.equal(original, strided) and not strided.is_contiguous()
    got = outputs_and_grads(image_pipeline, x_strided, color_strided, theta_strided, scale_strided, shift, 0.5, (7, 5))
    want = outputs_and_grads(_reference.image_pipeline, x, color, theta, scale, shift, 0.5, (7, 5))
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


@needs_extension
@pytest.mark.parametrize("device", devices())
def test_hand_computed_samples(device):
    """Known answers independent of the twin: identity, a one-pixel shift, all-padding, normalisation."""
    dtype = torch.float64
    x = torch.randn(1, 3, 4, 5, dtype=dtype, device=device)
    color = torch.eye(3, dtype=dtype, device=device)
    ones, zeros = torch.ones(3, dtype=dtype, device=device), torch.zeros(3, dtype=dtype, device=device)
    identity = affine().to(dtype).unsqueeze(0).to(device)
    out, image = image_pipeline(x, color, identity, 0.25, (4, 5), ones, zeros)
    torch.testing.assert_close(image, torch.sigmoid(x), atol=1e-15, rtol=0)
    torch.testing.assert_close(out, image, atol=1e-14, rtol=0)  # identity samples pixel centres exactly
    # shifting by 2/W in normalised x samples one pixel to the right; the last column reads the padding
    shifted = affine(shift=(2 / 5, 0.0)).to(dtype).unsqueeze(0).to(device)
    out, _ = image_pipeline(x, color, shifted, 0.25, (4, 5), ones, zeros)
    torch.testing.assert_close(out[..., :4], image[..., 1:], atol=1e-14, rtol=0)
    torch.testing.assert_close(out[..., 4], torch.full_like(out[..., 4], 0.25), atol=1e-14, rtol=0)
    # half a pixel to the left: the first column averages the padding and the first pixel
    half = affine(shift=(-1 / 5, 0.0)).to(dtype).unsqueeze(0).to(device)
    out, _ = image_pipeline(x, color, half, 0.25, (4, 5), ones, zeros)
    torch.testing.assert_close(out[..., 0], 0.5 * (0.25 + image[..., 0]), atol=1e-14, rtol=0)
    # far outside: every tap reads the padding, then normalisation applies per channel
    far = affine(shift=(40.0, -7.0)).to(dtype).unsqueeze(0).to(device)
    scale = torch.tensor([2.0, 3.0, 4.0], dtype=dtype, device=device)
    shift = torch.tensor([1.0, -1.0, 0.5], dtype=dtype, device=device)
    out, _ = image_pipeline(x, color, far, 0.25, (3, 2), scale, shift)
    want = (0.25 * scale + shift).view(1, 3, 1, 1).expand(1, 3, 3, 2)
    torch.testing.assert_close(out, want, atol=1e-14, rtol=0)


@needs_extension
@pytest.mark.parametrize("device", devices())
def test_gradients_of_one_output_only(device):
    """A loss on one output only: the other arrives as no gradient at all and must count as zero."""
    x, color, theta, scale, shift = make_inputs(device, torch.float64, "rotation")
    for pick in (0, 1):
        grads = []
        for fn in (image_pipeline, _reference.image_pipeline):
            x_ = x.clone().requires_grad_()
            color_ = color.clone().requires_grad_()
            outputs = fn(x_, color_, theta, 0.1, (5, 6), scale, shift)
            grads.append(torch.autograd.grad(outputs[pick].sin().sum(), [x_, color_]))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@needs_extension
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size,out_size,fast_mode", [((8, 8), (6, 7), True), ((4, 5), (3, 4), False)])
def test_gradcheck(device, size, out_size, fast_mode):
    x, color, theta, scale, shift = make_inputs(device, torch.float64, "zoom_out", size=size)
    inputs = [t.requires_grad_() for t in (x, color, theta, scale, shift)]

    def fn(x, color, theta, scale, shift):
        return image_pipeline(x, color, theta, 0.2, out_size, scale, shift)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, fast_mode=fast_mode)


@needs_extension
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(device, dtype):
    x, color, theta, scale, shift = make_inputs(device, dtype, "translation", size=(5, 6))
    forward_args = (x.requires_grad_(), color.requires_grad_(), theta.requires_grad_(), 0.2, [4, 3], scale, shift)
    torch.library.opcheck(torch.ops.circuits_vision.image_pipeline.default, forward_args)
    _, image = _reference.image_pipeline(x.detach(), color.detach(), theta.detach(), 0.2, (4, 3), scale, shift)
    grad_out = torch.randn(2, 3, 4, 3, dtype=dtype, device=device)
    backward = torch.ops.circuits_vision._image_pipeline_backward.default
    for grad_image, mask in [(torch.randn_like(image), [True, True]), (None, [False, False])]:
        args = (grad_out, grad_image, x.detach(), color.detach(), theta.detach(), image, 0.2, [4, 3], scale, [*mask])
        torch.library.opcheck(backward, args)


@needs_extension
def test_backward_mask_skips_only_what_is_not_wanted():
    x, color, theta, scale, shift = make_inputs("cpu", torch.float64, "rotation")
    _, image = _reference.image_pipeline(x, color, theta, 0.0, (4, 4), scale, shift)
    grad_out = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    backward = torch.ops.circuits_vision._image_pipeline_backward
    full = backward(grad_out, None, x, color, theta, image, 0.0, [4, 4], scale, [True, True])
    lean = backward(grad_out, None, x, color, theta, image, 0.0, [4, 4], scale, [False, False])
    torch.testing.assert_close(lean[0], full[0], atol=0, rtol=0)  # grad_x does not depend on the mask
    torch.testing.assert_close(lean[1], full[1], atol=0, rtol=0)
    assert full[2].abs().sum() > 0 and full[3].abs().sum() > 0
    assert not lean[2].any() and not lean[3].any() and not lean[4].any()


def test_fallback_runs_the_twin(monkeypatch):
    monkeypatch.setattr(image_pipeline_module, "use_fallback", lambda name: True)
    x, color, theta, scale, shift = make_inputs("cpu", torch.float64, "zoom_in")
    got = outputs_and_grads(image_pipeline, x, color, theta, scale, shift, 0.4, (5, 5))
    want = outputs_and_grads(_reference.image_pipeline, x, color, theta, scale, shift, 0.4, (5, 5))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    out, _ = image_pipeline(x, color, theta, 0.4, 5)  # int out_size and identity normalisation by default
    torch.testing.assert_close(
        out,
        _reference.image_pipeline(
            x, color, theta, 0.4, (5, 5), torch.ones(3, dtype=x.dtype), torch.zeros(3, dtype=x.dtype)
        )[0],
    )


def _bad_inputs():
    """(name, change to the valid arguments, expected message fragment)."""
    f32 = torch.float32

    def with_(index, value):
        return lambda args: args[:index] + [value] + args[index + 1 :]

    return [
        ("x_int", with_(0, torch.ones(2, 3, 4, 4, dtype=torch.int64)), "`x` must be float32 or float64"),
        ("x_3d", with_(0, torch.ones(3, 4, 4)), "`x` must be an RGB batch [N, 3, H, W]"),
        ("x_gray", with_(0, torch.ones(2, 1, 4, 4)), "`x` must be an RGB batch [N, 3, H, W]"),
        ("x_empty", with_(0, torch.ones(2, 3, 0, 4)), "`x` is empty"),
        ("color_shape", with_(1, torch.ones(3, 4)), "`color` must be a [3, 3] colour matrix"),
        ("color_dtype", with_(1, torch.ones(3, 3, dtype=torch.float64)), "`color` is Double but `x` is Float"),
        ("theta_shape", with_(2, torch.ones(2, 3, 3)), "`theta` must hold one [2, 3] affine per image"),
        ("theta_count", with_(2, torch.ones(3, 2, 3)), "`theta` has 3 affines but `x` has 2 images"),
        ("theta_int", with_(2, torch.ones(2, 2, 3, dtype=torch.int32)), "`theta` must be float32 or float64"),
        ("out_size", with_(4, [0, 3]), "`out_size` must be at least 1"),
        ("scale_shape", with_(5, torch.ones(4, dtype=f32)), "`norm_scale` must have shape [3]"),
        ("shift_shape", with_(6, torch.ones(1, 3, dtype=f32)), "`norm_shift` must have shape [3]"),
        ("shift_dtype", with_(6, torch.ones(3, dtype=torch.float64)), "`norm_shift` is Double but `x` is Float"),
    ]


def _valid_args():
    return [
        torch.zeros(2, 3, 4, 4),
        torch.eye(3),
        torch.stack([affine(), affine()]).float(),
        0.0,
        [3, 3],
        torch.ones(3),
        torch.zeros(3),
    ]


@pytest.mark.parametrize("path", ["op", "fallback"])
@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda case: case[0])
def test_bad_input_errors(monkeypatch, path, case):
    _, change, message = case
    if path == "op" and not _extension.extension_available():
        pytest.skip("compiled extension not built")
    if path == "fallback":
        monkeypatch.setattr(image_pipeline_module, "use_fallback", lambda name: True)
        # the twin spells dtypes the torch way
        message = message.replace("Double", "torch.float64").replace("Float", "torch.float32")
    with pytest.raises(RuntimeError) as error:
        image_pipeline(*change(_valid_args()))
    assert message in str(error.value)


@needs_extension
def test_mixed_devices_error():
    if not torch.cuda.is_available():
        pytest.skip("needs a second device")
    args = _valid_args()
    args[1] = args[1].cuda()
    with pytest.raises(RuntimeError, match="`color` is on cuda:0 but `x` is on cpu"):
        image_pipeline(*args)


@needs_extension
def test_second_order_gradients_are_a_clear_error():
    """Differentiating the fused backward raises instead of returning silently wrong numbers."""
    x, color, theta, scale, shift = make_inputs("cpu", torch.float64, "rotation")
    x, color, theta = (t.requires_grad_() for t in (x, color, theta))
    out, _ = image_pipeline(x, color, theta, 0.1, (5, 6), scale, shift)
    grad_x, grad_theta = torch.autograd.grad(out.pow(2).sum(), (x, theta), create_graph=True)  # first order: fine
    want = torch.autograd.grad(
        _reference.image_pipeline(x, color, theta, 0.1, (5, 6), scale, shift)[0].pow(2).sum(), (x, theta)
    )
    torch.testing.assert_close(grad_x, want[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(grad_theta, want[1], atol=1e-10, rtol=1e-10)
    with pytest.raises(RuntimeError, match="image_pipeline: second-order gradients .* are not supported"):
        (grad_x.sum() + grad_theta.sum()).backward()


@pytest.mark.parametrize("path", ["op", "fallback", "meta"])
def test_output_too_large_for_int64_is_a_value_error(monkeypatch, path):
    if path != "fallback" and not _extension.extension_available():
        pytest.skip("compiled extension not built")
    if path == "fallback":
        monkeypatch.setattr(image_pipeline_module, "use_fallback", lambda name: True)
    args = _valid_args()
    if path == "meta":
        args = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in args]
    args[4] = [2**40, 2**40]
    with pytest.raises(
        ValueError,
        match=r"the output \[2, 3, 1099511627776, 1099511627776\] has more elements than "
        "int64 can count; use a smaller `out_size`",
    ):
        image_pipeline(*args)


@needs_extension
@pytest.mark.slow  # the first compile in a process imports and warms up dynamo and AOTAutograd: ~10 s
def test_compile_fullgraph_forward_and_backward():
    """torch.compile(fullgraph=True) traces the op and its backward (aot_eager: inductor's C++ build takes
    minutes on a small CPU) and gives the eager values and gradients of every input."""
    torch.compiler.reset()
    inputs = make_inputs("cpu", torch.float32, "zoom_out")

    def loss(x, color, theta, scale, shift):
        out, image = image_pipeline(x, color, theta, 0.3, (6, 7), scale, shift)
        return out.sin().sum() + image.pow(2).sum()

    results = []
    for fn in (loss, torch.compile(loss, fullgraph=True, backend="aot_eager")):
        leaves = [t.clone().requires_grad_() for t in inputs]
        value = fn(*leaves)
        value.backward()
        results.append([value.detach()] + [t.grad for t in leaves])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@needs_extension
def test_compile_keeps_out_size_symbolic():
    """`out_size` is SymInt[2] in the schema: one compiled graph serves every output size."""
    torch.compiler.reset()
    graphs: list = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def sampled(x, color, theta, size):
        return image_pipeline(x, color, theta, 0.5, size)[0]

    compiled = torch.compile(sampled, fullgraph=True, dynamic=True, backend=backend)
    x, color, theta, _, _ = make_inputs("cpu", torch.float64, "rotation")
    for size in (4, 6, 9):
        got = compiled(x, color, theta, size)
        assert got.shape == (2, 3, size, size)
        torch.testing.assert_close(got, image_pipeline(x, color, theta, 0.5, size)[0], atol=0, rtol=0)
    assert len(graphs) == 1
    targets = {str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert "circuits_vision.image_pipeline" in targets
