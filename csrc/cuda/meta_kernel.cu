// plastic_episode's kernels: the work on the Hebbian traces between the
// glue's products, one launch per kernel and step.
//   forward  a warp per row (b, i) of H: the plastic current Σ_j α_ij H_ij p_j
//            (a warp sum), y = f(a), then the row's trace update in place
//   rows     a warp per row: the two row sums of the backward (G p, and
//            dη's share), recomputing H_{t-1} in place on the way
//   inputs   a thread per (b, j): dL/dp_j, a sum down column j (threads of a
//            warp read neighbouring j: coalesced)
//   weights  a thread per synapse (i, j): dα summed over the episodes in
//            order, and G <- (1 - η) G + α ⊙ ga pᵀ
// Every sum runs in a fixed order: the results do not depend on the grid.
#include "meta_kernel.cuh"

#include <algorithm>

#include "launch.h"
#include "warp.cuh"

namespace localgrad::meta {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int64_t kMaxGrid = 65535;

// The step's rate of episode b: e_tb = eta m_tb when modulated.
template <typename T>
__device__ __forceinline__ T rate_of(const void* rate, int64_t b, double eta) {
  return rate != nullptr ? static_cast<const T*>(rate)[b] : static_cast<T>(eta);
}

template <typename T, PlasticActivation kAct>
__device__ __forceinline__ T activate(T a) {
  if constexpr (kAct == PlasticActivation::Tanh) return tanh(a);
  else return a;
}

template <typename T, PlasticActivation kAct>
__device__ __forceinline__ T derivative(T y) {
  if constexpr (kAct == PlasticActivation::Tanh) return T(1) - y * y;
  else return T(1);
}

template <typename T, PlasticActivation kAct>
__global__ void __launch_bounds__(kThreads) plastic_forward_kernel(const ForwardStepParams q) {
  const auto* drive = static_cast<const T*>(q.drive);
  const auto* alpha = static_cast<const T*>(q.alpha);
  auto* traces = static_cast<T*>(q.trace);
  const int64_t n = q.n_in, rows = q.batch * q.n_out;
  const int lane = threadIdx.x % kWarp;
  // The whole warp walks the same rows, so every lane reaches the shuffles.
  for (int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / kWarp; row < rows;
       row += int64_t(gridDim.x) * kWarps) {
    const int64_t b = row / q.n_out;
    const T eta = rate_of<T>(q.rate, b, q.eta), keep = T(1) - eta;
    const T* p = static_cast<const T*>(q.p) + b * n;
    const T* a_i = alpha + (row % q.n_out) * n;
    T* h = static_cast<T*>(q.h) + row * n;
    T dot = 0;
    for (int64_t j = lane; j < n; j += kWarp) {
      if (traces != nullptr) traces[row * n + j] = h[j];
      dot += a_i[j] * h[j] * p[j];
    }
    const T y = activate<T, kAct>(drive[row] + warp_sum(dot));
    if (lane == 0) static_cast<T*>(q.y)[row] = y;
    const T ey = eta * y;
    for (int64_t j = lane; j < n; j += kWarp) h[j] = keep * h[j] + ey * p[j];
  }
}

template <typename T, PlasticActivation kAct>
__global__ void __launch_bounds__(kThreads) plastic_rows_kernel(const BackwardRowParams q) {
  const auto* carry = static_cast<const T*>(q.carry);
  const auto* traces = static_cast<const T*>(q.trace);
  const int64_t n = q.n_in, rows = q.batch * q.n_out;
  const int lane = threadIdx.x % kWarp;
  for (int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / kWarp; row < rows;
       row += int64_t(gridDim.x) * kWarps) {
    const int64_t b = row / q.n_out;
    const T eta = rate_of<T>(q.rate, b, q.eta), inv_keep = T(1) / (T(1) - eta);
    const T* p = static_cast<const T*>(q.p) + b * n;
    const T* g = static_cast<const T*>(q.grad_h) + row * n;
    const T y = static_cast<const T*>(q.y)[row];
    const T ey = eta * y;
    T gp = 0, de = 0;
    if (traces != nullptr) {
      const T* h_prev = traces + row * n;
      for (int64_t j = lane; j < n; j += kWarp) {
        gp += g[j] * p[j];
        de += g[j] * (y * p[j] - h_prev[j]);
      }
    } else {
      T* h = static_cast<T*>(q.h) + row * n;
      for (int64_t j = lane; j < n; j += kWarp) {
        const T h_prev = (h[j] - ey * p[j]) * inv_keep;
        h[j] = h_prev;
        gp += g[j] * p[j];
        de += g[j] * (y * p[j] - h_prev);
      }
    }
    gp = warp_sum(gp);
    de = warp_sum(de);
    if (lane == 0) {
      const T gy = static_cast<const T*>(q.grad_y)[row] + (carry != nullptr ? carry[row] : T(0)) + eta * gp;
      static_cast<T*>(q.grad_a)[row] = gy * derivative<T, kAct>(y);
      static_cast<T*>(q.grad_rate)[row] = de;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) plastic_inputs_kernel(const BackwardInputParams q) {
  const auto* alpha = static_cast<const T*>(q.alpha);
  const auto* hs = static_cast<const T*>(q.h_prev);
  const auto* gs = static_cast<const T*>(q.grad_h);
  const auto* grad_a = static_cast<const T*>(q.grad_a);
  const auto* ys = static_cast<const T*>(q.y);
  const int64_t n = q.n_in, columns = q.batch * n;
  for (int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x; c < columns; c += int64_t(gridDim.x) * kThreads) {
    const int64_t b = c / n, j = c % n;
    const T eta = rate_of<T>(q.rate, b, q.eta);
    T sum = 0;
    for (int64_t i = 0; i < q.n_out; ++i) {
      const int64_t row = b * q.n_out + i;
      sum += alpha[i * n + j] * hs[row * n + j] * grad_a[row] + eta * ys[row] * gs[row * n + j];
    }
    static_cast<T*>(q.grad_p)[c] += sum;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) plastic_weights_kernel(const BackwardWeightParams q) {
  const auto* alpha = static_cast<const T*>(q.alpha);
  const auto* hs = static_cast<const T*>(q.h_prev);
  const auto* grad_a = static_cast<const T*>(q.grad_a);
  const auto* ps = static_cast<const T*>(q.p);
  auto* gs = static_cast<T*>(q.grad_h);
  const int64_t n = q.n_in, synapses = q.n_out * n, plane = q.n_out * n;
  for (int64_t s = int64_t(blockIdx.x) * kThreads + threadIdx.x; s < synapses; s += int64_t(gridDim.x) * kThreads) {
    const int64_t i = s / n, j = s % n;
    const T a = alpha[s];
    T da = 0;
    for (int64_t b = 0; b < q.batch; ++b) {
      const T outer = grad_a[b * q.n_out + i] * ps[b * n + j], keep = T(1) - rate_of<T>(q.rate, b, q.eta);
      da += hs[b * plane + s] * outer;
      gs[b * plane + s] = keep * gs[b * plane + s] + a * outer;
    }
    static_cast<T*>(q.grad_alpha)[s] += da;
  }
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(n, grid_cap(kMaxGrid))));
}

template <typename T, PlasticActivation kAct>
cudaError_t forward_typed(const ForwardStepParams& q, cudaStream_t stream) {
  LOCALGRAD_LAUNCH(blocks_for((q.batch * q.n_out + kWarps - 1) / kWarps), kThreads, 0, stream,
                   plastic_forward_kernel<T, kAct>)(q);
  return cudaGetLastError();
}

template <typename T, PlasticActivation kAct>
cudaError_t rows_typed(const BackwardRowParams& q, cudaStream_t stream) {
  LOCALGRAD_LAUNCH(blocks_for((q.batch * q.n_out + kWarps - 1) / kWarps), kThreads, 0, stream,
                   plastic_rows_kernel<T, kAct>)(q);
  return cudaGetLastError();
}

template <typename T>
cudaError_t inputs_typed(const BackwardInputParams& q, cudaStream_t stream) {
  LOCALGRAD_LAUNCH(blocks_for((q.batch * q.n_in + kThreads - 1) / kThreads), kThreads, 0, stream,
                   plastic_inputs_kernel<T>)(q);
  return cudaGetLastError();
}

template <typename T>
cudaError_t weights_typed(const BackwardWeightParams& q, cudaStream_t stream) {
  LOCALGRAD_LAUNCH(blocks_for((q.n_out * q.n_in + kThreads - 1) / kThreads), kThreads, 0, stream,
                   plastic_weights_kernel<T>)(q);
  return cudaGetLastError();
}

// The four (dtype, activation) instantiations of a row kernel's launcher.
template <template <typename, PlasticActivation> class Launch, typename P>
cudaError_t by_activation(const P& q, bool is_double, cudaStream_t stream) {
  const bool tanh_act = q.activation == PlasticActivation::Tanh;
  if (is_double) {
    return tanh_act ? Launch<double, PlasticActivation::Tanh>::run(q, stream)
                    : Launch<double, PlasticActivation::Identity>::run(q, stream);
  }
  return tanh_act ? Launch<float, PlasticActivation::Tanh>::run(q, stream)
                  : Launch<float, PlasticActivation::Identity>::run(q, stream);
}

template <typename T, PlasticActivation kAct>
struct Forward {
  static cudaError_t run(const ForwardStepParams& q, cudaStream_t s) { return forward_typed<T, kAct>(q, s); }
};
template <typename T, PlasticActivation kAct>
struct Rows {
  static cudaError_t run(const BackwardRowParams& q, cudaStream_t s) { return rows_typed<T, kAct>(q, s); }
};

}  // namespace

cudaError_t launch_forward_step(const ForwardStepParams& q, bool is_double, cudaStream_t stream) {
  if (q.batch == 0 || q.n_out == 0) return cudaSuccess;
  return by_activation<Forward>(q, is_double, stream);
}

cudaError_t launch_backward_rows(const BackwardRowParams& q, bool is_double, cudaStream_t stream) {
  if (q.batch == 0 || q.n_out == 0) return cudaSuccess;
  return by_activation<Rows>(q, is_double, stream);
}

cudaError_t launch_backward_inputs(const BackwardInputParams& q, bool is_double, cudaStream_t stream) {
  if (q.batch == 0 || q.n_in == 0) return cudaSuccess;
  return is_double ? inputs_typed<double>(q, stream) : inputs_typed<float>(q, stream);
}

cudaError_t launch_backward_weights(const BackwardWeightParams& q, bool is_double, cudaStream_t stream) {
  if (q.n_out == 0 || q.n_in == 0) return cudaSuccess;
  return is_double ? weights_typed<double>(q, stream) : weights_typed<float>(q, stream);
}

}  // namespace localgrad::meta
