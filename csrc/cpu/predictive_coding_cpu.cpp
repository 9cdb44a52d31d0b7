// CPU predictive coding: the shared driver (predictive_coding_glue.cpp) runs
// the products with ATen's BLAS; the two elementwise passes here run over
// rows with at::parallel_for, all layers of a row in one task.
#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../predictive_coding_glue.h"

namespace localgrad::predictive_coding {
namespace {

int64_t grain(int64_t units_per_row) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(units_per_row, 1));
}

template <typename T>
void errors_rows(const ErrorParams& p, int64_t begin, int64_t end) {
  for (int i = 0; i < p.n_layers; ++i) {
    if (!p.active[i]) continue;
    const int64_t n = p.width[i];
    for (int64_t r = begin; r < end; ++r) {
      T* e = static_cast<T*>(p.eps[i]) + r * p.eps_row_stride[i];
      if (i < p.n_layers - 1) {
        const T* a = static_cast<const T*>(p.state[i]) + r * p.state_row_stride[i];
        if (p.mu[i] != nullptr) {
          const T* mu = static_cast<const T*>(p.mu[i]) + r * n;
#pragma omp simd
          for (int64_t c = 0; c < n; ++c) e[c] = a[c] - mu[c];
        } else {
#pragma omp simd
          for (int64_t c = 0; c < n; ++c) e[c] = a[c] - e[c];
        }
        continue;
      }
      const T* y = static_cast<const T*>(p.target) + r * p.target_row_stride;
      const T pi = static_cast<T>(p.output_precision);
      if (p.loss == Loss::Mse) {
#pragma omp simd
        for (int64_t c = 0; c < n; ++c) e[c] = pi * (y[c] - e[c]);
        continue;
      }
      const T m = *std::max_element(e, e + n);
      T sum = 0;
      for (int64_t c = 0; c < n; ++c) sum += std::exp(e[c] - m);
      for (int64_t c = 0; c < n; ++c) e[c] = pi * (y[c] - std::exp(e[c] - m) / sum);
    }
  }
}

template <typename T, Activation kAct>
void state_row(const StateParams& p, int k, int64_t r) {
  const int64_t n = p.width[k];
  T* a = static_cast<T*>(p.state[k]) + r * p.state_row_stride[k];
  T* e = static_cast<T*>(p.eps[k]) + r * p.eps_row_stride[k];
  const T* bk = static_cast<const T*>(p.back[k]) + r * n;
  const T* d = p.dfx[k] == nullptr ? nullptr : static_cast<const T*>(p.dfx[k]) + r * n;
  T* f = p.fx[k] == nullptr ? nullptr : static_cast<T*>(p.fx[k]) + r * n;
  const T gamma = static_cast<T>(p.gamma), slope = static_cast<T>(p.slope[k]);
  for (int64_t c = 0; c < n; ++c) {
    const T old = a[c];
    const T deriv = d != nullptr ? d[c] : activate_derivative<kAct>(old, slope);
    const T now = old + gamma * (-e[c] + deriv * bk[c]);
    a[c] = now;
    if (p.refresh_error) e[c] += now - old;
    if (f != nullptr) f[c] = activate<kAct>(now, slope);
  }
}

template <typename T>
void states_rows(const StateParams& p, int64_t begin, int64_t end) {
  for (int k = 0; k < p.n_hidden; ++k) {
    if (!p.active[k]) continue;
    LOCALGRAD_DISPATCH_PC_ACTIVATION(p.kind[k], [&] {
      for (int64_t r = begin; r < end; ++r) state_row<T, kAct>(p, k, r);
    });
  }
}

void errors_cpu(const ErrorParams& p, at::ScalarType dtype) {
  int64_t units = 0;
  for (int i = 0; i < p.n_layers; ++i) units += p.active[i] ? p.width[i] : 0;
  AT_DISPATCH_FLOATING_TYPES(dtype, "predictive_coding_errors", [&] {
    at::parallel_for(0, p.batch, grain(units),
                     [&](int64_t b, int64_t e) { errors_rows<scalar_t>(p, b, e); });
  });
}

void states_cpu(const StateParams& p, at::ScalarType dtype) {
  int64_t units = 0;
  for (int k = 0; k < p.n_hidden; ++k) units += p.active[k] ? p.width[k] : 0;
  AT_DISPATCH_FLOATING_TYPES(dtype, "predictive_coding_states", [&] {
    at::parallel_for(0, p.batch, grain(units),
                     [&](int64_t b, int64_t e) { states_rows<scalar_t>(p, b, e); });
  });
}

void infer_cpu(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
               at::TensorList states, at::TensorList errors, const at::Tensor& target,
               at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant, int64_t loss,
                double output_precision,
               int64_t steps, double gamma, double lr) {
  const at::ScalarType dtype = x.scalar_type();
  Elementwise backend;
  backend.errors = [dtype](const ErrorParams& p) { errors_cpu(p, dtype); };
  backend.states = [dtype](const StateParams& p) { states_cpu(p, dtype); };
  infer_impl(x, weights, biases, states, errors, target, kinds, slopes, variant, loss, output_precision, steps, gamma,
             lr, backend);
}

void update_cpu(const at::Tensor& x, at::TensorList states, at::TensorList errors,
                at::IntArrayRef kinds, at::ArrayRef<double> slopes, double scale,
                at::TensorList weight_grads, at::TensorList bias_grads) {
  update_impl(x, states, errors, kinds, slopes, scale, weight_grads, bias_grads);
}

}  // namespace
}  // namespace localgrad::predictive_coding

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("predictive_coding_infer", &localgrad::predictive_coding::infer_cpu);
  m.impl("predictive_coding_update", &localgrad::predictive_coding::update_cpu);
}
