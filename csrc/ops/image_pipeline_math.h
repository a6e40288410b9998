#pragma once
// Per-pixel math of image_pipeline, shared by the CPU and CUDA kernels.
//
// The pipeline maps a decorrelated pre-colour image x [N, 3, H, W] to
//   image = sigmoid(color @ x)                                   (per pixel, [N, 3, H, W])
//   out   = bilinear(image, affine_grid(theta)) * scale + shift  ([N, 3, h, w])
// with torch's conventions: F.affine_grid / F.grid_sample with align_corners=False,
// and every bilinear tap outside the image reading `pad` (so the weights of the four
// taps always sum to one and the result is continuous in theta).
#include <cmath>
#include <cstdint>

#include "common.h"

namespace circuits_vision {
namespace ops {

struct PipelineGeometry {
  int64_t N;     // images
  int64_t H, W;  // input (and image) size
  int64_t h, w;  // output size
};

CV_HOST_DEVICE inline float exp_of(float v) { return ::expf(v); }
CV_HOST_DEVICE inline double exp_of(double v) { return ::exp(v); }
CV_HOST_DEVICE inline float floor_of(float v) { return ::floorf(v); }
CV_HOST_DEVICE inline double floor_of(double v) { return ::floor(v); }

template <typename scalar_t>
CV_HOST_DEVICE inline scalar_t sigmoid_of(scalar_t v) {
  return scalar_t(1) / (scalar_t(1) + exp_of(-v));
}

// image[:, p] = sigmoid(color @ x[:, p]) for one pixel; color is row-major [3, 3].
template <typename scalar_t>
CV_HOST_DEVICE inline void colour_pixel(const scalar_t* color, scalar_t x0, scalar_t x1, scalar_t x2,
                                        scalar_t& s0, scalar_t& s1, scalar_t& s2) {
  s0 = sigmoid_of(color[0] * x0 + color[1] * x1 + color[2] * x2);
  s1 = sigmoid_of(color[3] * x0 + color[4] * x1 + color[5] * x2);
  s2 = sigmoid_of(color[6] * x0 + color[7] * x1 + color[8] * x2);
}

// Where output pixel (row, col) samples the image, in normalised output coordinates
// (xn, yn) (what theta multiplies) and in input pixel coordinates (ix, iy).
template <typename scalar_t>
struct SourcePoint {
  scalar_t xn, yn;
  scalar_t ix, iy;
};

// theta: the image's [2, 3] affine, row-major.
template <typename scalar_t>
CV_HOST_DEVICE inline SourcePoint<scalar_t> source_point(const scalar_t* theta, const PipelineGeometry& g,
                                                         int64_t row, int64_t col) {
  SourcePoint<scalar_t> p;
  // affine_grid's base grid with align_corners=False: pixel centres in (-1, 1).
  p.xn = scalar_t(2 * col + 1) / scalar_t(g.w) - scalar_t(1);
  p.yn = scalar_t(2 * row + 1) / scalar_t(g.h) - scalar_t(1);
  const scalar_t gx = theta[0] * p.xn + theta[1] * p.yn + theta[2];
  const scalar_t gy = theta[3] * p.xn + theta[4] * p.yn + theta[5];
  // grid_sample's unnormalisation with align_corners=False.
  p.ix = ((gx + scalar_t(1)) * scalar_t(g.W) - scalar_t(1)) / scalar_t(2);
  p.iy = ((gy + scalar_t(1)) * scalar_t(g.H) - scalar_t(1)) / scalar_t(2);
  return p;
}

// The four bilinear taps around a source point: columns x0, x0 + 1 and rows y0, y0 + 1,
// weights (1 - wx1, wx1) and (1 - wy1, wy1), and which taps lie inside the image.
template <typename scalar_t>
struct BilinearTaps {
  int64_t x0, y0;
  scalar_t wx1, wy1;
  bool in_x0, in_x1, in_y0, in_y1;
};

// Points further than one pixel outside the image read only `pad`, with zero gradient;
// clamping them there keeps value and gradient exact and the integer conversion defined
// for any theta (a NaN coordinate reads `pad` too).
template <typename scalar_t>
CV_HOST_DEVICE inline scalar_t clamp_coordinate(scalar_t v, int64_t size) {
  if (!(v >= scalar_t(-2))) return scalar_t(-2);
  if (v > scalar_t(size + 1)) return scalar_t(size + 1);
  return v;
}

template <typename scalar_t>
CV_HOST_DEVICE inline BilinearTaps<scalar_t> bilinear_taps(scalar_t ix, scalar_t iy, int64_t H, int64_t W) {
  BilinearTaps<scalar_t> t;
  const scalar_t cx = clamp_coordinate(ix, W);
  const scalar_t cy = clamp_coordinate(iy, H);
  const scalar_t fx = floor_of(cx);
  const scalar_t fy = floor_of(cy);
  t.x0 = static_cast<int64_t>(fx);
  t.y0 = static_cast<int64_t>(fy);
  t.wx1 = cx - fx;
  t.wy1 = cy - fy;
  t.in_x0 = t.x0 >= 0 && t.x0 < W;
  t.in_x1 = t.x0 + 1 >= 0 && t.x0 + 1 < W;
  t.in_y0 = t.y0 >= 0 && t.y0 < H;
  t.in_y1 = t.y0 + 1 >= 0 && t.y0 + 1 < H;
  return t;
}

// Values under the four taps of one channel plane [H, W]: v[0] = (y0, x0), v[1] = (y0, x1),
// v[2] = (y1, x0), v[3] = (y1, x1); outside taps read `pad`.
template <typename scalar_t>
CV_HOST_DEVICE inline void tap_values(const scalar_t* plane, int64_t W, const BilinearTaps<scalar_t>& t,
                                      scalar_t pad, scalar_t v[4]) {
  const scalar_t* row0 = plane + t.y0 * W + t.x0;
  const scalar_t* row1 = row0 + W;
  v[0] = (t.in_y0 && t.in_x0) ? row0[0] : pad;
  v[1] = (t.in_y0 && t.in_x1) ? row0[1] : pad;
  v[2] = (t.in_y1 && t.in_x0) ? row1[0] : pad;
  v[3] = (t.in_y1 && t.in_x1) ? row1[1] : pad;
}

template <typename scalar_t>
CV_HOST_DEVICE inline scalar_t bilinear_value(const BilinearTaps<scalar_t>& t, const scalar_t v[4]) {
  const scalar_t wx0 = scalar_t(1) - t.wx1;
  const scalar_t wy0 = scalar_t(1) - t.wy1;
  return wy0 * (wx0 * v[0] + t.wx1 * v[1]) + t.wy1 * (wx0 * v[2] + t.wx1 * v[3]);
}

// d value / d ix and d value / d iy of the bilinear sample (the tap values held fixed).
template <typename scalar_t>
CV_HOST_DEVICE inline void bilinear_coordinate_grads(const BilinearTaps<scalar_t>& t, const scalar_t v[4],
                                                     scalar_t& d_ix, scalar_t& d_iy) {
  const scalar_t wx0 = scalar_t(1) - t.wx1;
  const scalar_t wy0 = scalar_t(1) - t.wy1;
  d_ix = wy0 * (v[1] - v[0]) + t.wy1 * (v[3] - v[2]);
  d_iy = wx0 * (v[2] - v[0]) + t.wx1 * (v[3] - v[1]);
}

// Bilinear weights of the four taps, in tap_values' order (the backward spreads the
// gradient of a sample onto the inside taps with these).
template <typename scalar_t>
CV_HOST_DEVICE inline void tap_weights(const BilinearTaps<scalar_t>& t, scalar_t w[4]) {
  const scalar_t wx0 = scalar_t(1) - t.wx1;
  const scalar_t wy0 = scalar_t(1) - t.wy1;
  w[0] = wy0 * wx0;
  w[1] = wy0 * t.wx1;
  w[2] = t.wy1 * wx0;
  w[3] = t.wy1 * t.wx1;
}

// Gradient of d loss / d ix, d loss / d iy with respect to the image's theta [2, 3]:
// ix = ((gx + 1) W - 1) / 2, gx = theta[0] xn + theta[1] yn + theta[2] (and likewise iy).
template <typename scalar_t, typename acc_t>
CV_HOST_DEVICE inline void accumulate_theta_grad(const SourcePoint<scalar_t>& p, acc_t d_ix, acc_t d_iy,
                                                 const PipelineGeometry& g, acc_t grad_theta[6]) {
  const acc_t d_gx = d_ix * acc_t(g.W) / acc_t(2);
  const acc_t d_gy = d_iy * acc_t(g.H) / acc_t(2);
  grad_theta[0] += d_gx * acc_t(p.xn);
  grad_theta[1] += d_gx * acc_t(p.yn);
  grad_theta[2] += d_gx;
  grad_theta[3] += d_gy * acc_t(p.xn);
  grad_theta[4] += d_gy * acc_t(p.yn);
  grad_theta[5] += d_gy;
}

}  // namespace ops
}  // namespace circuits_vision
