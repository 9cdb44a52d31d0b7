// Host emulation of the part of CUDA that localgrad's kernels use, so that the
// unchanged csrc/cuda/*_kernel.cu files compile with the host compiler and run
// on CPU tensors (the localgrad._C_emulated extension, LOCALGRAD_CUDA_EMULATION=1).
//
// Execution model: a launch runs its blocks one after another; the threads of
// a block run concurrently as OS threads, so that ThreadSanitizer sees every
// pair of accesses that no barrier orders. __syncthreads() is a barrier over
// the block's live threads; warp shuffles are a barrier over the warp's 32
// lanes (lockstep at each shuffle, nothing more). One launch at a time.
//
// Device model: an H100 by default (132 SMs, 1024 threads and 48 KiB of
// shared memory per block, 227 KiB opt-in), whose limits every launch is
// checked against as the hardware does (too many threads, a grid dimension
// too large or zero, static + dynamic shared memory above the kernel's
// attribute or the device's opt-in limit). Tests may lower the caps.
//
// What this cannot show: code that relies on warp-synchronous execution
// without __syncwarp, memory-model reorderings, timing and occupancy.
// Include guards, not #pragma once: the device-code part below is added
// when a later include asks for it (cuda_runtime.h after cuda_runtime_api.h).
#ifndef LOCALGRAD_CUDA_EMULATION_H
#define LOCALGRAD_CUDA_EMULATION_H

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------
// Runtime API (cuda_runtime_api.h)

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorInvalidDevice = 101,
};
using cudaError = cudaError_t;

struct CUstream_st;
using cudaStream_t = CUstream_st*;

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxBlockDimX = 2,
  cudaDevAttrMaxBlockDimY = 3,
  cudaDevAttrMaxBlockDimZ = 4,
  cudaDevAttrMaxGridDimX = 5,
  cudaDevAttrMaxGridDimY = 6,
  cudaDevAttrMaxGridDimZ = 7,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

struct cudaFuncAttributes {
  size_t sharedSizeBytes;
  size_t constSizeBytes;
  size_t localSizeBytes;
  int maxThreadsPerBlock;
  int numRegs;
  int ptxVersion;
  int binaryVersion;
  int cacheModeCA;
  int maxDynamicSharedSizeBytes;
  int preferredShmemCarveout;
};

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();

namespace localgrad::emulation {

// The device the emulator checks launches against. Defaults: an H100 (SXM).
struct DeviceModel {
  int sm_count = 132;
  int max_threads_per_block = 1024;
  int max_block_dim[3] = {1024, 1024, 64};
  int64_t max_grid_dim[3] = {2147483647, 65535, 65535};
  int shared_per_block = 48 * 1024;          // without opt-in
  int shared_per_block_optin = 227 * 1024;   // cudaFuncSetAttribute ceiling
  // The largest grid a launcher chooses by itself (localgrad::grid_cap in
  // csrc/cuda/launch.h); lowered by tests to reach grid-stride loops cheaply.
  int64_t launcher_grid_cap = INT64_MAX;
};

// "address" or "thread" when the device code was built with that sanitizer.
const char* sanitizer();

DeviceModel device_model();
void set_device_model(const DeviceModel& model);
void reset_device_model();

// Launches seen so far, per launch site (file:line and the kernel's spelling)
// and per kernel instantiation (distinct function) at that site.
struct LaunchCount {
  std::string site;
  std::string kernel;
  int64_t launches = 0;
  int64_t instantiations = 0;
  int64_t blocks = 0;
  // The launched kernels as offsets into their shared object: the same in
  // every process that loads the same build, so counts can be merged.
  std::vector<uint64_t> kernels;
};
std::vector<LaunchCount> launch_counts();
void reset_launch_counts();

// The lowest-level pieces the macros below and the launcher use.
using KernelId = const void*;

struct KernelRecord;
struct LaunchContext;

struct ThreadContext {
  uint3 thread_idx{0, 0, 0};
  uint3 block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1};
  dim3 grid_dim{1, 1, 1};
  int linear_tid = 0;
  LaunchContext* launch = nullptr;  // null outside a kernel
  bool probing = false;
};
ThreadContext& thread_context();

// Thrown by the built-in variables while a kernel is probed for its static
// shared memory (see probe_kernel in cuda_emulation.cpp).
struct ProbeStop {};

[[noreturn]] void fatal(const std::string& message);

inline const ThreadContext& device_context() {
  ThreadContext& c = thread_context();
  if (c.probing) throw ProbeStop{};
  if (c.launch == nullptr) fatal("a CUDA built-in variable was read outside a kernel");
  return c;
}

void static_shared(const void* address, size_t bytes);
unsigned char* dynamic_shared();
void syncthreads();
int syncthreads_or(int predicate);
int syncthreads_and(int predicate);
int syncthreads_count(int predicate);
void warp_exchange(unsigned mask, const void* value, size_t bytes, int src_lane, void* out);

