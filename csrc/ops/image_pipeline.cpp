// image_pipeline: the fused image pipeline of feature visualisation.
//
//   image = sigmoid(color @ x)                       x [N, 3, H, W] decorrelated pre-colour image, color [3, 3]
//   out   = sample(image, theta) * scale + shift     theta [N, 2, 3], out [N, 3, h, w]
//
// where sample is F.grid_sample(image - pad, F.affine_grid(theta, (N, 3, h, w)), bilinear, zeros padding,
// align_corners=False) + pad: every bilinear tap outside the image reads `pad_value`. Both `out` and
// `image` are returned (the image is what a render displays).
//
// The backward is its own op, _image_pipeline_backward; output_mask = (theta, norm) says whether the
// gradients of theta and of norm_scale / norm_shift are wanted (they cost an extra read of the taps);
// unwanted ones come back as zeros.
#include "image_pipeline.h"

#include <c10/util/safe_numerics.h>
#include <torch/library.h>

#include <limits>

namespace circuits_vision {
namespace ops {

namespace {

void check_same_place(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  check_same_device(t, x, op, name, "x", "move every tensor argument to one device");
  check_same_dtype(t, x, op, name, "x", "give every tensor argument the same dtype");
}

void check_vector3(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  check_floating(t, op, name);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == 3, op, ": `", name, "` must have shape [3] (one value per channel), got ",
              t.sizes());
  check_same_place(t, x, op, name);
}

}  // namespace

PipelineGeometry check_image_pipeline_args(const at::Tensor& x, const at::Tensor& color, const at::Tensor& theta,
                                           at::IntArrayRef out_size, const at::Tensor& norm_scale,
                                           const at::Tensor& norm_shift) {
  const char* op = "image_pipeline";
  check_floating(x, op, "x");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, op, ": `x` must be an RGB batch [N, 3, H, W], got shape ", x.sizes());
  TORCH_CHECK(x.numel() > 0, op, ": `x` is empty (shape ", x.sizes(), "); N, H and W must be at least 1");
  check_floating(color, op, "color");
  TORCH_CHECK(color.dim() == 2 && color.size(0) == 3 && color.size(1) == 3, op,
              ": `color` must be a [3, 3] colour matrix, got shape ", color.sizes());
  check_same_place(color, x, op, "color");
  check_floating(theta, op, "theta");
  TORCH_CHECK(theta.dim() == 3 && theta.size(1) == 2 && theta.size(2) == 3, op,
              ": `theta` must hold one [2, 3] affine per image, shape [N, 2, 3], got ", theta.sizes());
  TORCH_CHECK(theta.size(0) == x.size(0), op, ": `theta` has ", theta.size(0), " affines but `x` has ", x.size(0),
              " images; pass one affine per image (theta.shape[0] == x.shape[0])");
  check_same_place(theta, x, op, "theta");
  TORCH_CHECK(out_size.size() == 2, op, ": `out_size` must be (h, w), got ", out_size.size(), " values");
  TORCH_CHECK(out_size[0] >= 1 && out_size[1] >= 1, op, ": `out_size` must be at least 1 in each dimension, got ",
              out_size);
  int64_t out_elements = 0;
  const bool too_many = c10::mul_overflows(x.size(0) * 3, out_size[0], &out_elements) ||
                        c10::mul_overflows(out_elements, out_size[1], &out_elements) ||
                        out_elements > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(x.element_size());
  TORCH_CHECK_VALUE(!too_many, op, ": the output [", x.size(0), ", 3, ", out_size[0], ", ", out_size[1],
                    "] has more elements than int64 can count; use a smaller `out_size`");
  check_vector3(norm_scale, x, op, "norm_scale");
  check_vector3(norm_shift, x, op, "norm_shift");
  PipelineGeometry g;
  g.N = x.size(0);
  g.H = x.size(2);
  g.W = x.size(3);
  g.h = out_size[0];
  g.w = out_size[1];
  return g;
}

PipelineGeometry check_image_pipeline_backward_args(const c10::optional<at::Tensor>& grad_out,
                                                    const c10::optional<at::Tensor>& grad_image, const at::Tensor& x,
                                                    const at::Tensor& color, const at::Tensor& theta,
                                                    const at::Tensor& image, at::IntArrayRef out_size,
                                                    const at::Tensor& norm_scale) {
  const char* op = "_image_pipeline_backward";
  const PipelineGeometry g = check_image_pipeline_args(x, color, theta, out_size, norm_scale, norm_scale);
  TORCH_CHECK(image.sizes() == x.sizes(), op, ": `image` must have the shape of `x` ", x.sizes(), ", got ",
              image.sizes());
  check_same_place(image, x, op, "image");
  if (grad_out.has_value() && grad_out->defined()) {
    TORCH_CHECK(grad_out->dim() == 4 && grad_out->size(0) == g.N && grad_out->size(1) == 3 &&
                    grad_out->size(2) == g.h && grad_out->size(3) == g.w,
                op, ": `grad_out` must have shape [", g.N, ", 3, ", g.h, ", ", g.w, "], got ", grad_out->sizes());
    check_same_place(*grad_out, x, op, "grad_out");
  }
  if (grad_image.has_value() && grad_image->defined()) {
    TORCH_CHECK(grad_image->sizes() == x.sizes(), op, ": `grad_image` must have the shape of `x` ", x.sizes(),
                ", got ", grad_image->sizes());
    check_same_place(*grad_image, x, op, "grad_image");
  }
  return g;
}

TORCH_LIBRARY_FRAGMENT(circuits_vision, m) {
  m.def(
      "image_pipeline(Tensor x, Tensor color, Tensor theta, float pad_value, SymInt[2] out_size, Tensor norm_scale, "
      "Tensor norm_shift) -> (Tensor out, Tensor image)");
  m.def(
      "_image_pipeline_backward(Tensor? grad_out, Tensor? grad_image, Tensor x, Tensor color, Tensor theta, "
      "Tensor image, float pad_value, SymInt[2] out_size, Tensor norm_scale, bool[2] output_mask) -> "
      "(Tensor grad_x, Tensor grad_color, Tensor grad_theta, Tensor grad_norm_scale, Tensor grad_norm_shift)");
}

}  // namespace ops
}  // namespace circuits_vision
