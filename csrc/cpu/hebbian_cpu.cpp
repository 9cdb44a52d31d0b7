// CPU kernels of hebbian_update: the row activation, the per-unit combine and
// the scaled store, each one parallel pass (at::parallel_for) between the
// ATen GEMMs that hebbian_glue.cpp runs. Accumulation type acc_t is double
// for float64 tensors and float otherwise.
#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "../checks.h"
#include "../hebbian_glue.h"

namespace localgrad::hebbian {
namespace {

template <typename acc_t>
void power_cpu_typed(const PowerParams& pp) {
  const auto* w = static_cast<const acc_t*>(pp.weight);
  auto* out = static_cast<acc_t*>(pp.out);
  const acc_t e = static_cast<acc_t>(pp.p - 1);
  at::parallel_for(0, pp.n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const acc_t v = w[i];
      const acc_t m = std::pow(std::abs(v), e);
      out[i] = v > 0 ? m : (v < 0 ? -m : acc_t(0));
    }
  });
}

// Index of the largest u_j among those ranked after (prev_val, prev_idx) in
// the descending, index-stable order; -1 when none is left.
template <typename acc_t>
int64_t next_ranked(const acc_t* u, int64_t n, acc_t prev_val, int64_t prev_idx) {
  int64_t best = -1;
  acc_t best_val = acc_t(0);
  for (int64_t j = 0; j < n; ++j) {
    const acc_t v = u[j];
    const bool eligible = prev_idx < 0 || v < prev_val || (v == prev_val && j > prev_idx);
    if (eligible && (best < 0 || v > best_val)) {
      best = j;
      best_val = v;
    }
  }
  return best;
}

template <typename acc_t>
void activate_row(const ActivateParams& ap, const acc_t* u, acc_t* y) {
  const int64_t n = ap.n_out;
  switch (ap.rule) {
    case Rule::BCM: {
      const auto* theta = static_cast<const acc_t*>(ap.theta);
      for (int64_t j = 0; j < n; ++j) y[j] = u[j] * (u[j] - theta[j]);
      break;
    }
    case Rule::SoftHebb: {
      const acc_t inv_t = static_cast<acc_t>(ap.inv_temperature);
      int64_t winner = 0;
      for (int64_t j = 1; j < n; ++j)
        if (u[j] > u[winner]) winner = j;
      const acc_t zmax = u[winner] * inv_t;
      acc_t sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        y[j] = std::exp(u[j] * inv_t - zmax);
        sum += y[j];
      }
      const acc_t inv_sum = acc_t(1) / sum;
      for (int64_t j = 0; j < n; ++j) y[j] *= j == winner ? inv_sum : -inv_sum;
      break;
    }
    case Rule::Krotov: {
      std::fill(y, y + n, acc_t(0));
      int64_t idx = next_ranked(u, n, acc_t(0), -1);
      const int64_t winner = idx;
      for (int64_t r = 2; r <= ap.rank && idx >= 0; ++r) {
        idx = next_ranked(u, n, u[idx], idx);
        if (r == ap.rank && idx >= 0) y[idx] = static_cast<acc_t>(-ap.anti);
      }
      if (winner >= 0) y[winner] = acc_t(1);
      break;
    }
    default:
      std::copy(u, u + n, y);
  }
}

template <typename acc_t>
void activate_cpu_typed(const ActivateParams& ap) {
  const auto* u = static_cast<const acc_t*>(ap.u);
  auto* y = static_cast<acc_t*>(ap.y);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(ap.n_out * ap.rank, 1));
  at::parallel_for(0, ap.batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      activate_row(ap, u + b * ap.u_row_stride, y + b * ap.y_row_stride);
  });
}

