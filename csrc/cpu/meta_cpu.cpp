// CPU plastic_episode and plastic_episode_backward: the checks and the loop
// over the steps are shared with the CUDA backend (meta_glue.cpp); these are
// the kernels on the traces, at::parallel_for over independent rows
// (forward, backward rows), episodes (inputs) or rows of α (weights), each
// summing in a fixed order.
#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../meta_glue.h"

namespace localgrad::meta {
namespace {

template <typename T>
inline T activate(T a, PlasticActivation act) {
  return act == PlasticActivation::Tanh ? std::tanh(a) : a;
}

template <typename T>
inline T derivative(T y, PlasticActivation act) {
  return act == PlasticActivation::Tanh ? T(1) - y * y : T(1);
}

// The step's rate of episode b: e_tb = eta m_tb when modulated.
template <typename T>
inline T rate_of(const void* rate, int64_t b, double eta) {
  return rate != nullptr ? static_cast<const T*>(rate)[b] : static_cast<T>(eta);
}

// Enough rows per task that a task is not a handful of multiply-adds.
int64_t grain(int64_t row_length) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, row_length)); }

template <typename T>
void forward_step(const ForwardStepParams& q) {
  const auto* drive = static_cast<const T*>(q.drive);
  const auto* ps = static_cast<const T*>(q.p);
  const auto* alpha = static_cast<const T*>(q.alpha);
  auto* hs = static_cast<T*>(q.h);
  auto* traces = static_cast<T*>(q.trace);
  auto* ys = static_cast<T*>(q.y);
  const int64_t n = q.n_in;
  at::parallel_for(0, q.batch * q.n_out, grain(n), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / q.n_out, i = row % q.n_out;
      const T eta = rate_of<T>(q.rate, b, q.eta), keep = T(1) - eta;
      const T* p = ps + b * n;
      const T* a_i = alpha + i * n;
      T* h = hs + row * n;
      if (traces != nullptr) std::copy(h, h + n, traces + row * n);
      T dot = 0;
      for (int64_t j = 0; j < n; ++j) dot += a_i[j] * h[j] * p[j];
      const T y = activate(drive[row] + dot, q.activation);
      ys[row] = y;
      const T ey = eta * y;
      for (int64_t j = 0; j < n; ++j) h[j] = keep * h[j] + ey * p[j];
    }
  });
}

template <typename T>
void backward_rows(const BackwardRowParams& q) {
  const auto* grad_y = static_cast<const T*>(q.grad_y);
  const auto* carry = static_cast<const T*>(q.carry);
  const auto* ys = static_cast<const T*>(q.y);
  const auto* ps = static_cast<const T*>(q.p);
  const auto* gs = static_cast<const T*>(q.grad_h);
  auto* hs = static_cast<T*>(q.h);
  const auto* traces = static_cast<const T*>(q.trace);
  auto* grad_a = static_cast<T*>(q.grad_a);
  auto* grad_rate = static_cast<T*>(q.grad_rate);
  const int64_t n = q.n_in;
  at::parallel_for(0, q.batch * q.n_out, grain(n), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / q.n_out;
      const T eta = rate_of<T>(q.rate, b, q.eta), inv_keep = T(1) / (T(1) - eta);
      const T* p = ps + b * n;
      const T* g = gs + row * n;
      const T y = ys[row];
      const T ey = eta * y;
      T gp = 0, de = 0;
      if (traces != nullptr) {
        const T* h_prev = traces + row * n;
        for (int64_t j = 0; j < n; ++j) {
          gp += g[j] * p[j];
          de += g[j] * (y * p[j] - h_prev[j]);
        }
      } else {
        T* h = hs + row * n;
        for (int64_t j = 0; j < n; ++j) {
          const T h_prev = (h[j] - ey * p[j]) * inv_keep;
          h[j] = h_prev;
          gp += g[j] * p[j];
          de += g[j] * (y * p[j] - h_prev);
        }
      }
      const T gy = grad_y[row] + (carry != nullptr ? carry[row] : T(0)) + eta * gp;
      grad_a[row] = gy * derivative(y, q.activation);
      grad_rate[row] = de;
    }
  });
}

