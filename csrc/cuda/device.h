// What the CUDA glue (*_cuda.cpp) needs from the device side, so that the same
// glue builds for a GPU and for the host emulation (LOCALGRAD_CUDA_EMULATION):
// a device guard, the current stream, and the registration of the ops' CUDA
// kernels. Emulated, the guard and stream are no-ops and the kernels
// register for CPU tensors in the namespace localgrad_emulated.
#pragma once

#include <cuda_runtime_api.h>
#include <torch/library.h>

#if defined(LOCALGRAD_CUDA_EMULATION)

#include <c10/core/Device.h>

namespace localgrad::device {
struct Guard {
  explicit Guard(const c10::Device&) {}
};
inline cudaStream_t current_stream() { return nullptr; }
}  // namespace localgrad::device

#define LOCALGRAD_CUDA_IMPL(m) TORCH_LIBRARY_IMPL(localgrad_emulated, CPU, m)

#else

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace localgrad::device {
using Guard = c10::cuda::CUDAGuard;
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream(); }
}  // namespace localgrad::device

#define LOCALGRAD_CUDA_IMPL(m) TORCH_LIBRARY_IMPL(localgrad, CUDA, m)

#endif

namespace localgrad::device {
// Raises, naming the op, when a kernel launch failed.
inline void check_launch(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(status));
}
}  // namespace localgrad::device
