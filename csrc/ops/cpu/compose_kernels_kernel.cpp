// CPU kernels of compose_kernels. Three algorithms, one result:
// - a shared filter on every map (O == M == 1): direct per-map convolution;
// - float32 with channel mixing: one dilated convolution through oneDNN;
// - otherwise (float64, or no oneDNN): the tap-loop GEMMs of compose_kernels.cpp with strided
//   window passes between a GEMM patch and the composed kernel, parallel over (o, a) rows,
//   contiguous (vectorisable) along the input channels. The backward always uses the tap loop.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <limits>
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

// One filter on every map (O == M == 1, e.g. a pool passed through a kernel): each composed map
// is a small full convolution of its input map that stays in cache, and zero filter taps (the gaps
// of a spread pool) are skipped. No GEMM, no layout change.
at::Tensor compose_shared_filter_cpu(const at::Tensor& outer, const at::Tensor& inner, const ComposeGeometry& g) {
  const at::Tensor filter = outer.contiguous();
  const at::Tensor maps = inner.contiguous();
  // uninitialised: each map is zeroed by the thread that fills it, while it is in cache
  at::Tensor composed = at::empty({1, g.I, g.kh, g.kw}, inner.options());
  AT_DISPATCH_FLOATING_TYPES(inner.scalar_type(), "compose_kernels_shared_filter_cpu", [&] {
    const scalar_t* f = filter.const_data_ptr<scalar_t>();
    const scalar_t* src = maps.const_data_ptr<scalar_t>();
    scalar_t* dst = composed.data_ptr<scalar_t>();
    at::parallel_for(0, g.I, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* in = src + i * g.k1h * g.k1w;
        scalar_t* out = dst + i * g.kh * g.kw;
        std::fill(out, out + g.kh * g.kw, scalar_t(0));
        for (int64_t vy = 0; vy < g.k2h; ++vy) {
          for (int64_t vx = 0; vx < g.k2w; ++vx) {
            const scalar_t w = f[vy * g.k2w + vx];
            if (w == scalar_t(0)) continue;
            for (int64_t uy = 0; uy < g.k1h; ++uy) {
              scalar_t* row = out + (vy * g.sh + uy * g.dh) * g.kw + vx * g.sw;
              const scalar_t* in_row = in + uy * g.k1w;
              for (int64_t ux = 0; ux < g.k1w; ++ux) row[ux * g.dw] += w * in_row[ux];
            }
          }
        }
      }
    });
  });
  return composed;
}

// Channel-mixing compositions in float32 as one "a trous" convolution, run by oneDNN: the inner
// kernel's input channels become the batch ([I, M, k1h, k1w], spread by `dilation`), the flipped
// outer kernel slides over it with dilation `stride` and full padding, so that output pixel t sums
// outer[v] * inner[t - v * stride], which is E[:, :, t]. Same sums as the tap loop, in a different
// order; on these shapes oneDNN's convolutions run several times faster than the tap loop's MKL GEMMs.
at::Tensor compose_by_convolution_cpu(const at::Tensor& outer, const at::Tensor& inner, const ComposeGeometry& g) {
  at::Tensor batch = inner.transpose(0, 1);  // [I, M, k1h, k1w]
  if (g.dh > 1 || g.dw > 1) {
    at::Tensor spread = at::zeros({g.I, inner.size(0), (g.k1h - 1) * g.dh + 1, (g.k1w - 1) * g.dw + 1}, inner.options());
    spread.slice(2, 0, c10::nullopt, g.dh).slice(3, 0, c10::nullopt, g.dw).copy_(batch);
    batch = spread;
  }
  const at::Tensor images = batch.contiguous();
  const at::Tensor filters = outer.flip({2, 3}).contiguous();
  const at::Tensor composed = at::conv2d(images, filters, /*bias=*/{}, /*stride=*/1,
                                         /*padding=*/at::IntArrayRef{(g.k2h - 1) * g.sh, (g.k2w - 1) * g.sw},
                                         /*dilation=*/at::IntArrayRef{g.sh, g.sw});
  return composed.transpose(0, 1).contiguous();  // [O, I, kh, kw]
}

at::Tensor compose_kernels_cpu(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                               at::IntArrayRef dilation) {
  const ComposeGeometry g = make_geometry(outer, inner, stride, dilation);
  const int64_t M = outer.size(1);
  if (g.O == 1 && M == 1) return compose_shared_filter_cpu(outer, inner, g);
  // oneDNN describes a convolution with int32 sizes; larger compositions take the tap loop
  const bool fits_int32 = g.kh <= std::numeric_limits<int32_t>::max() && g.kw <= std::numeric_limits<int32_t>::max();
  if (M > 1 && fits_int32 && outer.scalar_type() == at::kFloat && at::globalContext().userEnabledMkldnn()) {
    return compose_by_convolution_cpu(outer, inner, g);
  }
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