template <typename T>
void backward_inputs(const BackwardInputParams& q) {
  const auto* alpha = static_cast<const T*>(q.alpha);
  const auto* hs = static_cast<const T*>(q.h_prev);
  const auto* gs = static_cast<const T*>(q.grad_h);
  const auto* grad_a = static_cast<const T*>(q.grad_a);
  const auto* ys = static_cast<const T*>(q.y);
  auto* grad_p = static_cast<T*>(q.grad_p);
  const int64_t n = q.n_in;
  at::parallel_for(0, q.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const T eta = rate_of<T>(q.rate, b, q.eta);
      T* dp = grad_p + b * n;
      for (int64_t i = 0; i < q.n_out; ++i) {
        const int64_t row = b * q.n_out + i;
        const T ga = grad_a[row], ey = eta * ys[row];
        const T* a_i = alpha + i * n;
        const T* h = hs + row * n;
        const T* g = gs + row * n;
        for (int64_t j = 0; j < n; ++j) dp[j] += a_i[j] * h[j] * ga + ey * g[j];
      }
    }
  });
}

template <typename T>
void backward_weights(const BackwardWeightParams& q) {
  const auto* alpha = static_cast<const T*>(q.alpha);
  const auto* hs = static_cast<const T*>(q.h_prev);
  const auto* grad_a = static_cast<const T*>(q.grad_a);
  const auto* ps = static_cast<const T*>(q.p);
  auto* gs = static_cast<T*>(q.grad_h);
  auto* grad_alpha = static_cast<T*>(q.grad_alpha);
  const int64_t n = q.n_in;
  at::parallel_for(0, q.n_out, grain(n * q.batch), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* a_i = alpha + i * n;
      T* da = grad_alpha + i * n;
      for (int64_t b = 0; b < q.batch; ++b) {
        const int64_t row = b * q.n_out + i;
        const T ga = grad_a[row], keep = T(1) - rate_of<T>(q.rate, b, q.eta);
        const T* p = ps + b * n;
        const T* h = hs + row * n;
        T* g = gs + row * n;
        for (int64_t j = 0; j < n; ++j) {
          const T outer = ga * p[j];
          da[j] += h[j] * outer;
          g[j] = keep * g[j] + a_i[j] * outer;
        }
      }
    }
  });
}

template <typename P>
using Typed = void (*)(const P&);

template <typename P>
void run(const P& q, bool is_double, Typed<P> f64, Typed<P> f32) {
  (is_double ? f64 : f32)(q);
}

void forward_step_cpu(const ForwardStepParams& q, bool d) { run(q, d, &forward_step<double>, &forward_step<float>); }
void backward_rows_cpu(const BackwardRowParams& q, bool d) {
  run(q, d, &backward_rows<double>, &backward_rows<float>);
}
void backward_inputs_cpu(const BackwardInputParams& q, bool d) {
  run(q, d, &backward_inputs<double>, &backward_inputs<float>);
}
void backward_weights_cpu(const BackwardWeightParams& q, bool d) {
  run(q, d, &backward_weights<double>, &backward_weights<float>);
}

constexpr Kernels kCpuKernels{&forward_step_cpu, &backward_rows_cpu, &backward_inputs_cpu, &backward_weights_cpu};

std::tuple<at::Tensor, at::Tensor, at::Tensor> plastic_episode_cpu(const at::Tensor& u,
                                                                   const std::optional<at::Tensor>& x,
                                                                   const at::Tensor& weight, const at::Tensor& alpha,
                                                                   const at::Tensor& h0, double eta,
                                                                   int64_t activation, bool store_traces,
                                                                   const std::optional<at::Tensor>& modulation) {
  return plastic_episode(u, x, weight, alpha, h0, eta, activation, store_traces, modulation, kCpuKernels);
}

BackwardResult plastic_episode_backward_cpu(const at::Tensor& grad_ys, const std::optional<at::Tensor>& grad_h,
                                            const std::optional<at::Tensor>& x, const at::Tensor& weight,
                                            const at::Tensor& alpha, const at::Tensor& ys, const at::Tensor& h_T,
                                            const std::optional<at::Tensor>& traces, double eta, int64_t activation,
                                            const std::optional<at::Tensor>& modulation) {
  return plastic_episode_backward(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation, modulation,
                                  kCpuKernels);
}

}  // namespace
}  // namespace localgrad::meta

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("plastic_episode", &localgrad::meta::plastic_episode_cpu);
  m.impl("plastic_episode_backward", &localgrad::meta::plastic_episode_backward_cpu);
}
