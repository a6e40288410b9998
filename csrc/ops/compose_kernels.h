#pragma once
// Host-side pieces of compose_kernels shared by the CPU and CUDA registrations:
// argument checks, the geometry, and the GEMM loop around the device-specific
// window passes (accumulate a patch into the composed kernel; read a window back out).
#include <ATen/ATen.h>

#include <tuple>

#include "compose_kernels_math.h"

namespace circuits_vision {
namespace ops {

// composed[o, y0 + a*step_y, x0 + b*step_x, :] += patch[o, a, b, :]   (composed: [O, kh, kw, I] contiguous)
using AccumulateFn = void (*)(const at::Tensor& patch, at::Tensor& composed, const ComposeGeometry& g,
                              const PatchWindow& w);
// patch[o, a, b, :] = composed[o, y0 + a*step_y, x0 + b*step_x, :]
using ReadWindowFn = void (*)(const at::Tensor& composed, at::Tensor& patch, const ComposeGeometry& g,
                              const PatchWindow& w);

// Checks the arguments (TORCH_CHECK messages naming them) and returns the sizes of the composition.
ComposeGeometry make_geometry(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                              at::IntArrayRef dilation);

at::Tensor compose_kernels_forward(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                                   at::IntArrayRef dilation, AccumulateFn accumulate);

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward(const at::Tensor& grad, const at::Tensor& outer,
                                                            const at::Tensor& inner, at::IntArrayRef stride,
                                                            at::IntArrayRef dilation, ReadWindowFn read_window);

}  // namespace ops
}  // namespace circuits_vision
