// Fused DFA projection: out[l] = (error @ B_l) * f'(h_l) for every layer of a
// launch. n_out (the model's outputs) is small, so this is not a big GEMM: the
// cost is streaming h_l in and delta_l out. Each block owns a BM x BN tile of
// one layer, stages the error rows and feedback columns it needs in shared
// memory, and applies the derivative while the products are still in registers,
// so the projection never makes a round trip through global memory.
#include "dfa_kernel.cuh"

#include <algorithm>

#include "element.cuh"
#include "launch.h"

namespace localgrad::dfa {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kBM = 32;                         // rows of a tile
constexpr int kBN = 128;                        // columns of a tile
constexpr int kBK = 16;                         // n_out slab staged at a time
constexpr int kRowGroups = kThreads / kWarp;    // 8: a warp per row group
constexpr int kRowsPerThread = kBM / kRowGroups;  // 4
constexpr int kColsPerThread = kBN / kWarp;       // 4
constexpr int kMaxGridY = 65535;
// The tile split: whole warps per row group, rows and columns per thread.
static_assert(kThreads % kWarp == 0 && kBM % kRowGroups == 0 && kBN % kWarp == 0,
              "dfa: the tile must split evenly over the block's warps");

// First column tile of each layer, so a block finds its layer by blockIdx.x.
struct TileMap {
  int begin[kMaxLayersPerLaunch + 1];
};

template <typename scalar_t, Activation kAct, typename acc_t>
__device__ __forceinline__ void store_tile(const Layer& layer, int64_t batch,
                                           int64_t row0, int64_t col0,
                                           const acc_t (&acc)[kRowsPerThread][kColsPerThread]) {
  auto* out = static_cast<scalar_t*>(layer.out);
  const auto* act = static_cast<const scalar_t*>(layer.act);
  const acc_t slope = static_cast<acc_t>(layer.slope);
  const int tx = threadIdx.x % kWarp;
  const int ty = threadIdx.x / kWarp;
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t row = row0 + ty + i * kRowGroups;
    if (row >= batch) break;
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) {
      const int64_t col = col0 + tx + j * kWarp;
      if (col >= layer.width) break;
      acc_t d = acc_t(1);
      if constexpr (kAct != Activation::Identity) {
        d = derivative_from_output<kAct, acc_t>(to_acc(act[row * layer.act_row_stride + col]), slope);
      }
      out[row * layer.out_row_stride + col] = from_acc<scalar_t>(acc[i][j] * d);
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
project_kernel(const ProjectParams params, const TileMap tiles) {
  using acc_t = typename AccType<scalar_t>::type;
  LOCALGRAD_SHARED(acc_t, e_tile, [kBM][kBK + 1]);  // +1: no bank conflicts on the column read
  LOCALGRAD_SHARED(acc_t, b_tile, [kBK][kBN]);

  int l = 0;
  while (l + 1 < params.n_layers && static_cast<int>(blockIdx.x) >= tiles.begin[l + 1]) ++l;
  const Layer& layer = params.layers[l];
  const int64_t col0 = static_cast<int64_t>(blockIdx.x - tiles.begin[l]) * kBN;

  const auto* error = static_cast<const scalar_t*>(params.error);
  const auto* feedback = static_cast<const scalar_t*>(params.feedback);
  const int tx = threadIdx.x % kWarp;
  const int ty = threadIdx.x / kWarp;
  const int64_t n_row_tiles = (params.batch + kBM - 1) / kBM;

  for (int64_t row_tile = blockIdx.y; row_tile < n_row_tiles; row_tile += gridDim.y) {
    const int64_t row0 = row_tile * kBM;
    acc_t acc[kRowsPerThread][kColsPerThread] = {};

    for (int64_t k0 = 0; k0 < params.n_out; k0 += kBK) {
      for (int idx = threadIdx.x; idx < kBM * kBK; idx += kThreads) {
        const int r = idx / kBK, k = idx % kBK;
        const int64_t row = row0 + r, kk = k0 + k;
        e_tile[r][k] = (row < params.batch && kk < params.n_out)
                           ? to_acc(error[row * params.error_row_stride + kk])
                           : acc_t(0);
      }
      for (int idx = threadIdx.x; idx < kBK * kBN; idx += kThreads) {
        const int k = idx / kBN, c = idx % kBN;
        const int64_t kk = k0 + k, col = col0 + c;
        b_tile[k][c] = (kk < params.n_out && col < layer.width)
                           ? to_acc(feedback[kk * params.feedback_row_stride + layer.col_offset + col])
                           : acc_t(0);
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < kBK; ++k) {
        acc_t a[kRowsPerThread], b[kColsPerThread];
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i) a[i] = e_tile[ty + i * kRowGroups][k];
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) b[j] = b_tile[k][tx + j * kWarp];
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
          for (int j = 0; j < kColsPerThread; ++j) acc[i][j] += a[i] * b[j];
      }
      __syncthreads();  // the next slab overwrites the tiles
    }

    LOCALGRAD_DISPATCH_ACTIVATION(layer.kind, [&] {
      store_tile<scalar_t, kAct>(layer, params.batch, row0, col0, acc);
    });
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const ProjectParams& params, cudaStream_t stream) {
  TileMap tiles{};
  int n_tiles = 0;
  for (int l = 0; l < params.n_layers; ++l) {
    tiles.begin[l] = n_tiles;
    n_tiles += static_cast<int>((params.layers[l].width + kBN - 1) / kBN);
  }
  tiles.begin[params.n_layers] = n_tiles;
  const int64_t n_row_tiles = (params.batch + kBM - 1) / kBM;
  if (n_tiles == 0 || n_row_tiles == 0) return cudaSuccess;
  const dim3 grid(n_tiles, static_cast<unsigned>(std::min<int64_t>(n_row_tiles, grid_cap(kMaxGridY))));
  LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, project_kernel<scalar_t>)(params, tiles);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_project(const ProjectParams& params, ScalarKind dtype,
                           cudaStream_t stream) {
  switch (dtype) {
    case ScalarKind::Float64: return launch_typed<double>(params, stream);
    case ScalarKind::Float16: return launch_typed<__half>(params, stream);
    case ScalarKind::BFloat16: return launch_typed<__nv_bfloat16>(params, stream);
    default: return launch_typed<float>(params, stream);
  }
}

}  // namespace localgrad::dfa
