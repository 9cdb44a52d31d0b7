// Fused spiking e-prop over a chunk of T steps, one launch.
//
// The work of a step is dominated by the synapses: every one of the
// hidden x (n_in + hidden) synapses of every sample updates its traces and
// its weight update, while the neuron dynamics touch only hidden values.
// So the grid tiles the flattened synapse index (blockIdx.x) and the samples
// (blockIdx.y): a block owns kTile synapses of one sample at a time, keeps
// their weight updates in registers across all samples and steps it visits,
// and adds them to grad_w once at the end. Each block replays its sample's
// neuron dynamics itself (cheap, and identical in every block), keeping
// membrane, spikes, presynaptic traces and readout in shared memory for the
// whole chunk: nothing but the per-synapse traces crosses global memory
// inside the time loop. Blocks of column 0 write the neuron state, outputs
// and readout gradient; they read the initial state from copies so that no
// block reads state another has already advanced.
#include "eprop_lif_kernel.cuh"

#include <algorithm>
#include <cstdint>

#include "element.cuh"
#include "launch.h"

namespace localgrad::eprop_lif {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 16;
constexpr int64_t kTile = int64_t(kThreads) * kPerThread;  // synapses per block
constexpr int kMaxGridY = 65535;
static_assert(kThreads % 32 == 0, "eprop_lif: kThreads must be a whole number of warps");

// Shared arrays, in this order: v, a, z, z_prev, psi_prev, psi_now, signal
// (hidden each), zk (hidden + 1), eps, eps_prev (P each), y, dedy (n_out each).
__host__ __device__ inline int64_t shared_elements(int64_t H, int64_t P, int64_t K) {
  return 8 * H + 1 + 2 * P + 2 * K;
}

template <typename T>
__device__ __forceinline__ T relu(T x) { return x < T(0) ? T(0) : x; }  // NaN stays NaN

template <typename scalar_t, bool kAdaptive, SignalMode kMode>
__global__ void __launch_bounds__(kThreads) chunk_kernel(const ChunkParams c) {
  LOCALGRAD_DYNAMIC_SHARED(shared_raw);
  scalar_t* sh = reinterpret_cast<scalar_t*>(shared_raw);
  const int64_t T = c.steps, B = c.batch, I = c.n_in, H = c.hidden, K = c.n_out;
  const int64_t P = I + H;
  scalar_t* v = sh;
  scalar_t* a = v + H;
  scalar_t* z = a + H;
  scalar_t* z_prev = z + H;
  scalar_t* psi_prev = z_prev + H;
  scalar_t* psi_now = psi_prev + H;
  scalar_t* signal = psi_now + H;
  scalar_t* zk = signal + H;
  scalar_t* eps = zk + H + 1;
  scalar_t* eps_prev = eps + P;
  scalar_t* y = eps_prev + P;
  scalar_t* dedy = y + K;
  LOCALGRAD_SHARED(bool, has_loss, );

  const auto alpha = static_cast<scalar_t>(c.alpha), rho = static_cast<scalar_t>(c.rho);
  const auto beta = static_cast<scalar_t>(c.beta), v_th = static_cast<scalar_t>(c.v_th);
  const auto gamma = static_cast<scalar_t>(c.gamma), kappa = static_cast<scalar_t>(c.kappa);
  const auto scale = static_cast<scalar_t>(c.loss_scale);
  const auto* in_current = static_cast<const scalar_t*>(c.in_current);
  const auto* w_rec = static_cast<const scalar_t*>(c.weight_rec);
  const auto* w_out = static_cast<const scalar_t*>(c.weight_out);
  const auto* b_out = static_cast<const scalar_t*>(c.bias_out);
  const auto* fb = static_cast<const scalar_t*>(c.feedback);
  const auto* x = static_cast<const scalar_t*>(c.x);
  const bool writer = blockIdx.x == 0;
  const int tid = threadIdx.x;
  const int64_t s0 = static_cast<int64_t>(blockIdx.x) * kTile;

  scalar_t grad[kPerThread];
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) grad[r] = scalar_t(0);

  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    for (int64_t j = tid; j < H; j += kThreads) {
      v[j] = static_cast<const scalar_t*>(c.v0)[b * H + j];
      z[j] = static_cast<const scalar_t*>(c.z0)[b * H + j];
      a[j] = kAdaptive ? static_cast<const scalar_t*>(c.a0)[b * H + j] : scalar_t(0);
      psi_prev[j] = kAdaptive ? static_cast<const scalar_t*>(c.psi0)[b * H + j] : scalar_t(0);
    }
    for (int64_t j = tid; j <= H; j += kThreads)
      zk[j] = static_cast<const scalar_t*>(c.out_trace0)[b * (H + 1) + j];
    for (int64_t i = tid; i < P; i += kThreads)
      eps[i] = static_cast<const scalar_t*>(c.pre_trace0)[b * P + i];
    for (int64_t k = tid; k < K; k += kThreads) y[k] = static_cast<const scalar_t*>(c.y0)[b * K + k];
    __syncthreads();

    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = t * B + b;
      // Presynaptic traces: eps_prev keeps eps_{t-1} for the adaptive trace.
      for (int64_t i = tid; i < P; i += kThreads) {
        const scalar_t pre = i < I ? x[row * I + i] : z[i - I];
        eps_prev[i] = eps[i];
        eps[i] = alpha * eps[i] + pre;
      }
      for (int64_t j = tid; j < H; j += kThreads) z_prev[j] = z[j];
      __syncthreads();

