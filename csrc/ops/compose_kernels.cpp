// compose_kernels: the kernel of two stacked convolutions as one convolution.
//
//   E[o, i, t] = sum_m sum_{v, u : t = v * stride + u * dilation} outer[o, m, v] * inner[m, i, u]
//
// outer [O, M, k2h, k2w] is the later layer's kernel, inner [M, I, k1h, k1w] the earlier
// one's. `stride` is the spacing of the outer taps measured in input pixels (the inner
// layer's stride times the outer layer's dilation) and `dilation` the inner layer's
// dilation. The result has size (k2 - 1) * stride + (k1 - 1) * dilation + 1 per axis.
#include "compose_kernels.h"

#include <torch/library.h>

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
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "compose_kernels: `", name,
              "` must be float32 or float64, got ", t.scalar_type(), "; convert it with .float() or .double()");
  TORCH_CHECK(t.numel() > 0, "compose_kernels: `", name, "` is empty (shape ", t.sizes(),
              "); every dimension must be at least 1");
}

}  // namespace

ComposeGeometry make_geometry(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                              at::IntArrayRef dilation) {
  check_kernel(outer, "outer");
  check_kernel(inner, "inner");
  check_pair(stride, "stride");
  check_pair(dilation, "dilation");
  TORCH_CHECK(outer.device() == inner.device(), "compose_kernels: `outer` is on ", outer.device(), " but `inner` is on ",
              inner.device(), "; move both to one device");
  TORCH_CHECK(outer.scalar_type() == inner.scalar_type(), "compose_kernels: `outer` is ", outer.scalar_type(),
              " but `inner` is ", inner.scalar_type(), "; give both the same dtype");
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
  g.kh = (g.k2h - 1) * g.sh + (g.k1h - 1) * g.dh + 1;
  g.kw = (g.k2w - 1) * g.sw + (g.k1w - 1) * g.dw + 1;
  return g;
}

namespace {

// outer [O, M, k2h, k2w] -> [k2h*k2w*O, M]
at::Tensor outer_matrix(const at::Tensor& outer) {
  return outer.permute({2, 3, 0, 1}).reshape({-1, outer.size(1)});
}

// inner [M, I, k1h, k1w] -> [M, k1h*k1w*I]
at::Tensor inner_matrix(const at::Tensor& inner) {
  return inner.permute({0, 2, 3, 1}).reshape({inner.size(0), -1});
}

}  // namespace

at::Tensor compose_kernels_forward(const at::Tensor& outer, const at::Tensor& inner, at::IntArrayRef stride,
                                   at::IntArrayRef dilation, GatherFn gather) {
  const ComposeGeometry g = make_geometry(outer, inner, stride, dilation);
  // Every tap product in one GEMM: [k2h*k2w*O, M] @ [M, k1h*k1w*I].
  const at::Tensor products = at::mm(outer_matrix(outer), inner_matrix(inner));
  at::Tensor composed = at::empty({g.O, g.I, g.kh, g.kw}, outer.options());
  gather(products, composed, g);
  return composed;
}

std::tuple<at::Tensor, at::Tensor> compose_kernels_backward(const at::Tensor& grad, const at::Tensor& outer,
                                                            const at::Tensor& inner, at::IntArrayRef stride,
                                                            at::IntArrayRef dilation, SpreadFn spread) {
  const ComposeGeometry g = make_geometry(outer, inner, stride, dilation);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == g.O && grad.size(1) == g.I && grad.size(2) == g.kh &&
                  grad.size(3) == g.kw,
              "_compose_kernels_backward: `grad` must have shape [", g.O, ", ", g.I, ", ", g.kh, ", ", g.kw,
              "], got ", grad.sizes());
  TORCH_CHECK(grad.device() == outer.device() && grad.scalar_type() == outer.scalar_type(),
              "_compose_kernels_backward: `grad` must match `outer` in device and dtype");
  const at::Tensor grad_contig = grad.contiguous();
  at::Tensor grad_products = at::empty({g.k2h * g.k2w * g.O, g.k1h * g.k1w * g.I}, outer.options());
  spread(grad_contig, grad_products, g);
  const at::Tensor a = outer_matrix(outer);
  const at::Tensor b = inner_matrix(inner);
  // dA = dP @ B^T -> [k2h*k2w*O, M] -> outer's layout [O, M, k2h, k2w]
  const at::Tensor grad_outer =
      at::mm(grad_products, b.t()).reshape({g.k2h, g.k2w, g.O, outer.size(1)}).permute({2, 3, 0, 1}).contiguous();
  // dB = A^T @ dP -> [M, k1h*k1w*I] -> inner's layout [M, I, k1h, k1w]
  const at::Tensor grad_inner =
      at::mm(a.t(), grad_products).reshape({inner.size(0), g.k1h, g.k1w, g.I}).permute({0, 3, 1, 2}).contiguous();
  return {grad_outer, grad_inner};
}

TORCH_LIBRARY_FRAGMENT(circuits_vision, m) {
  m.def("compose_kernels(Tensor outer, Tensor inner, int[2] stride, int[2] dilation) -> Tensor");
  m.def(
      "_compose_kernels_backward(Tensor grad, Tensor outer, Tensor inner, int[2] stride, int[2] dilation) -> "
      "(Tensor, Tensor)");
}

}  // namespace ops
}  // namespace circuits_vision
