// How kernels launch and declare shared memory, spelled once for nvcc and
// for the host emulation (csrc/emulation, LOCALGRAD_CUDA_EMULATION):
//
//   LOCALGRAD_LAUNCH(grid, block, smem, stream, kernel)(args...)
//       kernel<<<grid, block, smem, stream>>>(args...) under nvcc; the
//       emulator's checked, counted launch on the host. The kernel comes last
//       so that template arguments need no parentheses.
//   LOCALGRAD_SHARED(type, name, dims)   __shared__ type name dims;
//   LOCALGRAD_DYNAMIC_SHARED(name)       extern __shared__ __align__(16) unsigned char name[];
//   grid_cap(n)                          the launcher's own cap on a grid
//       dimension: n on a GPU; the emulated device model may lower it so that
//       tests reach grid-stride loops with few blocks.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#if defined(LOCALGRAD_CUDA_EMULATION)

#define LOCALGRAD_LAUNCH(grid, block, smem, stream, ...)                                     \
  ::localgrad::emulation::make_launcher(__FILE__ ":" LOCALGRAD_LAUNCH_LINE(__LINE__), #__VA_ARGS__, \
                                        grid, block, smem, stream, __VA_ARGS__)
#define LOCALGRAD_LAUNCH_LINE(n) LOCALGRAD_LAUNCH_STR(n)
#define LOCALGRAD_LAUNCH_STR(n) #n
#define LOCALGRAD_SHARED(type, name, dims) \
  static type name dims;                   \
  ::localgrad::emulation::static_shared(&name, sizeof(name))
#define LOCALGRAD_DYNAMIC_SHARED(name) unsigned char* const name = ::localgrad::emulation::dynamic_shared()

namespace localgrad {
inline int64_t grid_cap(int64_t n) {
  const int64_t cap = emulation::device_model().launcher_grid_cap;
  return n < cap ? n : cap;
}
}  // namespace localgrad

#else

#define LOCALGRAD_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define LOCALGRAD_SHARED(type, name, dims) __shared__ type name dims
#define LOCALGRAD_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]

namespace localgrad {
inline int64_t grid_cap(int64_t n) { return n; }
}  // namespace localgrad

#endif
