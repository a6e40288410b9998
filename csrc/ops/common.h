#pragma once
// What every op shares: CV_HOST_DEVICE for the inline math compiled into both the CPU and the CUDA
// kernels, and the argument checks whose messages name the op, the argument and the fix.
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#if defined(__CUDACC__)
#define CV_HOST_DEVICE __host__ __device__
#else
#define CV_HOST_DEVICE
#endif

// The checks take the tensor type as a template parameter so that this header stays light enough for
// the *_math.h headers (which the CUDA compiler reads too); callers pass at::Tensor.
namespace circuits_vision {
namespace ops {

// "<op>: `<name>` must be float32 or float64, got <dtype>; convert it with .float() or .double()"
template <typename TensorT>
inline void check_floating(const TensorT& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == c10::kFloat || t.scalar_type() == c10::kDouble, op, ": `", name,
              "` must be float32 or float64, got ", t.scalar_type(), "; convert it with .float() or .double()");
}

// "<op>: `<name>` is on <device> but `<other>` is on <device>; <fix>"
template <typename TensorT>
inline void check_same_device(const TensorT& t, const TensorT& other, const char* op, const char* name,
                              const char* other_name, const char* fix) {
  TORCH_CHECK(t.device() == other.device(), op, ": `", name, "` is on ", t.device(), " but `", other_name, "` is on ",
              other.device(), "; ", fix);
}

// "<op>: `<name>` is <dtype> but `<other>` is <dtype>; <fix>"
template <typename TensorT>
inline void check_same_dtype(const TensorT& t, const TensorT& other, const char* op, const char* name,
                             const char* other_name, const char* fix) {
  TORCH_CHECK(t.scalar_type() == other.scalar_type(), op, ": `", name, "` is ", t.scalar_type(), " but `", other_name,
              "` is ", other.scalar_type(), "; ", fix);
}

}  // namespace ops
}  // namespace circuits_vision
