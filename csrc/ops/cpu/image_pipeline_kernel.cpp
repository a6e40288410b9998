// CPU kernels of image_pipeline.
//
// Forward: pass 1 colours every pixel (a vectorised colour-matrix loop parallel over image
// rows, then ATen's vectorised sigmoid), pass 2 samples every output pixel from the finished
// image (parallel over output rows); both write disjoint memory. Backward: parallel over images; each image's bilinear scatter runs in one
// thread into that image's own gradient plane, so there are no races and no atomics,
// and the colour/sigmoid backward follows on the same (cache-warm) plane. Reductions
// (grad of color, theta, norm) go to per-image float64 partials summed at the end, so
// results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "../image_pipeline.h"

namespace circuits_vision {
namespace ops {

namespace {

// Rows per parallel chunk: enough pixels to amortise the scheduling.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(1, width)); }

// One image row of the pre-sigmoid colour transform: dst[i] = sum_j c[i, j] src[j] per pixel.
template <typename scalar_t>
void colour_row(const scalar_t* c, const scalar_t* __restrict__ src, scalar_t* __restrict__ dst, int64_t width,
                int64_t plane) {
  const scalar_t* __restrict__ r = src;
  const scalar_t* __restrict__ gr = src + plane;
  const scalar_t* __restrict__ b = src + 2 * plane;
  for (int64_t i = 0; i < 3; ++i) {
    const scalar_t ci0 = c[3 * i], ci1 = c[3 * i + 1], ci2 = c[3 * i + 2];
    scalar_t* __restrict__ out = dst + i * plane;
    for (int64_t col = 0; col < width; ++col) out[col] = ci0 * r[col] + ci1 * gr[col] + ci2 * b[col];
  }
}

template <typename scalar_t>
void forward_cpu_impl(const at::Tensor& x, const at::Tensor& color, const at::Tensor& theta, scalar_t pad,
                      const at::Tensor& norm_scale, const at::Tensor& norm_shift, const PipelineGeometry& g,
                      at::Tensor& out, at::Tensor& image) {
  const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
  const scalar_t* theta_ptr = theta.const_data_ptr<scalar_t>();
  scalar_t* image_ptr = image.data_ptr<scalar_t>();
  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  scalar_t c[9], scale[3], shift[3];
  std::copy_n(color.const_data_ptr<scalar_t>(), 9, c);
  std::copy_n(norm_scale.const_data_ptr<scalar_t>(), 3, scale);
  std::copy_n(norm_shift.const_data_ptr<scalar_t>(), 3, shift);
  const int64_t in_plane = g.H * g.W;
  const int64_t out_plane = g.h * g.w;

  // Pass 1: the colour matrix, a plain multiply-add loop the compiler vectorises, then
  // ATen's vectorised sigmoid in place (a scalar exp per value would cost more than both).
  at::parallel_for(0, g.N * g.H, row_grain(g.W), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t offset = (r / g.H) * 3 * in_plane + (r % g.H) * g.W;
      colour_row(c, x_ptr + offset, image_ptr + offset, g.W, in_plane);
    }
  });
  image.sigmoid_();

