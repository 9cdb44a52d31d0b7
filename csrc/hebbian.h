// Hebbian learning without feedback (localgrad/reference/hebbian.py): the
// contract between the torch glue and the kernels of both backends. Torch-free.
//
// One step of every rule has the same shape,
//
//   U  = X W~^T                  (W~ = W, or sign(W)|W|^(p-1) for Krotov)
//   Y  = f_rule(U)               row-wise: identity, BCM's y(y - theta),
//                                SoftHebb's signed softmax, Krotov's ranks
//   H  = Y^T X                   (GEMM, ATen)
//   dW = (H - c W) / B,  c_k = <H_k, W~_k> = sum_b Y_bk U_bk
//                                (Sanger: (H - LT[Y^T Y] W) / B; BCM: H / B)
//   grad = -rate_k dW / (max |dW| if normalize),
//   rate_k = lr (| |w_k|_p - 1 | + 1e-10)^lr_power
//
// The products are ATen GEMMs; the kernels are the elementwise and reduction
// work between them: the row activation (`activate`), the per-unit
// correction, norm and peak (`combine`), and the scaled store (`finalize`).
#pragma once

#include <cstdint>

namespace localgrad::hebbian {

enum class Rule : int { Oja = 0, Sanger = 1, BCM = 2, SoftHebb = 3, Krotov = 4 };
constexpr int kNumRules = 5;

constexpr double kAdaptiveEps = 1e-10;

// W~ = sign(W) |W|^(p-1), elementwise over n dense elements (Krotov's
// currents are <W~_k, x>).
struct PowerParams {
  const void* weight = nullptr;
  void* out = nullptr;
  int64_t n = 0;
  double p = 3.0;
};

// Y = f_rule(U), one row (sample) at a time. u and y are (batch, n_out) in the
// accumulation type with dense rows; u is the caller's output tensor's copy in
// acc type. theta: (n_out,) acc type, BCM only.
struct ActivateParams {
  const void* u = nullptr;
  void* y = nullptr;
  const void* theta = nullptr;
  int64_t batch = 0;
  int64_t n_out = 0;
  int64_t u_row_stride = 0;
  int64_t y_row_stride = 0;
  Rule rule = Rule::Oja;
  double inv_temperature = 1.0;  // SoftHebb
  int64_t rank = 2;              // Krotov: the anti-Hebbian unit's rank (1-based)
  double anti = 0.4;             // Krotov: its strength delta
};

// Per unit k (a row of every matrix, all in acc type with dense rows):
//   delta_k = (hebb_k - c_k w_k) / B  (or (hebb_k - corr_k) / B for Sanger,
//   hebb_k / B for BCM), row_peak_k = max_i |delta_ki|, rate_k as above.
struct CombineParams {
  const void* hebb = nullptr;        // H (n_out, n_in)
  const void* weight = nullptr;      // W (n_out, n_in)
  const void* weight_eff = nullptr;  // W~ (n_out, n_in), Krotov; else = weight
  const void* correction = nullptr;  // LT[Y^T Y] W (n_out, n_in), Sanger only
  void* delta = nullptr;             // dW (n_out, n_in), written
  void* row_peak = nullptr;          // (n_out,), written
  void* rate = nullptr;              // (n_out,), written
  int64_t n_out = 0;
  int64_t n_in = 0;
  int64_t row_stride = 0;            // shared by the five matrices (all dense)
  Rule rule = Rule::Oja;
  double inv_batch = 0.0;
  double lr = 1.0;
  double lr_power = 0.0;
  double p = 2.0;                    // the norm of rate_k (Krotov's p, else 2)
};

// grad_k = -rate_k delta_k * scale, scale = 1 / max_k row_peak_k when
// normalize (0 when that peak is 0), else 1. grad is in the weight's dtype.
struct FinalizeParams {
  const void* delta = nullptr;
  const void* row_peak = nullptr;
  const void* rate = nullptr;
  void* grad = nullptr;
  int64_t n_out = 0;
  int64_t n_in = 0;
  int64_t delta_row_stride = 0;
  int64_t grad_row_stride = 0;
  bool normalize = false;
};

}  // namespace localgrad::hebbian
