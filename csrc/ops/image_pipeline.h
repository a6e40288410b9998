#pragma once
// Host-side pieces of image_pipeline shared by the CPU and CUDA registrations: the
// argument checks (one message per mistake, naming the argument and the fix) and the
// geometry they establish.
#include <ATen/ATen.h>

#include "image_pipeline_math.h"

namespace circuits_vision {
namespace ops {

// Checks the forward's arguments; returns the sizes the kernels loop over.
PipelineGeometry check_image_pipeline_args(const at::Tensor& x, const at::Tensor& color, const at::Tensor& theta,
                                           at::IntArrayRef out_size, const at::Tensor& norm_scale,
                                           const at::Tensor& norm_shift);

// Checks the backward's arguments (the forward's plus the incoming gradients, either of
// which may be undefined when that output received no gradient).
PipelineGeometry check_image_pipeline_backward_args(const c10::optional<at::Tensor>& grad_out,
                                                    const c10::optional<at::Tensor>& grad_image, const at::Tensor& x,
                                                    const at::Tensor& color, const at::Tensor& theta,
                                                    const at::Tensor& image, at::IntArrayRef out_size,
                                                    const at::Tensor& norm_scale);

}  // namespace ops
}  // namespace circuits_vision
