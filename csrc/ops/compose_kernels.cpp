// compose_kernels: the kernel of two stacked convolutions as one convolution.
//
//   E[o, i, t] = sum_m sum_{v, u : t = v * stride + u * dilation} outer[o, m, v] * inner[m, i, u]
//
// outer [O, M, k2h, k2w] is the later layer's kernel, inner [M, I, k1h, k1w] the earlier
// one's. `stride` is the spacing of the outer taps measured in input pixels (the inner
// layer's stride times the outer layer's dilation) and `dilation` the inner layer's
// dilation. The result has size (k2 - 1) * stride + (k1 - 1) * dilation + 1 per axis.
//
// Work (this file, shared by CUDA and the CPU's float64 path): one GEMM per tap of the smaller kernel
// (e.g. 25 for a 5x5 outer after a 1x1 inner), each followed by a strided accumulation of its patch
// into the composed kernel (compose_kernels_math.h). The CPU registration picks faster algorithms
// for a shared filter and for float32 channel mixing (cpu/compose_kernels_kernel.cpp).
#include "compose_kernels.h"

#include <c10/util/safe_numerics.h>
#include <torch/library.h>

#include <limits>

namespace circuits_vision {
namespace ops {

namespace {

void check_pair(at::IntArrayRef values, const char* name) {
  TORCH_CHECK(values.size() == 2, "compose_kernels: `", name, "` must have 2 values (y, x), got ", values.size());
  TORCH_CHECK(values[0] >= 1 && values[1] >= 1, "compose_kernels: `", name, "` must be >= 1, got ", values);
}

void check_kernel(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4, "compose_kernels: `", name, "` must be a 4-D kernel [out, in, kh, kw], got shape ",
              t.sizes());
  check_floating(t, "compose_kernels", name);
  TORCH_CHECK(t.numel() > 0, "compose_kernels: `", name, "` is empty (shape ", t.sizes(),
              "); every dimension must be at least 1");
}

// (k_outer - 1) * stride + (k_inner - 1) * dilation + 1, or a ValueError when it does not fit in int64
// (a stride of 2**61 would otherwise wrap around to a small or negative size and corrupt memory).
int64_t composed_size(int64_t k_outer, int64_t k_inner, int64_t stride, int64_t dilation, const char* axis) {
  int64_t outer_span = 0, inner_span = 0, size = 0;
  const bool overflow = c10::mul_overflows(k_outer - 1, stride, &outer_span) ||
                        c10::mul_overflows(k_inner - 1, dilation, &inner_span) ||
                        c10::add_overflows(outer_span, inner_span, &size) || c10::add_overflows(size, int64_t{1}, &size);
  TORCH_CHECK_VALUE(!overflow, "compose_kernels: the composed kernel's ", axis, " size (", k_outer, " - 1) * stride ",
                    stride, " + (", k_inner, " - 1) * dilation ", dilation,
                    " + 1 does not fit in int64; use a smaller stride or dilation");
  return size;
}

}  // namespace

ComposeGeometry make_geometry(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                              at::IntArrayRef dilation) {
  check_kernel(outer, "outer");
  check_kernel(inner, "inner");
  check_pair(stride, "stride");
  check_pair(dilation, "dilation");
  check_same_device(outer, inner, "compose_kernels", "outer", "inner", "move both to one device");
  check_same_dtype(outer, inner, "compose_kernels", "outer", "inner", "give both the same dtype");
  TORCH_CHECK(outer.size(1) == inner.size(0), "compose_kernels: `outer` reads ", outer.size(1),
              " channels (outer.shape[1]) but `inner` produces ", inner.size(0),
              " (inner.shape[0]); the outer layer must consume the inner layer's output");
  ComposeGeometry g;
  g.O = outer.size(0);
  g.I = inner.size(1);
  g.k2h = outer.size(2);
  g.k2w = outer.size(3);
  g.k1h = inner.size(2);
  g.k1w = inner.size(3);
  g.sh = stride[0];
  g.sw = stride[1];
  g.dh = dilation[0];
  g.dw = dilation[1];
  g.kh = composed_size(g.k2h, g.k1h, g.sh, g.dh, "y");
  g.kw = composed_size(g.k2w, g.k1w, g.sw, g.dw, "x");
  // Every index into the composed kernel [O, I, kh, kw] and its byte count must fit in int64
  // before anything is allocated or indexed.
  int64_t elements = 0;
  const bool too_many = c10::mul_overflows(g.O, g.I, &elements) || c10::mul_overflows(elements, g.kh, &elements) ||
                        c10::mul_overflows(elements, g.kw, &elements) ||
                        elements > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(outer.element_size());
  TORCH_CHECK_VALUE(!too_many, "compose_kernels: the composed kernel [", g.O, ", ", g.I, ", ", g.kh, ", ", g.kw,
                    "] (from stride ", stride, " and dilation ", dilation,
                    ") has more elements than int64 can count; use a smaller stride or dilation");
  return g;
}

namespace {

// The GEMMs run tap by tap over the kernel with fewer taps: each yields a patch of products with
// every tap of the other kernel, so no intermediate ever holds all tap pairs at once.
bool loop_over_outer_taps(const ComposeGeometry& g) { return g.k2h * g.k2w <= g.k1h * g.k1w; }

// Patch from outer tap (vy, vx): mm(outer[:, :, vy, vx], inner as [M, k1h*k1w*I]) -> [O, k1h, k1w, I].
PatchWindow outer_tap_window(const ComposeGeometry& g, int64_t vy, int64_t vx) {
  return PatchWindow{g.k1h, g.k1w, vy * g.sh, vx * g.sw, g.dh, g.dw, g.k1h * g.k1w * g.I, g.k1w * g.I, g.I};
}

// Patch from inner tap (uy, ux): mm(outer as [k2h*k2w*O, M], inner[:, :, uy, ux]) -> [k2h, k2w, O, I].
PatchWindow inner_tap_window(const ComposeGeometry& g, int64_t uy, int64_t ux) {
  return PatchWindow{g.k2h, g.k2w, uy * g.dh, ux * g.dw, g.sh, g.sw, g.I, g.k2w * g.O * g.I, g.O * g.I};
}

// outer [O, M, k2h, k2w] -> [k2h*k2w*O, M]
at::Tensor outer_matrix(const at::Tensor& outer) { return outer.permute({2, 3, 0, 1}).reshape({-1, outer.size(1)}); }

// inner [M, I, k1h, k1w] -> [M, k1h*k1w*I]
at::Tensor inner_matrix(const at::Tensor& inner) { return inner.permute({0, 2, 3, 1}).reshape({inner.size(0), -1}); }

}  // namespace

at::Tensor compose_kernels_forward(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                                   at::IntArrayRef dilation, AccumulateFn accumulate) {
  const ComposeGeometry g = make_geometry(outer, inner, stride, dilation);
  at::Tensor composed = at::zeros({g.O, g.kh, g.kw, g.I}, outer.options());  // channels-last while accumulating
  if (loop_over_outer_taps(g)) {
    const at::Tensor b = inner_matrix(inner);
    for (int64_t vy = 0; vy < g.k2h; ++vy) {
      for (int64_t vx = 0; vx < g.k2w; ++vx) {
        const at::Tensor patch = at::mm(outer.select(3, vx).select(2, vy), b);
        accumulate(patch, composed, g, outer_tap_window(g, vy, vx));
      }
    }
  } else {
    const at::Tensor a = outer_matrix(outer);
    for (int64_t uy = 0; uy < g.k1h; ++uy) {
      for (int64_t ux = 0; ux < g.k1w; ++ux) {
        const at::Tensor patch = at::mm(a, inner.select(3, ux).select(2, uy));
        accumulate(patch, composed, g, inner_tap_window(g, uy, ux));
      }
    }
  }
  return composed.permute({0, 3, 1, 2}).contiguous();
}

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward(const at::Tensor& grad, const at::Tensor& outer,
                                                            const at::Tensor& inner, at::IntArrayRef stride,
                                                            at::IntArrayRef dilation, ReadWindowFn read_window) {
  const ComposeGeometry g = make_geometry(outer, inner, stride, dilation);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == g.O && grad.size(1) == g.I && grad.size(2) == g.kh &&
                  grad.size(3) == g.kw,
              "_compose_kernels_backward: `grad` must have shape [", g.O, ", ", g.I, ", ", g.kh, ", ", g.kw,
              "], got ", grad.sizes());
  TORCH_CHECK(grad.device() == outer.device() && grad.scalar_type() == outer.scalar_type(),
              "_compose_kernels_backward: `grad` must match `outer` in device and dtype");
  const at::Tensor grad_cl = grad.permute({0, 2, 3, 1}).contiguous();  // [O, kh, kw, I]
  const int64_t M = outer.size(1);
  if (loop_over_outer_taps(g)) {
    // dE read at outer tap v gives G_v [O, k1h*k1w*I]:
    //   d outer[:, :, v] = G_v @ inner_matrix^T,   d inner_matrix += outer[:, :, v]^T @ G_v
    const at::Tensor b = inner_matrix(inner);
    at::Tensor grad_outer = at::empty_like(outer, at::MemoryFormat::Contiguous);
    at::Tensor grad_b = at::zeros({M, g.k1h * g.k1w * g.I}, outer.options());
    at::Tensor window = at::empty({g.O, g.k1h * g.k1w * g.I}, outer.options());
    for (int64_t vy = 0; vy < g.k2h; ++vy) {
      for (int64_t vx = 0; vx < g.k2w; ++vx) {
        read_window(grad_cl, window, g, outer_tap_window(g, vy, vx));
        grad_outer.select(3, vx).select(2, vy).copy_(at::mm(window, b.t()));
        grad_b.addmm_(outer.select(3, vx).select(2, vy).t(), window);
      }
    }
    return {grad_outer, grad_b.reshape({M, g.k1h, g.k1w, g.I}).permute({0, 3, 1, 2}).contiguous()};
  }
  // dE read at inner tap u gives G_u [k2h*k2w*O, I]:
  //   d inner[:, :, u] = outer_matrix^T @ G_u,   d outer_matrix += G_u @ inner[:, :, u]^T
  const at::Tensor a = outer_matrix(outer);
  at::Tensor grad_inner = at::empty_like(inner, at::MemoryFormat::Contiguous);
  at::Tensor grad_a = at::zeros({g.k2h * g.k2w * g.O, M}, outer.options());
  at::Tensor window = at::empty({g.k2h * g.k2w * g.O, g.I}, outer.options());
  for (int64_t uy = 0; uy < g.k1h; ++uy) {
    for (int64_t ux = 0; ux < g.k1w; ++ux) {
      read_window(grad_cl, window, g, inner_tap_window(g, uy, ux));
      grad_inner.select(3, ux).select(2, uy).copy_(at::mm(a.t(), window));
      grad_a.addmm_(window, inner.select(3, ux).select(2, uy).t());
    }
  }
  return {grad_a.reshape({g.k2h, g.k2w, g.O, M}).permute({2, 3, 0, 1}).contiguous(), grad_inner};
}

TORCH_LIBRARY_FRAGMENT(circuits_vision, m) {
  m.def("compose_kernels(Tensor outer, Tensor inner, SymInt[2] stride, SymInt[2] dilation) -> Tensor");
  m.def(
      "_compose_kernels_backward(Tensor grad, Tensor outer, Tensor inner, SymInt[2] stride, SymInt[2] dilation) -> "
      "(Tensor, Tensor)");
}

}  // namespace ops
}  // namespace circuits_vision
