// CPU kernels of compose_kernels: strided window passes between a GEMM patch and the composed
// kernel, parallel over (o, a) rows, contiguous (vectorisable) along the input channels.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../compose_kernels.h"

namespace circuits_vision {
namespace ops {

namespace {

// Calls copy_run(patch_index, composed_index) for every run of g.I contiguous channels of a window,
// parallel over (o, a) rows; the runs of one window never overlap, so rows can run concurrently.
template <typename CopyRun>
void for_each_window_run(const ComposeGeometry& g, const PatchWindow& w, const CopyRun& copy_run) {
  at::parallel_for(0, g.O * w.A, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t o = row / w.A;
      const int64_t a = row % w.A;
      for (int64_t b = 0; b < w.B; ++b) copy_run(patch_offset(w, o, a, b), window_offset(g, w, o, a, b));
    }
  });
}

void accumulate_cpu(const at::Tensor& patch, at::Tensor& composed, const ComposeGeometry& g, const PatchWindow& w) {
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "compose_kernels_cpu", [&] {
    const scalar_t* src = patch.const_data_ptr<scalar_t>();
    scalar_t* dst = composed.data_ptr<scalar_t>();
    for_each_window_run(g, w, [&](int64_t from, int64_t to) {
      for (int64_t i = 0; i < g.I; ++i) dst[to + i] += src[from + i];
    });
  });
}

void read_window_cpu(const at::Tensor& composed, at::Tensor& patch, const ComposeGeometry& g, const PatchWindow& w) {
  AT_DISPATCH_FLOATING_TYPES(composed.scalar_type(), "compose_kernels_backward_cpu", [&] {
    const scalar_t* src = composed.const_data_ptr<scalar_t>();
    scalar_t* dst = patch.data_ptr<scalar_t>();
    for_each_window_run(g, w, [&](int64_t to, int64_t from) {
      for (int64_t i = 0; i < g.I; ++i) dst[to + i] = src[from + i];
    });
  });
}

at::Tensor compose_kernels_cpu(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                               at::IntArrayRef dilation) {
  return compose_kernels_forward(outer, inner, stride, dilation, accumulate_cpu);
}

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward_cpu(const at::Tensor& grad, const at::Tensor& outer,
                                                                const at::Tensor& inner, at::IntArrayRef stride,
                                                                at::IntArrayRef dilation) {
  return compose_kernels_backward(grad, outer, inner, stride, dilation, read_window_cpu);
}

}  // namespace

TORCH_LIBRARY_IMPL(circuits_vision, CPU, m) {
  m.impl("compose_kernels", &compose_kernels_cpu);
  m.impl("_compose_kernels_backward", &compose_kernels_backward_cpu);
}

}  // namespace ops
}  // namespace circuits_vision