      // Neuron dynamics; the recurrent sum reads the columns of the neurons
      // with z_{t-1} != 0 (spikes, or a caller's initial state), weighted by
      // it, in ascending order like the CPU kernel.
      for (int64_t j = tid; j < H; j += kThreads) {
        scalar_t s = in_current[row * H + j];
        const scalar_t* w_row = w_rec + j * H;
        for (int64_t i = 0; i < H; ++i)
          if (z_prev[i] != scalar_t(0)) s += w_row[i] * z_prev[i];  // initial z may be non-binary
        scalar_t threshold = v_th;
        if constexpr (kAdaptive) {
          a[j] = rho * a[j] + z_prev[j];
          threshold += beta * a[j];
        }
        v[j] = alpha * v[j] + (s - v_th * z_prev[j]);
        const scalar_t u = v[j] - threshold;
        z[j] = u > scalar_t(0) ? scalar_t(1) : scalar_t(0);
        psi_now[j] = gamma * relu(scalar_t(1) - fabs(u) / v_th);
      }
      __syncthreads();

      for (int64_t k = tid; k < K; k += kThreads) {
        scalar_t s = b_out[k];
        const scalar_t* w_row = w_out + k * H;
        for (int64_t j = 0; j < H; ++j)
          if (z[j] != scalar_t(0)) s += w_row[j];
        y[k] = kappa * y[k] + s;
        if (writer) static_cast<scalar_t*>(c.outputs)[row * K + k] = y[k];
      }
      for (int64_t j = tid; j <= H; j += kThreads) zk[j] = kappa * zk[j] + (j < H ? z[j] : scalar_t(1));
      __syncthreads();

      if constexpr (kMode == SignalMode::Given) {
        for (int64_t j = tid; j < H; j += kThreads)
          signal[j] = static_cast<const scalar_t*>(c.signal)[row * H + j];
      } else {
        if constexpr (kMode == SignalMode::Mse) {
          if (tid == 0) has_loss = true;
          const auto* tgt = static_cast<const scalar_t*>(c.target) + row * K;
          for (int64_t k = tid; k < K; k += kThreads) dedy[k] = (y[k] - tgt[k]) * scale;
        } else {
          // K is small: one thread does the softmax, in the CPU kernel's order.
          if (tid == 0) {
            const int64_t label = static_cast<const int64_t*>(c.target)[row];
            has_loss = label >= 0;
            if (has_loss) {
              scalar_t m = y[0];
              for (int64_t k = 1; k < K; ++k) m = m > y[k] ? m : y[k];
              scalar_t total = 0;
              for (int64_t k = 0; k < K; ++k) total += exp(y[k] - m);
              for (int64_t k = 0; k < K; ++k)
                dedy[k] = (exp(y[k] - m) / total - (k == label ? scalar_t(1) : scalar_t(0))) * scale;
            }
          }
        }
        __syncthreads();
        for (int64_t j = tid; j < H; j += kThreads) {
          scalar_t l = 0;
          if (has_loss)
            for (int64_t k = 0; k < K; ++k) l += dedy[k] * fb[k * H + j];
          signal[j] = l;
        }
        if (writer && has_loss) {
          auto* g_out = static_cast<scalar_t*>(c.grad_out);
          for (int64_t idx = tid; idx < K * (H + 1); idx += kThreads)
            atomicAdd(g_out + idx, dedy[idx / (H + 1)] * zk[idx % (H + 1)]);
        }
      }
      __syncthreads();

