// CUDA kernels of image_pipeline.
//
// Forward: one thread per pixel colours the image, then one thread per output pixel
// samples all three channels. Backward: one thread per output pixel spreads its gradient
// onto the image's taps with atomicAdd (blocks are laid out per image, so the theta and
// norm gradients reduce inside a block and cost one atomic per block), then one thread
// per pixel runs the sigmoid/colour backward in place. Reductions accumulate in float64.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "../image_pipeline.h"
#include "helpers.cuh"

namespace circuits_vision {
namespace ops {

namespace {

using launch::blocks_for;
using launch::kMaxGridY;
using launch::kThreads;
using launch::kWarps;

// Sums K values over the block and adds the totals to target[0..K) (one atomic each).
// Every thread of the block must call it.
template <int K>
__device__ void block_sum_to(double (&values)[K], double* target) {
  __shared__ double partial[K][kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    for (int offset = 16; offset > 0; offset /= 2) values[k] += __shfl_down_sync(0xffffffffu, values[k], offset);
  }
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) partial[k][warp] = values[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double v = lane < kWarps ? partial[k][lane] : 0.0;
      for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
      if (lane == 0 && v != 0.0) atomicAdd(target + k, v);
    }
  }
  __syncthreads();  // `partial` is reused by the next call
}

template <typename scalar_t>
__global__ void colour_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ color,
                              scalar_t* __restrict__ image, int64_t plane, int64_t total) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  const int64_t offset = (index / plane) * 3 * plane + index % plane;
  colour_pixel(color, x[offset], x[offset + plane], x[offset + 2 * plane], image[offset], image[offset + plane],
               image[offset + 2 * plane]);
}

template <typename scalar_t>
__global__ void sample_kernel(const scalar_t* __restrict__ image, const scalar_t* __restrict__ theta,
                              const scalar_t* __restrict__ scale, const scalar_t* __restrict__ shift, scalar_t pad,
                              PipelineGeometry g, scalar_t* __restrict__ out, int64_t total) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  const int64_t out_plane = g.h * g.w;
  const int64_t n = index / out_plane;
  const int64_t q = index % out_plane;
  const SourcePoint<scalar_t> p = source_point(theta + n * 6, g, q / g.w, q % g.w);
  const BilinearTaps<scalar_t> t = bilinear_taps(p.ix, p.iy, g.H, g.W);
  const scalar_t* img = image + n * 3 * g.H * g.W;
  scalar_t* dst = out + n * 3 * out_plane + q;
#pragma unroll
  for (int ch = 0; ch < 3; ++ch) {
    scalar_t v[4];
    tap_values(img + ch * g.H * g.W, g.W, t, pad, v);
    dst[ch * out_plane] = bilinear_value(t, v) * scale[ch] + shift[ch];
  }
}

// grid: x over output pixels of one image, y over images (strided when N > kMaxGridY).
template <typename scalar_t>
__global__ void scatter_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ image,
                               const scalar_t* __restrict__ theta, const scalar_t* __restrict__ scale, scalar_t pad,
                               PipelineGeometry g, bool need_theta, bool need_norm, scalar_t* __restrict__ grad_image,
                               double* __restrict__ theta_acc, double* __restrict__ norm_acc) {
  const int64_t out_plane = g.h * g.w;
  const int64_t in_plane = g.H * g.W;
  const int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t n = blockIdx.y; n < g.N; n += gridDim.y) {
    double theta_grad[6] = {0, 0, 0, 0, 0, 0};
    double norm_grad[6] = {0, 0, 0, 0, 0, 0};
    if (q < out_plane) {
      const SourcePoint<scalar_t> p = source_point(theta + n * 6, g, q / g.w, q % g.w);
      const BilinearTaps<scalar_t> t = bilinear_taps(p.ix, p.iy, g.H, g.W);
      scalar_t w[4];
      tap_weights(t, w);
      double d_ix = 0, d_iy = 0;
      for (int ch = 0; ch < 3; ++ch) {
        const scalar_t grad = grad_out[(n * 3 + ch) * out_plane + q];
        const scalar_t grad_sample = grad * scale[ch];
        scalar_t* plane = grad_image + (n * 3 + ch) * in_plane;
        const int64_t tap = t.y0 * g.W + t.x0;
        if (t.in_y0 && t.in_x0) atomicAdd(plane + tap, w[0] * grad_sample);
        if (t.in_y0 && t.in_x1) atomicAdd(plane + tap + 1, w[1] * grad_sample);
        if (t.in_y1 && t.in_x0) atomicAdd(plane + tap + g.W, w[2] * grad_sample);
        if (t.in_y1 && t.in_x1) atomicAdd(plane + tap + g.W + 1, w[3] * grad_sample);
        if (need_theta || need_norm) {
          scalar_t v[4];
          tap_values(image + (n * 3 + ch) * in_plane, g.W, t, pad, v);
          if (need_norm) {
            norm_grad[ch] += static_cast<double>(grad) * static_cast<double>(bilinear_value(t, v));
            norm_grad[3 + ch] += static_cast<double>(grad);
          }
          if (need_theta) {
            scalar_t dx, dy;
            bilinear_coordinate_grads(t, v, dx, dy);
            d_ix += static_cast<double>(grad_sample) * static_cast<double>(dx);
            d_iy += static_cast<double>(grad_sample) * static_cast<double>(dy);
          }
        }
      }
      if (need_theta) accumulate_theta_grad<scalar_t, double>(p, d_ix, d_iy, g, theta_grad);
    }
    if (need_theta) block_sum_to<6>(theta_grad, theta_acc + n * 6);
    if (need_norm) block_sum_to<6>(norm_grad, norm_acc);
  }
}