KernelRecord& kernel_record(KernelId id, void (*probe)(KernelId));
size_t static_shared_bytes(KernelRecord& record);
cudaError_t set_max_dynamic_shared(KernelRecord& record, int bytes);
int max_dynamic_shared(KernelRecord& record);

using BlockBody = void (*)(void* launcher);
cudaError_t launch(KernelRecord& record, const char* site, const char* kernel, dim3 grid, dim3 block,
                   size_t dynamic_bytes, BlockBody body, void* launcher);

// The static shared memory of a kernel is learnt once, before its first use,
// by running it with value-initialised arguments until it first reads a
// built-in variable (threadIdx, blockIdx, blockDim, gridDim): every
// LOCALGRAD_SHARED declaration must come before that, and nothing before it
// may touch memory. A declaration met later, in a real launch, is an error.
template <typename... Args>
void probe_kernel(KernelId id) {
  using Kernel = void (*)(Args...);
  ThreadContext& c = thread_context();
  const ThreadContext saved = c;
  c = ThreadContext{};
  c.probing = true;
  try {
    reinterpret_cast<Kernel>(const_cast<void*>(id))(std::decay_t<Args>{}...);
  } catch (const ProbeStop&) {
  }
  c = saved;
}

template <typename... Args>
KernelRecord& record_of(void (*kernel)(Args...)) {
  return kernel_record(reinterpret_cast<KernelId>(kernel), &probe_kernel<Args...>);
}

template <typename... Args>
class Launcher {
 public:
  using Kernel = void (*)(Args...);
  Launcher(const char* site, const char* name, dim3 grid, dim3 block, size_t bytes, Kernel kernel)
      : site_(site), name_(name), grid_(grid), block_(block), bytes_(bytes), kernel_(kernel) {}

  template <typename... Given>
  void operator()(Given&&... given) {
    static_assert(sizeof...(Given) == sizeof...(Args), "wrong number of kernel arguments");
    static_assert((0 + ... + sizeof(std::decay_t<Args>)) <= 32764,
                  "kernel arguments above the 32,764-byte parameter limit");
    std::tuple<std::decay_t<Args>...> args(std::forward<Given>(given)...);
    args_ = &args;
    launch(record_of(kernel_), site_, name_, grid_, block_, bytes_, &Launcher::run_thread, this);
    args_ = nullptr;
  }

 private:
  static void run_thread(void* self) {
    auto* l = static_cast<Launcher*>(self);
    // Each thread gets its own copy of the arguments, as from parameter space.
    std::tuple<std::decay_t<Args>...> mine = *static_cast<std::tuple<std::decay_t<Args>...>*>(l->args_);
    std::apply(l->kernel_, mine);
  }

  const char* site_;
  const char* name_;
  dim3 grid_, block_;
  size_t bytes_;
  Kernel kernel_;
  void* args_ = nullptr;
};

template <typename... Args>
Launcher<Args...> make_launcher(const char* site, const char* name, dim3 grid, dim3 block, size_t bytes,
                                cudaStream_t /*stream: launches are synchronous*/, void (*kernel)(Args...)) {
  return Launcher<Args...>(site, name, grid, block, bytes, kernel);
}

}  // namespace localgrad::emulation

template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  auto& record = localgrad::emulation::record_of(kernel);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
    return localgrad::emulation::set_max_dynamic_shared(record, value);
  return cudaSuccess;
}

template <typename T>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* kernel) {
  if (attr == nullptr) return cudaErrorInvalidValue;
  auto& record = localgrad::emulation::record_of(kernel);
  *attr = cudaFuncAttributes{};
  attr->sharedSizeBytes = localgrad::emulation::static_shared_bytes(record);
  attr->maxThreadsPerBlock = localgrad::emulation::device_model().max_threads_per_block;
  attr->maxDynamicSharedSizeBytes = localgrad::emulation::max_dynamic_shared(record);
  attr->preferredShmemCarveout = -1;
  return cudaSuccess;
}

// ---------------------------------------------------------------------------
// Half and bfloat16 storage types, converted with round-to-nearest-even like
// CUDA's __float2half_rn / __float2bfloat16_rn (NaN becomes the canonical
// 0x7fff, as on the GPU).

struct __half {
  unsigned short __x;
};
struct __nv_bfloat16 {
  unsigned short __x;
};
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "2-byte storage types");

