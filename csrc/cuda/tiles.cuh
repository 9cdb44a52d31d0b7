// A sample split over `tiles` blocks (the rank-one online estimators tile a
// sample's long rows): each block's range of [0, n), and the four squared
// norms a sample's blocks sum in two passes (each block its partials, then
// every block the sample's totals).
#pragma once

#include <cstdint>

namespace localgrad {

// The half-open range of [0, n) that tile t of `tiles` covers.
struct Slice {
  int64_t begin, end;
};

__host__ __device__ inline Slice slice(int64_t n, int64_t t, int64_t tiles) {
  const int64_t per = (n + tiles - 1) / tiles;
  const int64_t begin = t * per < n ? t * per : n;
  return {begin, begin + per < n ? begin + per : n};
}

// How many blocks share a sample whose longest row holds `width` elements:
// two blocks per SM at least, a tile no thinner than one pass of a block's
// `threads`, and one tile per sample once the batch fills the GPU.
inline int64_t tiles_for_width(int64_t batch, int64_t width, int64_t threads) {
  int device = 0, sm_count = 1;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  const int64_t want = batch > 0 ? (2 * static_cast<int64_t>(sm_count) + batch - 1) / batch : 1;
  const int64_t most = (width + threads - 1) / threads;
  const int64_t tiles = want < most ? want : most;
  return tiles > 1 ? tiles : 1;
}

// This block's four sums of the threads' `mine` (a tree in the shared
// `sums`; kThreads, the block size, a power of two) into
// partials[blockIdx.x * 4 + j].
template <int kThreads, typename T>
__device__ void store_tile_sums(T (*sums)[kThreads], const T (&mine)[4], T* partials) {
  for (int j = 0; j < 4; ++j) sums[j][threadIdx.x] = mine[j];
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half)
      for (int j = 0; j < 4; ++j) sums[j][threadIdx.x] += sums[j][threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x < 4) partials[blockIdx.x * 4 + threadIdx.x] = sums[threadIdx.x][0];
}

// A sample's four totals: the partials of its `tiles` blocks, added in tile order.
template <typename T>
__device__ void sample_sums(const T* partials, int64_t tiles, T (&total)[4]) {
  for (int j = 0; j < 4; ++j) total[j] = 0;
  for (int64_t i = 0; i < tiles; ++i)
    for (int j = 0; j < 4; ++j) total[j] += partials[i * 4 + j];
}

}  // namespace localgrad
