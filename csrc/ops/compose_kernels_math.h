#pragma once
// Index arithmetic shared by the CPU and CUDA kernels of compose_kernels.
//
// The composed kernel E = outer (x) inner is computed in two steps:
//   1. one GEMM forms every tap product P[vy, vx, o, uy, ux, i] = sum_m outer[o, m, vy, vx] * inner[m, i, uy, ux];
//   2. each product lands on composed tap t = v * stride + u * dilation (per axis), and
//      E[o, i, ty, tx] sums the products that land there.
// Step 2 is written as a gather over E (no atomics); its adjoint, used by the backward,
// spreads dE back to the layout of P.
#include <cstdint>

#if defined(__CUDACC__)
#define CV_HOST_DEVICE __host__ __device__
#else
#define CV_HOST_DEVICE
#endif

namespace circuits_vision {
namespace ops {

struct ComposeGeometry {
  int64_t O, I;                // output and input channels of the composed kernel
  int64_t k2h, k2w, k1h, k1w;  // outer and inner kernel sizes
  int64_t sh, sw, dh, dw;      // spacing of outer taps, spacing of inner taps (in input pixels)
  int64_t kh, kw;              // composed kernel size
};

// Offset of P[vy, vx, o, uy, ux, i] in the GEMM output laid out as [k2h*k2w*O, k1h*k1w*I].
CV_HOST_DEVICE inline int64_t product_offset(const ComposeGeometry& g, int64_t vy, int64_t vx, int64_t o,
                                             int64_t uy, int64_t ux, int64_t i) {
  const int64_t row = (vy * g.k2w + vx) * g.O + o;
  const int64_t col = (uy * g.k1w + ux) * g.I + i;
  return row * (g.k1h * g.k1w * g.I) + col;
}

// E[o, i, ty, tx]: the sum of all tap products that land on composed tap (ty, tx).
template <typename scalar_t, typename acc_t>
CV_HOST_DEVICE inline scalar_t gather_composed_tap(const scalar_t* products, const ComposeGeometry& g, int64_t o,
                                                   int64_t i, int64_t ty, int64_t tx) {
  acc_t sum = 0;
  for (int64_t vy = 0; vy < g.k2h; ++vy) {
    const int64_t ry = ty - vy * g.sh;
    if (ry < 0) break;
    if (ry % g.dh != 0) continue;
    const int64_t uy = ry / g.dh;
    if (uy >= g.k1h) continue;
    for (int64_t vx = 0; vx < g.k2w; ++vx) {
      const int64_t rx = tx - vx * g.sw;
      if (rx < 0) break;
      if (rx % g.dw != 0) continue;
      const int64_t ux = rx / g.dw;
      if (ux >= g.k1w) continue;
      sum += static_cast<acc_t>(products[product_offset(g, vy, vx, o, uy, ux, i)]);
    }
  }
  return static_cast<scalar_t>(sum);
}

// Inverse of the linear index of P, for the spreading pass of the backward.
CV_HOST_DEVICE inline void unravel_product(const ComposeGeometry& g, int64_t index, int64_t& vy, int64_t& vx,
                                           int64_t& o, int64_t& uy, int64_t& ux, int64_t& i) {
  i = index % g.I;
  index /= g.I;
  ux = index % g.k1w;
  index /= g.k1w;
  uy = index % g.k1h;
  index /= g.k1h;
  o = index % g.O;
  index /= g.O;
  vx = index % g.k2w;
  vy = index / g.k2w;
}

// dP[vy, vx, o, uy, ux, i] = dE[o, i, vy*sh + uy*dh, vx*sw + ux*dw] (dE contiguous [O, I, kh, kw]).
template <typename scalar_t>
CV_HOST_DEVICE inline scalar_t spread_composed_grad(const scalar_t* grad, const ComposeGeometry& g, int64_t index) {
  int64_t vy, vx, o, uy, ux, i;
  unravel_product(g, index, vy, vx, o, uy, ux, i);
  const int64_t ty = vy * g.sh + uy * g.dh;
  const int64_t tx = vx * g.sw + ux * g.dw;
  return grad[((o * g.I + i) * g.kh + ty) * g.kw + tx];
}

}  // namespace ops
}  // namespace circuits_vision
