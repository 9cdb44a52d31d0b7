// CPU Forward-Forward step: the shared driver (forward_forward_glue.cpp) runs
// the products with ATen's BLAS; the two row passes here run over rows (or
// pairs of rows) with at::parallel_for, each row summed in index order so
// the result does not depend on the thread count.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../forward_forward_glue.h"

namespace localgrad::forward_forward {
namespace {

int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

void normalize_cpu(const NormalizeParams& p, at::ScalarType dtype) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "forward_forward_normalize", [&] {
    const int64_t n = p.width;
    const auto eps = static_cast<scalar_t>(p.eps);
    at::parallel_for(0, 2 * p.batch, grain(n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const auto* in = static_cast<const scalar_t*>(r < p.batch ? p.pos : p.neg) + (r % p.batch) * n;
        auto* out = static_cast<scalar_t*>(p.out) + r * n;
        scalar_t q = 0;
        for (int64_t j = 0; j < n; ++j) q += in[j] * in[j];
        const scalar_t inv = inverse_norm(q, n, p.mode, eps);
        for (int64_t j = 0; j < n; ++j) out[j] = in[j] * inv;
      }
    });
  });
}

template <typename T, Activation kAct>
T row_squares(const T* z, int64_t m, T slope) {
  T q = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T a = predictive_coding::activate<kAct>(z[j], slope);
    q += a * a;
  }
  return q;
}

template <typename T, Activation kAct>
void finish_row(T* z, T* next, int64_t m, T slope, T scale, T inv) {
  for (int64_t j = 0; j < m; ++j) {
    const T a = predictive_coding::activate<kAct>(z[j], slope);
    if (next != nullptr) next[j] = a * inv;
    z[j] = scale * a * predictive_coding::activate_derivative<kAct>(z[j], slope);
  }
}

template <typename T, Activation kAct>
void layer_pairs(const LayerParams& p, int64_t begin, int64_t end) {
  const int64_t m = p.width, B = p.batch;
  const T slope = static_cast<T>(p.slope), eps = static_cast<T>(p.eps);
  for (int64_t i = begin; i < end; ++i) {
    T* zp = static_cast<T*>(p.z) + i * m;
    T* zn = static_cast<T*>(p.z) + (B + i) * m;
    const T qp = row_squares<T, kAct>(zp, m, slope), qn = row_squares<T, kAct>(zn, m, slope);
    const PairTerms<T> t = pair_terms(qp, qn, p);
    T* next = static_cast<T*>(p.next);
    finish_row<T, kAct>(zp, next == nullptr ? nullptr : next + i * m, m, slope, t.scale_pos,
                        inverse_norm(qp, m, p.mode, eps));
    finish_row<T, kAct>(zn, next == nullptr ? nullptr : next + (B + i) * m, m, slope, t.scale_neg,
                        inverse_norm(qn, m, p.mode, eps));
    static_cast<T*>(p.good)[i] = t.good_pos;
    static_cast<T*>(p.good)[B + i] = t.good_neg;
    static_cast<T*>(p.pair_loss)[i] = t.loss;
  }
}

void layer_cpu(const LayerParams& p, at::ScalarType dtype) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "forward_forward_layer", [&] {
    LOCALGRAD_DISPATCH_PC_ACTIVATION(p.kind, [&] {
      at::parallel_for(0, p.batch, std::max<int64_t>(1, grain(p.width) / 2),
                       [&](int64_t b, int64_t e) { layer_pairs<scalar_t, kAct>(p, b, e); });
    });
  });
}

void step_cpu(const at::Tensor& x_pos, const at::Tensor& x_neg, at::TensorList weights, at::TensorList biases,
              at::IntArrayRef kinds, at::ArrayRef<double> slopes, at::ArrayRef<double> thresholds, int64_t goodness,
              int64_t loss, int64_t normalize, double alpha, double eps, at::TensorList grad_weights,
              at::TensorList grad_biases, const at::Tensor& goodness_out, const at::Tensor& losses) {
  Kernels backend;
  backend.normalize = normalize_cpu;
  backend.layer = layer_cpu;
  step_impl(x_pos, x_neg, weights, biases, kinds, slopes, thresholds, goodness, loss, normalize, alpha, eps,
            grad_weights, grad_biases, goodness_out, losses, backend);
}

}  // namespace
}  // namespace localgrad::forward_forward

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("forward_forward_step", &localgrad::forward_forward::step_cpu);
}
