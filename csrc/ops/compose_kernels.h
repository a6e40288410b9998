#pragma once
// Host-side pieces of compose_kernels shared by the CPU and CUDA registrations:
// argument checks, the geometry, and the GEMMs around the device-specific
// gather (forward) and spread (backward) passes.
#include <ATen/ATen.h>

#include <tuple>

#include "compose_kernels_math.h"

namespace circuits_vision {
namespace ops {

// Gather pass: products [k2h*k2w*O, k1h*k1w*I] -> composed kernel [O, I, kh, kw].
using GatherFn = void (*)(const at::Tensor& products, at::Tensor& composed, const ComposeGeometry& g);
// Spread pass: grad of composed kernel [O, I, kh, kw] -> grad of products [k2h*k2w*O, k1h*k1w*I].
using SpreadFn = void (*)(const at::Tensor& grad_composed, at::Tensor& grad_products, const ComposeGeometry& g);

at::Tensor compose_kernels_forward(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                                   at::IntArrayRef dilation, GatherFn gather);

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward(const at::Tensor& grad, const at::Tensor& outer,
                                                            const at::Tensor& inner, at::IntArrayRef stride,
                                                            at::IntArrayRef dilation, SpreadFn spread);

}  // namespace ops
}  // namespace circuits_vision
