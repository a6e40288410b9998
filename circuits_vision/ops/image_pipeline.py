"""image_pipeline: the fused image pipeline of feature visualisation.

One op takes the decorrelated pre-colour image that a parameterisation produces to the
model's input: colour decorrelation and sigmoid (``image = sigmoid(color @ x)`` per pixel),
a per-image affine resample (the jitter / rotate / scale transforms as one ``theta``), and
the model's normalisation. It returns the model input and the displayable image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from circuits_vision.ops import _reference
from circuits_vision.ops._args import int_pair
from circuits_vision.ops._extension import extension_available, use_fallback

_OP = "circuits_vision::image_pipeline"
_BACKWARD_OP = "circuits_vision::_image_pipeline_backward"


def _check_output_fits(x, out_size) -> None:
    """ValueError unless the output [N, 3, h, w] can be indexed with int64 (the kernels' check, same message)."""
    torch._check_value(
        x.shape[0] * 3 * out_size[0] * out_size[1] * x.element_size() <= 2**63 - 1,
        lambda: (
            f"image_pipeline: the output [{x.shape[0]}, 3, {out_size[0]}, {out_size[1]}] has more elements than "
            "int64 can count; use a smaller `out_size`"
        ),
    )


def _check_fallback_args(x, color, theta, out_size, norm_scale, norm_shift) -> None:
    """The checks the compiled op makes, for the pure-PyTorch path (same messages)."""
    named = {"x": x, "color": color, "theta": theta, "norm_scale": norm_scale, "norm_shift": norm_shift}
    for name, t in named.items():
        if t.dtype not in (torch.float32, torch.float64):
            raise RuntimeError(
                f"image_pipeline: `{name}` must be float32 or float64, got {t.dtype}; "
                "convert it with .float() or .double()"
            )
    if x.dim() != 4 or x.shape[1] != 3:
        raise RuntimeError(f"image_pipeline: `x` must be an RGB batch [N, 3, H, W], got shape {list(x.shape)}")
    if x.numel() == 0:
        raise RuntimeError(f"image_pipeline: `x` is empty (shape {list(x.shape)}); N, H and W must be at least 1")
    if tuple(color.shape) != (3, 3):
        raise RuntimeError(f"image_pipeline: `color` must be a [3, 3] colour matrix, got shape {list(color.shape)}")
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise RuntimeError(
            f"image_pipeline: `theta` must hold one [2, 3] affine per image, shape [N, 2, 3], got {list(theta.shape)}"
        )
    if theta.shape[0] != x.shape[0]:
        raise RuntimeError(
            f"image_pipeline: `theta` has {theta.shape[0]} affines but `x` has {x.shape[0]} images; "
            "pass one affine per image (theta.shape[0] == x.shape[0])"
        )
    if min(out_size) < 1:
        raise RuntimeError(f"image_pipeline: `out_size` must be at least 1 in each dimension, got {list(out_size)}")
    _check_output_fits(x, out_size)
    for name in ("norm_scale", "norm_shift"):
        if tuple(named[name].shape) != (3,):
            raise RuntimeError(
                f"image_pipeline: `{name}` must have shape [3] (one value per channel), got {list(named[name].shape)}"
            )
    for name, t in named.items():
        if t.device != x.device:
            raise RuntimeError(
                f"image_pipeline: `{name}` is on {t.device} but `x` is on {x.device}; "
                "move every tensor argument to one device"
            )
        if t.dtype != x.dtype:
            raise RuntimeError(
                f"image_pipeline: `{name}` is {t.dtype} but `x` is {x.dtype}; give every tensor argument the same dtype"
            )


def image_pipeline(
    x: torch.Tensor,
    color: torch.Tensor,
    theta: torch.Tensor,
    pad_value: float,
    out_size: int | Sequence[int],
    norm_scale: torch.Tensor | None = None,
    norm_shift: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour, sigmoid, affine-resample and normalise a batch of images in one fused op.

    Args:
        x: ``[N, 3, H, W]`` pre-colour image in decorrelated space (what an FFT or pixel
            parameterisation outputs).
        color: ``[3, 3]`` colour matrix; ``image = sigmoid(color @ x)`` per pixel.
        theta: ``[N, 2, 3]`` per-image affine in ``F.affine_grid``'s convention
            (align_corners=False): maps normalised output coordinates to input ones.
        pad_value: what bilinear taps outside the image read.
        out_size: ``(h, w)`` of the output (an int for a square).
        norm_scale, norm_shift: ``[3]`` per-channel ``out * scale + shift`` (None: 1 and 0).

    Returns:
        ``(out [N, 3, h, w], image [N, 3, H, W])``: ``out`` equals
        ``F.grid_sample(image - pad_value, F.affine_grid(theta, (N, 3, h, w)), bilinear, zeros,
        align_corners=False) + pad_value``, then normalised; ``image`` lies in [0, 1].
        Float32 and float64, CPU and CUDA, differentiable in x, color, theta, norm_scale and norm_shift
        (theta's and the norm's gradients are only computed when one of them requires grad). Second-order
        gradients are not supported: differentiating the backward raises RuntimeError.
        A source point more than a pixel outside the image reads ``pad_value`` with zero gradient, at
        any distance (the compiled kernels also read ``pad_value`` for a NaN theta).
    """
    out_size = int_pair(out_size, "image_pipeline: `out_size` must be an int or (h, w)")
    if norm_scale is None:
        norm_scale = torch.ones(3, dtype=x.dtype, device=x.device)
    if norm_shift is None:
        norm_shift = torch.zeros(3, dtype=x.dtype, device=x.device)
    if use_fallback("image_pipeline"):
        _check_fallback_args(x, color, theta, out_size, norm_scale, norm_shift)
        return _reference.image_pipeline(x, color, theta, float(pad_value), out_size, norm_scale, norm_shift)
    return torch.ops.circuits_vision.image_pipeline(
        x, color, theta, float(pad_value), list(out_size), norm_scale, norm_shift
    )


if extension_available():

    @torch.library.register_fake(_OP)
    def _image_pipeline_fake(x, color, theta, pad_value, out_size, norm_scale, norm_shift):
        torch._check(x.dim() == 4 and x.shape[1] == 3, lambda: "image_pipeline: `x` must be [N, 3, H, W]")
        torch._check(
            theta.dim() == 3 and theta.shape[0] == x.shape[0], lambda: "image_pipeline: `theta` must be [N, 2, 3]"
        )
        _check_output_fits(x, out_size)
        out = x.new_empty((x.shape[0], 3, out_size[0], out_size[1]))
        return out, torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(_BACKWARD_OP)
    def _image_pipeline_backward_fake(
        grad_out, grad_image, x, color, theta, image, pad_value, out_size, norm_scale, output_mask
    ):
        return (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            color.new_empty((3, 3)),
            theta.new_empty((theta.shape[0], 2, 3)),
            norm_scale.new_empty((3,)),
            norm_scale.new_empty((3,)),
        )

    def _setup_context(ctx, inputs, output):
        x, color, theta, pad_value, out_size, norm_scale, norm_shift = inputs
        _, image = output
        ctx.save_for_backward(x, color, theta, image, norm_scale)
        ctx.pad_value, ctx.out_size = pad_value, out_size
        # An output that received no gradient arrives as None instead of a tensor of zeros.
        ctx.set_materialize_grads(False)

    def _backward(ctx, grad_out, grad_image):
        x, color, theta, image, norm_scale = ctx.saved_tensors
        need = ctx.needs_input_grad
        if grad_out is None and grad_image is None:
            return None, None, None, None, None, None, None
        mask = [bool(need[2]), bool(need[5] or need[6])]
        grad_x, grad_color, grad_theta, grad_scale, grad_shift = torch.ops.circuits_vision._image_pipeline_backward(
            grad_out, grad_image, x, color, theta, image, ctx.pad_value, ctx.out_size, norm_scale, mask
        )
        return (
            grad_x if need[0] else None,
            grad_color if need[1] else None,
            grad_theta if need[2] else None,
            None,
            None,
            grad_scale if need[5] else None,
            grad_shift if need[6] else None,
        )

    torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)

    # Second-order gradients would need the derivative of the bilinear taps' weights with respect to
    # theta, which the kernels do not compute; without this registration autograd would only warn and
    # return wrong numbers, so differentiating the backward is an error that says what to do instead.
    def _setup_backward_context(ctx, inputs, output):
        pass

    def _backward_of_backward(ctx, *grads):
        raise RuntimeError(
            "image_pipeline: second-order gradients (differentiating a gradient taken with create_graph=True) are "
            "not supported by the fused op; for them, compose the same steps from differentiable torch ops "
            "(sigmoid of the colour matrix times x, F.affine_grid, F.grid_sample, then the normalisation)"
        )

    torch.library.register_autograd(_BACKWARD_OP, _backward_of_backward, setup_context=_setup_backward_context)
