// CUDA kernels of compose_kernels: the gather and spread passes, one thread per output element.
// The GEMM around them runs through at::mm (cuBLAS).
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../compose_kernels.h"

namespace circuits_vision {
namespace ops {

namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

template <typename scalar_t, typename acc_t>
__global__ void gather_kernel(const scalar_t* __restrict__ products, scalar_t* __restrict__ composed,
                              ComposeGeometry g, int64_t total) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  const int64_t tx = index % g.kw;
  const int64_t ty = (index / g.kw) % g.kh;
  const int64_t i = (index / (g.kw * g.kh)) % g.I;
  const int64_t o = index / (g.kw * g.kh * g.I);
  composed[index] = gather_composed_tap<scalar_t, acc_t>(products, g, o, i, ty, tx);
}

template <typename scalar_t>
__global__ void spread_kernel(const scalar_t* __restrict__ grad, scalar_t* __restrict__ grad_products,
                              ComposeGeometry g, int64_t total) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  grad_products[index] = spread_composed_grad<scalar_t>(grad, g, index);
}

void gather_cuda(const at::Tensor& products, at::Tensor& composed, const ComposeGeometry& g) {
  const int64_t total = composed.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(products.scalar_type(), "compose_kernels_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    gather_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
        products.const_data_ptr<scalar_t>(), composed.data_ptr<scalar_t>(), g, total);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void spread_cuda(const at::Tensor& grad_composed, at::Tensor& grad_products, const ComposeGeometry& g) {
  const int64_t total = grad_products.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad_composed.scalar_type(), "compose_kernels_backward_cuda", [&] {
    spread_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        grad_composed.const_data_ptr<scalar_t>(), grad_products.data_ptr<scalar_t>(), g, total);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor compose_kernels_cuda(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                                at::IntArrayRef dilation) {
  const c10::cuda::CUDAGuard guard(outer.device());
  return compose_kernels_forward(outer, inner, stride, dilation, gather_cuda);
}

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward_cuda(const at::Tensor& grad, const at::Tensor& outer,
                                                                 const at::Tensor& inner, at::IntArrayRef stride,
                                                                 at::IntArrayRef dilation) {
  const c10::cuda::CUDAGuard guard(outer.device());
  return compose_kernels_backward(grad, outer, inner, stride, dilation, spread_cuda);
}

}  // namespace

TORCH_LIBRARY_IMPL(circuits_vision, CUDA, m) {
  m.impl("compose_kernels", &compose_kernels_cuda);
  m.impl("_compose_kernels_backward", &compose_kernels_backward_cuda);
}

}  // namespace ops
}  // namespace circuits_vision
