// Loads and stores between storage types and the accumulation type. Torch's
// build disables the implicit half/bfloat16 conversions, so they are spelled.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace localgrad {

template <typename scalar_t> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename scalar_t> __device__ __forceinline__ scalar_t from_acc(float x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <typename scalar_t> __device__ __forceinline__ scalar_t from_acc(double x);
template <> __device__ __forceinline__ double from_acc<double>(double x) { return x; }

}  // namespace localgrad