// In place: grad of image -> grad of x; the colour matrix's gradient reduces into color_acc [9].
template <typename scalar_t>
__global__ void colour_backward_kernel(scalar_t* __restrict__ grad, const scalar_t* __restrict__ image,
                                       const scalar_t* __restrict__ x, const scalar_t* __restrict__ color,
                                       int64_t plane, int64_t total, double* __restrict__ color_acc) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  double acc[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  if (index < total) {
    const int64_t offset = (index / plane) * 3 * plane + index % plane;
    scalar_t pre[3], xv[3];
#pragma unroll
    for (int i = 0; i < 3; ++i) {
      const scalar_t s = image[offset + i * plane];
      pre[i] = grad[offset + i * plane] * s * (scalar_t(1) - s);  // sigmoid' = s (1 - s)
      xv[i] = x[offset + i * plane];
    }
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      grad[offset + j * plane] = color[j] * pre[0] + color[3 + j] * pre[1] + color[6 + j] * pre[2];
    }
#pragma unroll
    for (int i = 0; i < 3; ++i) {
#pragma unroll
      for (int j = 0; j < 3; ++j) acc[i * 3 + j] = static_cast<double>(pre[i]) * static_cast<double>(xv[j]);
    }
  }
  block_sum_to<9>(acc, color_acc);
}

std::tuple<at::Tensor, at::Tensor> image_pipeline_cuda(const at::Tensor& x, const at::Tensor& color,
                                                       const at::Tensor& theta, double pad_value,
                                                       at::IntArrayRef out_size, const at::Tensor& norm_scale,
                                                       const at::Tensor& norm_shift) {
  const PipelineGeometry g = check_image_pipeline_args(x, color, theta, out_size, norm_scale, norm_shift);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), cc = color.contiguous(), tc = theta.contiguous();
  const at::Tensor sc = norm_scale.contiguous(), bc = norm_shift.contiguous();
  at::Tensor image = at::empty({g.N, 3, g.H, g.W}, x.options());
  at::Tensor out = at::empty({g.N, 3, g.h, g.w}, x.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t pixels = g.N * g.H * g.W;
  const int64_t out_pixels = g.N * g.h * g.w;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "image_pipeline_cuda", [&] {
    colour_kernel<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
        xc.const_data_ptr<scalar_t>(), cc.const_data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), g.H * g.W, pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    sample_kernel<scalar_t><<<blocks_for(out_pixels), kThreads, 0, stream>>>(
        image.const_data_ptr<scalar_t>(), tc.const_data_ptr<scalar_t>(), sc.const_data_ptr<scalar_t>(),
        bc.const_data_ptr<scalar_t>(), static_cast<scalar_t>(pad_value), g, out.data_ptr<scalar_t>(), out_pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, image};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> image_pipeline_backward_cuda(
    const c10::optional<at::Tensor>& grad_out, const c10::optional<at::Tensor>& grad_image, const at::Tensor& x,
    const at::Tensor& color, const at::Tensor& theta, const at::Tensor& image, double pad_value,
    at::IntArrayRef out_size, const at::Tensor& norm_scale, std::array<bool, 2> output_mask) {
  const PipelineGeometry g =
      check_image_pipeline_backward_args(grad_out, grad_image, x, color, theta, image, out_size, norm_scale);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), cc = color.contiguous(), tc = theta.contiguous();
  const at::Tensor ic = image.contiguous(), sc = norm_scale.contiguous();
  // grad_x starts as the image's own incoming gradient and collects the samples' gradients.
  at::Tensor grad_x = grad_image.has_value() && grad_image->defined()
                          ? grad_image->clone(at::MemoryFormat::Contiguous)
                          : at::zeros({g.N, 3, g.H, g.W}, x.options());
  const auto acc_options = x.options().dtype(at::kDouble);
  at::Tensor color_acc = at::zeros({9}, acc_options);
  at::Tensor theta_acc = at::zeros({g.N, 6}, acc_options);
  at::Tensor norm_acc = at::zeros({6}, acc_options);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t pixels = g.N * g.H * g.W;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "image_pipeline_backward_cuda", [&] {
    if (grad_out.has_value() && grad_out->defined()) {
      const at::Tensor gout = grad_out->contiguous();
      const dim3 grid(static_cast<unsigned>(blocks_for(g.h * g.w)), static_cast<unsigned>(std::min(g.N, kMaxGridY)));
      scatter_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
          gout.const_data_ptr<scalar_t>(), ic.const_data_ptr<scalar_t>(), tc.const_data_ptr<scalar_t>(),
          sc.const_data_ptr<scalar_t>(), static_cast<scalar_t>(pad_value), g, output_mask[0], output_mask[1],
          grad_x.data_ptr<scalar_t>(), theta_acc.data_ptr<double>(), norm_acc.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    colour_backward_kernel<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
        grad_x.data_ptr<scalar_t>(), ic.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(),
        cc.const_data_ptr<scalar_t>(), g.H * g.W, pixels, color_acc.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const auto dtype = x.scalar_type();
  const at::Tensor norm_sum = norm_acc.to(dtype);
  return {grad_x, color_acc.view({3, 3}).to(dtype), theta_acc.view({g.N, 2, 3}).to(dtype),
          norm_sum.slice(0, 0, 3).clone(), norm_sum.slice(0, 3, 6).clone()};
}

}  // namespace

TORCH_LIBRARY_IMPL(circuits_vision, CUDA, m) {
  m.impl("image_pipeline", &image_pipeline_cuda);
  m.impl("_image_pipeline_backward", &image_pipeline_backward_cuda);
}

}  // namespace ops
}  // namespace circuits_vision
