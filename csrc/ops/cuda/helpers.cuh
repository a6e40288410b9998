#pragma once
// Launch helpers shared by the CUDA kernels: the block size, the 1-D grid over n elements, and the
// grid's y-extent limit (kernels striding over images use it).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

namespace circuits_vision {
namespace ops {
namespace launch {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxGridY = 65535;

// Blocks of kThreads that cover n elements, one thread each.
inline int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

}  // namespace launch
}  // namespace ops
}  // namespace circuits_vision
