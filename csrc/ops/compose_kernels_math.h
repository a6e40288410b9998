#pragma once
// Index arithmetic shared by the CPU and CUDA kernels of compose_kernels.
//
// E = outer (x) inner is accumulated tap by tap. For one tap of the smaller kernel, a GEMM gives the
// products of that tap with every tap of the other kernel, a "patch" [O, A, B, I]; patch element
// (o, a, b, i) lands on composed tap (y0 + a * step_y, x0 + b * step_x) of output channel o and input
// channel i. The composed kernel is built channels-last, [O, kh, kw, I], so that i is contiguous in
// both the patch and the kernel. The backward reads the same windows back out (the adjoint).
#include <cstdint>

#include "common.h"

namespace circuits_vision {
namespace ops {

struct ComposeGeometry {
  int64_t O, I;                // output and input channels of the composed kernel
  int64_t k2h, k2w, k1h, k1w;  // outer and inner kernel sizes
  int64_t sh, sw, dh, dw;      // spacing of outer taps, spacing of inner taps (in input pixels)
  int64_t kh, kw;              // composed kernel size
};

// Where one patch lands in the channels-last composed kernel [O, kh, kw, I].
struct PatchWindow {
  int64_t A, B;              // patch spatial extent (taps of the larger kernel)
  int64_t y0, x0;            // composed tap of patch element (a=0, b=0)
  int64_t step_y, step_x;    // composed-tap spacing between neighbouring patch taps
  int64_t so, sa, sb;        // patch strides of o, a, b (i has stride 1)
};

CV_HOST_DEVICE inline int64_t composed_offset(const ComposeGeometry& g, int64_t o, int64_t y, int64_t x) {
  return ((o * g.kh + y) * g.kw + x) * g.I;
}

CV_HOST_DEVICE inline int64_t window_offset(const ComposeGeometry& g, const PatchWindow& w, int64_t o, int64_t a,
                                            int64_t b) {
  return composed_offset(g, o, w.y0 + a * w.step_y, w.x0 + b * w.step_x);
}

CV_HOST_DEVICE inline int64_t patch_offset(const PatchWindow& w, int64_t o, int64_t a, int64_t b) {
  return o * w.so + a * w.sa + b * w.sb;
}

}  // namespace ops
}  // namespace circuits_vision
