// Forward-Forward (Hinton 2022; localgrad/reference/forward_forward.py): the
// contract between the shared driver (forward_forward_glue.cpp), which runs
// every product with ATen, and each backend's two row kernels. Torch-free.
//
// Rows 0..B-1 are the positive pass, rows B..2B-1 the negative pass; row i
// and row B + i are one pair (the symmetric loss couples them).
//   normalize: out[r] = n(in[r])   (the data rows, before layer 0)
//   layer:     from z = n(h) W^T + b (2B, m), in place, per pair i:
//              a = f(z), q = sum_j a_j^2, s = q (sumsq, neg_sumsq) or q / m,
//              u = sigma (s - theta), c = dL/du (the pair's loss slopes),
//              z <- delta = (c / B) sigma ds/da f'(z),
//              next[r] = n(a) (skipped for the last layer), good[r] = sigma s,
//              pair_loss[i] = the pair's loss (before the mean).
#pragma once

#include <cstdint>

#include "activation.h"
#include "predictive_coding.h"  // activate, activate_derivative

#if defined(__CUDACC__)
#define LOCALGRAD_FF_SQRT(x) sqrt(x)
#define LOCALGRAD_FF_LOG1P(x) log1p(x)
#define LOCALGRAD_FF_EXP(x) exp(x)
#else
#include <cmath>
#define LOCALGRAD_FF_SQRT(x) std::sqrt(x)
#define LOCALGRAD_FF_LOG1P(x) std::log1p(x)
#define LOCALGRAD_FF_EXP(x) std::exp(x)
#endif

namespace localgrad::forward_forward {

// The op's codes (localgrad/ops/forward_forward.py); append, never renumber.
enum class Goodness : int64_t { SumSq = 0, MeanSq = 1, NegSumSq = 2 };
enum class Loss : int64_t { Threshold = 0, Symmetric = 1 };
enum class Normalize : int64_t { L2 = 0, Rms = 1, None = 2 };
constexpr int64_t kNumGoodness = 3, kNumLosses = 2, kNumNormalize = 3;

struct NormalizeParams {
  const void* pos = nullptr;  // (batch, n) dense: rows 0..B-1
  const void* neg = nullptr;  // (batch, n) dense: rows B..2B-1
  void* out = nullptr;        // (2 batch, n) dense
  int64_t batch = 0, width = 0;
  Normalize mode = Normalize::L2;
  double eps = 0.0;
};

struct LayerParams {
  void* z = nullptr;          // (2 batch, m) dense: pre-activations in, delta out
  void* next = nullptr;       // (2 batch, m) dense, or null (last layer)
  void* good = nullptr;       // (2 batch,) dense
  void* pair_loss = nullptr;  // (batch,) dense
  int64_t batch = 0, width = 0;
  Activation kind = Activation::Identity;
  double slope = 0.0, threshold = 0.0, alpha = 1.0, eps = 0.0;
  Goodness goodness = Goodness::SumSq;
  Loss loss = Loss::Threshold;
  Normalize mode = Normalize::L2;
};

template <typename T>
LOCALGRAD_HD T softplus(T x) {
  // log(1 + e^x) without overflow for large x.
  return x > T(0) ? x + LOCALGRAD_FF_LOG1P(LOCALGRAD_FF_EXP(-x)) : LOCALGRAD_FF_LOG1P(LOCALGRAD_FF_EXP(x));
}

template <typename T>
LOCALGRAD_HD T logistic(T x) {
  return T(1) / (T(1) + LOCALGRAD_FF_EXP(-x));
}

// 1 / the divisor of n(h), from the row's sum of squares q over n entries.
template <typename T>
LOCALGRAD_HD T inverse_norm(T q, int64_t n, Normalize mode, T eps) {
  if (mode == Normalize::L2) return T(1) / (LOCALGRAD_FF_SQRT(q) + eps);
  if (mode == Normalize::Rms) return T(1) / (LOCALGRAD_FF_SQRT(q / static_cast<T>(n)) + eps);
  return T(1);
}

// What a pair's two sums of squares decide: the goodness of each row, the
// scale of delta = scale * a * f'(z) for each row, and the pair's loss.
template <typename T>
struct PairTerms {
  T good_pos, good_neg, scale_pos, scale_neg, loss;
};

template <typename T>
LOCALGRAD_HD PairTerms<T> pair_terms(T q_pos, T q_neg, const LayerParams& p) {
  const T m = static_cast<T>(p.width);
  const T sign = p.goodness == Goodness::NegSumSq ? T(-1) : T(1);
  const T per = p.goodness == Goodness::MeanSq ? T(1) / m : T(1);  // s = per * q
  const T theta = static_cast<T>(p.threshold), alpha = static_cast<T>(p.alpha);
  const T u_pos = sign * (per * q_pos - theta), u_neg = sign * (per * q_neg - theta);
  T c_pos, c_neg, loss;
  if (p.loss == Loss::Threshold) {
    c_pos = -logistic(-u_pos);
    c_neg = logistic(u_neg);
    loss = softplus(-u_pos) + softplus(u_neg);
  } else {
    const T d = -alpha * (u_pos - u_neg);
    const T q = logistic(d);
    c_pos = -alpha * q;
    c_neg = alpha * q;
    loss = softplus(d);
  }
  // ds/da = 2 per a; du/ds = sign; the batch mean's 1 / B.
  const T common = T(2) * per * sign / static_cast<T>(p.batch);
  return {sign * per * q_pos, sign * per * q_neg, common * c_pos, common * c_neg, loss};
}

}  // namespace localgrad::forward_forward
