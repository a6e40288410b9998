// CPU kernels of compose_kernels: the gather and spread passes, parallel over output elements.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../compose_kernels.h"

namespace circuits_vision {
namespace ops {

namespace {

void gather_cpu(const at::Tensor& products, at::Tensor& composed, const ComposeGeometry& g) {
  AT_DISPATCH_FLOATING_TYPES(products.scalar_type(), "compose_kernels_cpu", [&] {
    const scalar_t* src = products.const_data_ptr<scalar_t>();
    scalar_t* dst = composed.data_ptr<scalar_t>();
    const int64_t taps = g.kh * g.kw;
    at::parallel_for(0, g.O * g.I, 16, [&](int64_t begin, int64_t end) {
      for (int64_t oi = begin; oi < end; ++oi) {
        const int64_t o = oi / g.I;
        const int64_t i = oi % g.I;
        for (int64_t ty = 0; ty < g.kh; ++ty) {
          for (int64_t tx = 0; tx < g.kw; ++tx) {
            dst[oi * taps + ty * g.kw + tx] = gather_composed_tap<scalar_t, double>(src, g, o, i, ty, tx);
          }
        }
      }
    });
  });
}

void spread_cpu(const at::Tensor& grad_composed, at::Tensor& grad_products, const ComposeGeometry& g) {
  AT_DISPATCH_FLOATING_TYPES(grad_composed.scalar_type(), "compose_kernels_backward_cpu", [&] {
    const scalar_t* src = grad_composed.const_data_ptr<scalar_t>();
    scalar_t* dst = grad_products.data_ptr<scalar_t>();
    at::parallel_for(0, grad_products.numel(), 4096, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        dst[index] = spread_composed_grad<scalar_t>(src, g, index);
      }
    });
  });
}

at::Tensor compose_kernels_cpu(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                               at::IntArrayRef dilation) {
  return compose_kernels_forward(outer, inner, stride, dilation, gather_cpu);
}

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward_cpu(const at::Tensor& grad, const at::Tensor& outer,
                                                                const at::Tensor& inner, at::IntArrayRef stride,
                                                                at::IntArrayRef dilation) {
  return compose_kernels_backward(grad, outer, inner, stride, dilation, spread_cpu);
}

}  // namespace

TORCH_LIBRARY_IMPL(circuits_vision, CPU, m) {
  m.impl("compose_kernels", &compose_kernels_cpu);
  m.impl("_compose_kernels_backward", &compose_kernels_backward_cpu);
}

}  // namespace ops
}  // namespace circuits_vision