template <typename acc_t>
void combine_cpu_typed(const CombineParams& cp) {
  const auto* hebb = static_cast<const acc_t*>(cp.hebb);
  const auto* w = static_cast<const acc_t*>(cp.weight);
  const auto* weff = static_cast<const acc_t*>(cp.weight_eff);
  const auto* corr = static_cast<const acc_t*>(cp.correction);
  auto* delta = static_cast<acc_t*>(cp.delta);
  auto* row_peak = static_cast<acc_t*>(cp.row_peak);
  auto* rate = static_cast<acc_t*>(cp.rate);
  const acc_t inv_batch = static_cast<acc_t>(cp.inv_batch);
  const acc_t p = static_cast<acc_t>(cp.p);
  const bool euclid = cp.p == 2.0;
  const bool adaptive = cp.lr_power != 0.0;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(cp.n_in, 1));
  at::parallel_for(0, cp.n_out, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const acc_t* hk = hebb + k * cp.row_stride;
      const acc_t* wk = w + k * cp.row_stride;
      const acc_t* ek = weff + k * cp.row_stride;
      acc_t* dk = delta + k * cp.row_stride;
      acc_t c = 0, norm = 0;
      for (int64_t i = 0; i < cp.n_in; ++i) c += hk[i] * ek[i];
      if (adaptive) {
        for (int64_t i = 0; i < cp.n_in; ++i)
          norm += euclid ? wk[i] * wk[i] : std::pow(std::abs(wk[i]), p);
      }
      acc_t peak = 0;
      if (cp.rule == Rule::Sanger) {
        const acc_t* ck = corr + k * cp.row_stride;
        for (int64_t i = 0; i < cp.n_in; ++i) dk[i] = (hk[i] - ck[i]) * inv_batch;
      } else if (cp.rule == Rule::BCM) {
        for (int64_t i = 0; i < cp.n_in; ++i) dk[i] = hk[i] * inv_batch;
      } else {
        for (int64_t i = 0; i < cp.n_in; ++i) dk[i] = (hk[i] - c * wk[i]) * inv_batch;
      }
      for (int64_t i = 0; i < cp.n_in; ++i) peak = std::max(peak, std::abs(dk[i]));
      row_peak[k] = peak;
      if (adaptive) {
        const acc_t r = euclid ? std::sqrt(norm) : std::pow(norm, acc_t(1) / p);
        rate[k] = static_cast<acc_t>(cp.lr) *
                  std::pow(std::abs(r - acc_t(1)) + static_cast<acc_t>(kAdaptiveEps),
                           static_cast<acc_t>(cp.lr_power));
      } else {
        rate[k] = static_cast<acc_t>(cp.lr);  // x^0 = 1: no norm needed
      }
    }
  });
}

template <typename acc_t, typename out_t>
void finalize_cpu_typed(const FinalizeParams& fp) {
  const auto* delta = static_cast<const acc_t*>(fp.delta);
  const auto* row_peak = static_cast<const acc_t*>(fp.row_peak);
  const auto* rate = static_cast<const acc_t*>(fp.rate);
  auto* grad = static_cast<out_t*>(fp.grad);
  acc_t scale = 1;
  if (fp.normalize) {
    const acc_t peak = *std::max_element(row_peak, row_peak + fp.n_out);
    scale = peak > 0 ? acc_t(1) / peak : acc_t(0);
  }
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(fp.n_in, 1));
  at::parallel_for(0, fp.n_out, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const acc_t s = -rate[k] * scale;
      const acc_t* dk = delta + k * fp.delta_row_stride;
      out_t* gk = grad + k * fp.grad_row_stride;
      for (int64_t i = 0; i < fp.n_in; ++i) gk[i] = static_cast<out_t>(dk[i] * s);
    }
  });
}

void power_cpu(const PowerParams& pp, bool is_double) {
  is_double ? power_cpu_typed<double>(pp) : power_cpu_typed<float>(pp);
}
void activate_cpu(const ActivateParams& ap, bool is_double) {
  is_double ? activate_cpu_typed<double>(ap) : activate_cpu_typed<float>(ap);
}
void combine_cpu(const CombineParams& cp, bool is_double) {
  is_double ? combine_cpu_typed<double>(cp) : combine_cpu_typed<float>(cp);
}
void finalize_cpu(const FinalizeParams& fp, bool is_double, ScalarKind out) {
  if (is_double) return finalize_cpu_typed<double, double>(fp);
  switch (out) {
    case ScalarKind::Float16: return finalize_cpu_typed<float, c10::Half>(fp);
    case ScalarKind::BFloat16: return finalize_cpu_typed<float, c10::BFloat16>(fp);
    default: return finalize_cpu_typed<float, float>(fp);
  }
}

constexpr Kernels kCpuKernels{&power_cpu, &activate_cpu, &combine_cpu, &finalize_cpu};

void hebbian_update_cpu(const at::Tensor& x, const at::Tensor& weight,
                        const std::optional<at::Tensor>& theta, int64_t rule,
                        double temperature, double p, int64_t rank, double anti, double lr,
                        double lr_power, bool normalize, const at::Tensor& u,
                        const at::Tensor& grad) {
  hebbian_update(x, weight, theta, rule, temperature, p, rank, anti, lr, lr_power, normalize,
                 u, grad, kCpuKernels);
}

}  // namespace
}  // namespace localgrad::hebbian

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("hebbian_update", &localgrad::hebbian::hebbian_update_cpu);
}
