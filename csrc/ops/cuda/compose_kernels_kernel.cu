// CUDA kernels of compose_kernels: strided window passes between a GEMM patch and the composed
// kernel, one thread per patch element (consecutive threads along the contiguous input channels).
// The GEMMs around them run through at::mm (cuBLAS).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../compose_kernels.h"
#include "helpers.cuh"

namespace circuits_vision {
namespace ops {

namespace {

using launch::blocks_for;
using launch::kThreads;

struct PatchIndex {
  int64_t o, a, b, i;
};

__device__ inline PatchIndex unravel(const ComposeGeometry& g, const PatchWindow& w, int64_t index) {
  PatchIndex p;
  p.i = index % g.I;
  index /= g.I;
  p.b = index % w.B;
  index /= w.B;
  p.a = index % w.A;
  p.o = index / w.A;
  return p;
}

template <typename scalar_t>
__global__ void accumulate_kernel(const scalar_t* __restrict__ patch, scalar_t* __restrict__ composed,
                                  ComposeGeometry g, PatchWindow w, int64_t total) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  const PatchIndex p = unravel(g, w, index);
  composed[window_offset(g, w, p.o, p.a, p.b) + p.i] += patch[patch_offset(w, p.o, p.a, p.b) + p.i];
}

template <typename scalar_t>
__global__ void read_window_kernel(const scalar_t* __restrict__ composed, scalar_t* __restrict__ patch,
                                   ComposeGeometry g, PatchWindow w, int64_t total) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  const PatchIndex p = unravel(g, w, index);
  patch[patch_offset(w, p.o, p.a, p.b) + p.i] = composed[window_offset(g, w, p.o, p.a, p.b) + p.i];
}

void accumulate_cuda(const at::Tensor& patch, at::Tensor& composed, const ComposeGeometry& g, const PatchWindow& w) {
  const int64_t total = g.O * w.A * w.B * g.I;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "compose_kernels_cuda", [&] {
    accumulate_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        patch.const_data_ptr<scalar_t>(), composed.data_ptr<scalar_t>(), g, w, total);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void read_window_cuda(const at::Tensor& composed, at::Tensor& patch, const ComposeGeometry& g, const PatchWindow& w) {
  const int64_t total = g.O * w.A * w.B * g.I;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(composed.scalar_type(), "compose_kernels_backward_cuda", [&] {
    read_window_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        composed.const_data_ptr<scalar_t>(), patch.data_ptr<scalar_t>(), g, w, total);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor compose_kernels_cuda(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                                at::IntArrayRef dilation) {
  const c10::cuda::CUDAGuard guard(outer.device());
  return compose_kernels_forward(outer, inner, stride, dilation, accumulate_cuda);
}

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward_cuda(const at::Tensor& grad, const at::Tensor& outer,
                                                                 const at::Tensor& inner, at::IntArrayRef stride,
                                                                 at::IntArrayRef dilation) {
  const c10::cuda::CUDAGuard guard(outer.device());
  return compose_kernels_backward(grad, outer, inner, stride, dilation, read_window_cuda);
}

}  // namespace

TORCH_LIBRARY_IMPL(circuits_vision, CUDA, m) {
  m.impl("compose_kernels", &compose_kernels_cuda);
  m.impl("_compose_kernels_backward", &compose_kernels_backward_cuda);
}

}  // namespace ops
}  // namespace circuits_vision