  // Pass 2: bilinear samples of all three channels per output pixel, then the normalisation.
  at::parallel_for(0, g.N * g.h, row_grain(g.w), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.h;
      const int64_t row = r % g.h;
      const scalar_t* th = theta_ptr + n * 6;
      const scalar_t* img = image_ptr + n * 3 * in_plane;
      scalar_t* dst = out_ptr + n * 3 * out_plane + row * g.w;
      for (int64_t col = 0; col < g.w; ++col) {
        const SourcePoint<scalar_t> p = source_point(th, g, row, col);
        const BilinearTaps<scalar_t> t = bilinear_taps(p.ix, p.iy, g.H, g.W);
        for (int64_t ch = 0; ch < 3; ++ch) {
          scalar_t v[4];
          tap_values(img + ch * in_plane, g.W, t, pad, v);
          dst[ch * out_plane + col] = bilinear_value(t, v) * scale[ch] + shift[ch];
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> image_pipeline_cpu(const at::Tensor& x, const at::Tensor& color,
                                                      const at::Tensor& theta, double pad_value,
                                                      at::IntArrayRef out_size, const at::Tensor& norm_scale,
                                                      const at::Tensor& norm_shift) {
  const PipelineGeometry g = check_image_pipeline_args(x, color, theta, out_size, norm_scale, norm_shift);
  at::Tensor image = at::empty({g.N, 3, g.H, g.W}, x.options());
  at::Tensor out = at::empty({g.N, 3, g.h, g.w}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "image_pipeline_cpu", [&] {
    forward_cpu_impl<scalar_t>(x.contiguous(), color.contiguous(), theta.contiguous(),
                               static_cast<scalar_t>(pad_value), norm_scale.contiguous(), norm_shift.contiguous(), g,
                               out, image);
  });
  return {out, image};
}

// Gradient of one image's samples w.r.t. its image plane (scattered into grad_image),
// and, when asked, its theta and the norm parameters (added to the partials).
template <typename scalar_t>
void scatter_image_grad(const scalar_t* gout, const scalar_t* img, const scalar_t* th, scalar_t pad,
                        const scalar_t* scale, const PipelineGeometry& g, bool need_theta, bool need_norm,
                        scalar_t* grad_image, double* theta_part, double* norm_part) {
  const int64_t in_plane = g.H * g.W;
  const int64_t out_plane = g.h * g.w;
  for (int64_t row = 0; row < g.h; ++row) {
    for (int64_t col = 0; col < g.w; ++col) {
      const SourcePoint<scalar_t> p = source_point(th, g, row, col);
      const BilinearTaps<scalar_t> t = bilinear_taps(p.ix, p.iy, g.H, g.W);
      scalar_t w[4];
      tap_weights(t, w);
      double d_ix = 0, d_iy = 0;
      for (int64_t ch = 0; ch < 3; ++ch) {
        const scalar_t grad = gout[ch * out_plane + row * g.w + col];
        const scalar_t grad_sample = grad * scale[ch];
        scalar_t* plane = grad_image + ch * in_plane + t.y0 * g.W + t.x0;
        if (t.in_y0 && t.in_x0) plane[0] += w[0] * grad_sample;
        if (t.in_y0 && t.in_x1) plane[1] += w[1] * grad_sample;
        if (t.in_y1 && t.in_x0) plane[g.W] += w[2] * grad_sample;
        if (t.in_y1 && t.in_x1) plane[g.W + 1] += w[3] * grad_sample;
        if (need_theta || need_norm) {
          scalar_t v[4];
          tap_values(img + ch * in_plane, g.W, t, pad, v);
          if (need_norm) {
            norm_part[ch] += static_cast<double>(grad) * static_cast<double>(bilinear_value(t, v));
            norm_part[3 + ch] += static_cast<double>(grad);
          }
          if (need_theta) {
            scalar_t dx, dy;
            bilinear_coordinate_grads(t, v, dx, dy);
            d_ix += static_cast<double>(grad_sample) * static_cast<double>(dx);
            d_iy += static_cast<double>(grad_sample) * static_cast<double>(dy);
          }
        }
      }
      if (need_theta) accumulate_theta_grad<scalar_t, double>(p, d_ix, d_iy, g, theta_part);
    }
  }
}

// In place: grad_image of one image -> grad of x; adds the colour matrix's gradient to color_part.
// Works in chunks of pixels with plain loops over arrays (which the compiler vectorises): the
// sums for the colour matrix go to kLanes independent accumulators per chunk, then to float64.
template <typename scalar_t>
void colour_backward(scalar_t* grad, const scalar_t* img, const scalar_t* x, const scalar_t* c, int64_t plane,
                     double* color_part) {
  constexpr int64_t kChunk = 256;
  constexpr int64_t kLanes = 8;
  scalar_t pre[3][kChunk];  // d loss / d (color @ x), sigmoid' = s (1 - s)
  double acc[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t start = 0; start < plane; start += kChunk) {
    const int64_t len = std::min(kChunk, plane - start);
    for (int64_t i = 0; i < 3; ++i) {
      const scalar_t* __restrict__ g = grad + i * plane + start;
      const scalar_t* __restrict__ s = img + i * plane + start;
      for (int64_t q = 0; q < len; ++q) pre[i][q] = g[q] * s[q] * (scalar_t(1) - s[q]);
    }
    for (int64_t j = 0; j < 3; ++j) {
      scalar_t* __restrict__ g = grad + j * plane + start;
      const scalar_t c0 = c[j], c1 = c[3 + j], c2 = c[6 + j];
      for (int64_t q = 0; q < len; ++q) g[q] = c0 * pre[0][q] + c1 * pre[1][q] + c2 * pre[2][q];
    }
    for (int64_t j = 0; j < 3; ++j) {
      const scalar_t* __restrict__ xj = x + j * plane + start;
      for (int64_t i = 0; i < 3; ++i) {
        scalar_t lanes[kLanes] = {};
        int64_t q = 0;
        for (; q + kLanes <= len; q += kLanes) {
          for (int64_t k = 0; k < kLanes; ++k) lanes[k] += pre[i][q + k] * xj[q + k];
        }
        scalar_t sum = 0;
        for (int64_t k = 0; k < kLanes; ++k) sum += lanes[k];
        for (; q < len; ++q) sum += pre[i][q] * xj[q];
        acc[i * 3 + j] += static_cast<double>(sum);
      }
    }
  }
  for (int64_t k = 0; k < 9; ++k) color_part[k] += acc[k];
}

template <typename scalar_t>
void backward_cpu_impl(const at::Tensor& grad_out, const at::Tensor& grad_image, const at::Tensor& x,
                       const at::Tensor& color, const at::Tensor& theta, const at::Tensor& image, scalar_t pad,
                       const at::Tensor& norm_scale, const PipelineGeometry& g, bool need_theta, bool need_norm,
                       at::Tensor& grad_x, at::Tensor& color_part, at::Tensor& theta_part, at::Tensor& norm_part) {
  const scalar_t* gout_ptr = grad_out.defined() ? grad_out.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* gimage_ptr = grad_image.defined() ? grad_image.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
  const scalar_t* theta_ptr = theta.const_data_ptr<scalar_t>();
  const scalar_t* image_ptr = image.const_data_ptr<scalar_t>();
  scalar_t* grad_x_ptr = grad_x.data_ptr<scalar_t>();
  double* color_part_ptr = color_part.data_ptr<double>();
  double* theta_part_ptr = theta_part.data_ptr<double>();
  double* norm_part_ptr = norm_part.data_ptr<double>();
  scalar_t c[9], scale[3];
  std::copy_n(color.const_data_ptr<scalar_t>(), 9, c);
  std::copy_n(norm_scale.const_data_ptr<scalar_t>(), 3, scale);
  const int64_t in_plane = g.H * g.W;
  const int64_t out_plane = g.h * g.w;

  at::parallel_for(0, g.N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      scalar_t* grad = grad_x_ptr + n * 3 * in_plane;
      if (gimage_ptr != nullptr) {
        std::copy_n(gimage_ptr + n * 3 * in_plane, 3 * in_plane, grad);
      } else {
        std::fill_n(grad, 3 * in_plane, scalar_t(0));
      }
      if (gout_ptr != nullptr) {
        scatter_image_grad(gout_ptr + n * 3 * out_plane, image_ptr + n * 3 * in_plane, theta_ptr + n * 6, pad, scale,
                           g, need_theta, need_norm, grad, theta_part_ptr + n * 6, norm_part_ptr + n * 6);
      }
      colour_backward(grad, image_ptr + n * 3 * in_plane, x_ptr + n * 3 * in_plane, c, in_plane,
                      color_part_ptr + n * 9);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> image_pipeline_backward_cpu(
    const c10::optional<at::Tensor>& grad_out, const c10::optional<at::Tensor>& grad_image, const at::Tensor& x,
    const at::Tensor& color, const at::Tensor& theta, const at::Tensor& image, double pad_value,
    at::IntArrayRef out_size, const at::Tensor& norm_scale, std::array<bool, 2> output_mask) {
  const PipelineGeometry g =
      check_image_pipeline_backward_args(grad_out, grad_image, x, color, theta, image, out_size, norm_scale);
  const at::Tensor gout =
      grad_out.has_value() && grad_out->defined() ? grad_out->contiguous() : at::Tensor();
  const at::Tensor gimage =
      grad_image.has_value() && grad_image->defined() ? grad_image->contiguous() : at::Tensor();
  const auto partial_options = x.options().dtype(at::kDouble);
  at::Tensor grad_x = at::empty({g.N, 3, g.H, g.W}, x.options());
  at::Tensor color_part = at::zeros({g.N, 9}, partial_options);
  at::Tensor theta_part = at::zeros({g.N, 6}, partial_options);
  at::Tensor norm_part = at::zeros({g.N, 6}, partial_options);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "image_pipeline_backward_cpu", [&] {
    backward_cpu_impl<scalar_t>(gout, gimage, x.contiguous(), color.contiguous(), theta.contiguous(),
                                image.contiguous(), static_cast<scalar_t>(pad_value), norm_scale.contiguous(), g,
                                output_mask[0], output_mask[1], grad_x, color_part, theta_part, norm_part);
  });
  const auto dtype = x.scalar_type();
  const at::Tensor norm_sum = norm_part.sum(0).to(dtype);
  return {grad_x, color_part.sum(0).view({3, 3}).to(dtype), theta_part.view({g.N, 2, 3}).to(dtype),
          norm_sum.slice(0, 0, 3).clone(), norm_sum.slice(0, 3, 6).clone()};
}

}  // namespace

TORCH_LIBRARY_IMPL(circuits_vision, CPU, m) {
  m.impl("image_pipeline", &image_pipeline_cpu);
  m.impl("_image_pipeline_backward", &image_pipeline_backward_cpu);
}

}  // namespace ops
}  // namespace circuits_vision