namespace localgrad::emulation {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline unsigned short float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const unsigned short sign = static_cast<unsigned short>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fffu;                       // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00u;               // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                     // below 2^-14: subnormal or 0
    if (ax <= 0x33000000u) return sign;                       // <= 2^-25 rounds to 0
    const int e = static_cast<int>(ax >> 23);                 // 102..112
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;          // f = m * 2^(e-150)
    const int shift = 126 - e;                                // half ulp 2^-24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return static_cast<unsigned short>(sign | q);
  }
  uint32_t h = ((((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13));
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves to the exponent
  return static_cast<unsigned short>(sign | h);
}

inline float half_bits_to_float(unsigned short h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return bits_float(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    const float v = static_cast<float>(m) * 0x1p-24f;  // exact
    return sign ? -v : v;
  }
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

inline unsigned short float_to_bfloat16_bits(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<unsigned short>(x >> 16);
}

inline float bfloat16_bits_to_float(unsigned short b) { return bits_float(static_cast<uint32_t>(b) << 16); }

}  // namespace localgrad::emulation

inline float __half2float(__half h) { return localgrad::emulation::half_bits_to_float(h.__x); }
inline __half __float2half_rn(float f) { return __half{localgrad::emulation::float_to_half_bits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return localgrad::emulation::bfloat16_bits_to_float(b.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16{localgrad::emulation::float_to_bfloat16_bits(f)};
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

#endif  // LOCALGRAD_CUDA_EMULATION_H

// ---------------------------------------------------------------------------
// Device code (what nvcc provides to every .cu file): qualifiers, built-in
// variables, barriers, warp shuffles, atomics, math. Only with
// LOCALGRAD_EMULATION_DEVICE_CODE (cuda_runtime.h), so that glue translation
// units that include a kernel's .cuh get the runtime API alone.

#if defined(LOCALGRAD_EMULATION_DEVICE_CODE) && !defined(LOCALGRAD_EMULATION_DEVICE_CODE_DONE)
#define LOCALGRAD_EMULATION_DEVICE_CODE_DONE

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
// No plain __shared__: static and dynamic shared memory go through
// LOCALGRAD_SHARED / LOCALGRAD_DYNAMIC_SHARED (csrc/cuda/launch.h), which
// the emulator can size and check.

#define threadIdx (::localgrad::emulation::device_context().thread_idx)
#define blockIdx (::localgrad::emulation::device_context().block_idx)
#define blockDim (::localgrad::emulation::device_context().block_dim)
#define gridDim (::localgrad::emulation::device_context().grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { localgrad::emulation::syncthreads(); }
inline int __syncthreads_or(int predicate) { return localgrad::emulation::syncthreads_or(predicate); }
inline int __syncthreads_and(int predicate) { return localgrad::emulation::syncthreads_and(predicate); }
inline int __syncthreads_count(int predicate) { return localgrad::emulation::syncthreads_count(predicate); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a 1-8 byte value");
  const int lane = localgrad::emulation::device_context().linear_tid % 32;
  int src = lane ^ lane_mask;
  if ((src / width) != (lane / width)) src = lane;  // outside the segment: own value
  T out;
  localgrad::emulation::warp_exchange(mask, &value, sizeof(T), src, &out);
  return out;
}

template <typename T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a 1-8 byte value");
  const int lane = localgrad::emulation::device_context().linear_tid % 32;
  const int src = (lane / width) * width + (src_lane % width);
  T out;
  localgrad::emulation::warp_exchange(mask, &value, sizeof(T), src, &out);
  return out;
}

namespace localgrad::emulation {
// CUDA atomics are relaxed read-modify-writes.
template <typename T, typename F>
T atomic_update(T* address, F f) {
  T old;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  T desired = f(old);
  while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    desired = f(old);
  return old;
}
}  // namespace localgrad::emulation

inline float atomicAdd(float* a, float v) {
  return localgrad::emulation::atomic_update(a, [v](float o) { return o + v; });
}
inline double atomicAdd(double* a, double v) {
  return localgrad::emulation::atomic_update(a, [v](double o) { return o + v; });
}
inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
inline int atomicMax(int* a, int v) {
  return localgrad::emulation::atomic_update(a, [v](int o) { return o > v ? o : v; });
}
inline unsigned atomicMax(unsigned* a, unsigned v) {
  return localgrad::emulation::atomic_update(a, [v](unsigned o) { return o > v ? o : v; });
}
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  return localgrad::emulation::atomic_update(a, [v](unsigned long long o) { return o > v ? o : v; });
}
inline long long atomicMax(long long* a, long long v) {
  return localgrad::emulation::atomic_update(a, [v](long long o) { return o > v ? o : v; });
}

inline unsigned int __float_as_uint(float f) { return localgrad::emulation::float_bits(f); }
inline float __uint_as_float(unsigned int u) { return localgrad::emulation::bits_float(u); }
inline int __float_as_int(float f) { return static_cast<int>(localgrad::emulation::float_bits(f)); }
inline float __int_as_float(int i) { return localgrad::emulation::bits_float(static_cast<uint32_t>(i)); }
inline long long __double_as_longlong(double d) {
  long long l;
  std::memcpy(&l, &d, sizeof l);
  return l;
}
inline double __longlong_as_double(long long l) {
  double d;
  std::memcpy(&d, &l, sizeof d);
  return d;
}

// CUDA's max/min: fmax/fmin for floating point (a NaN operand loses).
inline float max(float a, float b) { return fmaxf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }

#endif  // LOCALGRAD_EMULATION_DEVICE_CODE