      // The block's synapses: traces live in global memory, one read and
      // write per trace per step; the weight update stays in registers.
#pragma unroll
      for (int r = 0; r < kPerThread; ++r) {
        const int64_t s = s0 + tid + int64_t(r) * kThreads;
        if (s >= H * P) break;
        const int64_t j = s / P, i = s - j * P;
        const int64_t at = b * H * P + s;
        scalar_t e = eps[i];
        if constexpr (kAdaptive) {
          scalar_t* epsa = static_cast<scalar_t*>(c.adapt_trace) + at;
          const scalar_t p = psi_prev[j];
          const scalar_t ea = p * eps_prev[i] + (rho - beta * p) * *epsa;
          *epsa = ea;
          e = eps[i] - beta * ea;
        }
        e = psi_now[j] * e;
        if constexpr (kMode == SignalMode::Given) {
          grad[r] += signal[j] * e;
        } else {
          scalar_t* ebar = static_cast<scalar_t*>(c.filt_trace) + at;
          const scalar_t f = kappa * *ebar + e;
          *ebar = f;
          grad[r] += signal[j] * f;
        }
      }
      __syncthreads();  // every synapse has read psi_prev
      for (int64_t j = tid; j < H; j += kThreads) psi_prev[j] = psi_now[j];
      __syncthreads();
    }

    if (writer) {
      for (int64_t j = tid; j < H; j += kThreads) {
        static_cast<scalar_t*>(c.v)[b * H + j] = v[j];
        static_cast<scalar_t*>(c.z)[b * H + j] = z[j];
        if constexpr (kAdaptive) {
          static_cast<scalar_t*>(c.a)[b * H + j] = a[j];
          static_cast<scalar_t*>(c.psi)[b * H + j] = psi_prev[j];
        }
      }
      for (int64_t j = tid; j <= H; j += kThreads) static_cast<scalar_t*>(c.out_trace)[b * (H + 1) + j] = zk[j];
      for (int64_t i = tid; i < P; i += kThreads) static_cast<scalar_t*>(c.pre_trace)[b * P + i] = eps[i];
      for (int64_t k = tid; k < K; k += kThreads) static_cast<scalar_t*>(c.y)[b * K + k] = y[k];
    }
    __syncthreads();  // shared state is reloaded for the next sample
  }

  auto* g = static_cast<scalar_t*>(c.grad_w);
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const int64_t s = s0 + tid + int64_t(r) * kThreads;
    if (s < H * P) atomicAdd(g + s, grad[r]);
  }
}

size_t dynamic_bytes(const ChunkParams& c, size_t elem) {
  return static_cast<size_t>(shared_elements(c.hidden, c.n_in + c.hidden, c.n_out)) * elem;
}

// The kernel's static shared memory (the has_loss flag: 16 bytes as ptxas
// lays it out) as the runtime reports it; 0 if it cannot tell.
template <typename scalar_t, bool kAdaptive, SignalMode kMode>
size_t static_bytes() {
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, chunk_kernel<scalar_t, kAdaptive, kMode>) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return attr.sharedSizeBytes;
}

template <typename scalar_t, bool kAdaptive, SignalMode kMode>
cudaError_t launch_typed(const ChunkParams& c, cudaStream_t stream) {
  const int64_t P = c.n_in + c.hidden;
  const size_t bytes = dynamic_bytes(c, sizeof(scalar_t));
  auto kernel = chunk_kernel<scalar_t, kAdaptive, kMode>;
  // Above the default per-block limit, static + dynamic, the launch needs the
  // opt-in. A failed request is cleared here, not left for the next launch.
  int device = 0, default_limit = 48 * 1024;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&default_limit, cudaDevAttrMaxSharedMemoryPerBlock, device) != cudaSuccess) {
    return cudaGetLastError();
  }
  if (static_bytes<scalar_t, kAdaptive, kMode>() + bytes > static_cast<size_t>(default_limit)) {
    const cudaError_t status =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      return status;
    }
  }
  const int64_t tiles = std::max<int64_t>(1, (c.hidden * P + kTile - 1) / kTile);
  const dim3 grid(static_cast<unsigned>(tiles),
                  static_cast<unsigned>(std::min<int64_t>(c.batch, grid_cap(kMaxGridY))));
  LOCALGRAD_LAUNCH(grid, kThreads, bytes, stream, kernel)(c);
  return cudaGetLastError();
}

}  // namespace

size_t chunk_shared_bytes(const ChunkParams& c, ScalarKind dtype, bool adaptive, SignalMode mode) {
  return LOCALGRAD_DISPATCH_ADAPTIVE(adaptive, [&] {
    return LOCALGRAD_DISPATCH_SIGNAL_MODE(mode, [&] {
      if (dtype == ScalarKind::Float64) return static_bytes<double, kAdaptive, kMode>() + dynamic_bytes(c, 8);
      return static_bytes<float, kAdaptive, kMode>() + dynamic_bytes(c, 4);
    });
  });
}

cudaError_t launch_chunk(const ChunkParams& c, ScalarKind dtype, bool adaptive, SignalMode mode,
                         cudaStream_t stream) {
  if (c.batch == 0 || c.steps == 0) return cudaSuccess;
  return LOCALGRAD_DISPATCH_ADAPTIVE(adaptive, [&] {
    return LOCALGRAD_DISPATCH_SIGNAL_MODE(mode, [&] {
      if (dtype == ScalarKind::Float64) return launch_typed<double, kAdaptive, kMode>(c, stream);
      return launch_typed<float, kAdaptive, kMode>(c, stream);
    });
  });
}

}  // namespace localgrad::eprop_lif
