// Plastic layers of differentiable plasticity (Miconi et al. 2018;
// localgrad/reference/meta.py): the contract between the torch glue
// (meta_glue.cpp) and the kernels of both backends. Torch-free.
//
// One episode of T steps, B episodes side by side, H: (B, N_out, N_in):
//
//   a_t = u_t + W p_t + (α ⊙ H_{t-1}) p_t,   y_t = f(a_t)
//   H_t = (1 - η) H_{t-1} + η y_t p_tᵀ
//
// p_t is x_t (feed-forward) or y_{t-1} (recurrent, y_{-1} = 0). The glue does
// the plain products through ATen (W p_t, and in the backward Wᵀ ga_t, the
// weight gradient); the kernels do the work on H, which eager code would
// spend a (B, N_out, N_in) temporary per product on.
//
// The backward runs t = T-1 .. 0 with G = dL/dH_t and recomputes
// H_{t-1} = (H_t - η y_t p_tᵀ) / (1 - η) in place (or reads a stored trace):
//
//   rows     gy = dL/dy_t + carry + η G p_t,  ga = gy f'(y_t)   (= dL/du_t)
//            dL/dη += Σ_j G_ij (y_i p_j - H_{t-1,ij}),  H <- H_{t-1}
//   inputs   dp_j += Σ_i α_ij H_{t-1,ij} ga_i + η G_ij y_i      (+ Wᵀ ga: glue)
//   weights  dα += Σ_b H_{t-1} ⊙ ga p_tᵀ,  G <- (1 - η) G + α ⊙ ga p_tᵀ
//
// Modulated (a given m: (T, B), in the spirit of Miconi et al. 2019's
// neuromodulation, M(t) gating plasticity): each step and episode has its
// own rate e_tb = η m_tb in place of η; `rate` then holds e_t (B,), and the
// rows kernel writes each row's dL/de share per step, from which the glue
// forms dη = Σ m dL/de and dm = η dL/de.
//
// All arrays are dense (row-major) in the op's dtype, float32 or float64.
#pragma once

#include <cstdint>

namespace localgrad::meta {

// f: the values are localgrad/activations.py's codes.
enum class PlasticActivation : int64_t { Identity = 1, Tanh = 4 };

// What every step's kernels share: the sizes and the plasticity rate eta.
struct StepSizes {
  int64_t batch = 0;
  int64_t n_out = 0;
  int64_t n_in = 0;
  double eta = 0.0;
};

// One forward step, a row (b, i) of H at a time.
struct ForwardStepParams : StepSizes {
  const void* drive = nullptr;  // (B, N_out): u_t + W p_t
  const void* p = nullptr;      // (B, N_in)
  const void* alpha = nullptr;  // (N_out, N_in)
  void* h = nullptr;            // (B, N_out, N_in): H_{t-1} in, H_t out
  void* trace = nullptr;        // (B, N_out, N_in): H_{t-1} written, or null
  void* y = nullptr;            // (B, N_out): y_t written
  const void* rate = nullptr;   // (B,): e_t, or null (every rate is eta)
  PlasticActivation activation = PlasticActivation::Tanh;
};

// Backward, step 1: a row (b, i) at a time.
struct BackwardRowParams : StepSizes {
  const void* grad_y = nullptr;  // (B, N_out): dL/dy_t from outside the layer
  const void* carry = nullptr;   // (B, N_out): dL/dp_{t+1} (recurrent), or null
  const void* y = nullptr;       // (B, N_out): y_t
  const void* p = nullptr;       // (B, N_in): p_t
  const void* grad_h = nullptr;  // (B, N_out, N_in): G = dL/dH_t
  void* h = nullptr;             // H_t in, H_{t-1} out; unused with `trace`
  const void* trace = nullptr;   // stored H_{t-1}, or null (recompute into h)
  void* grad_a = nullptr;        // (B, N_out): ga written
  void* grad_rate = nullptr;     // (B, N_out): each row's share of dL/de_t, written
  const void* rate = nullptr;    // (B,): e_t, or null (every rate is eta)
  PlasticActivation activation = PlasticActivation::Tanh;
};

// Backward, step 2: a column (b, j) at a time (a sum over i).
struct BackwardInputParams : StepSizes {
  const void* alpha = nullptr;   // (N_out, N_in)
  const void* h_prev = nullptr;  // (B, N_out, N_in): H_{t-1}
  const void* grad_h = nullptr;  // (B, N_out, N_in): G = dL/dH_t
  const void* grad_a = nullptr;  // (B, N_out)
  const void* y = nullptr;       // (B, N_out)
  void* grad_p = nullptr;        // (B, N_in): accumulated
  const void* rate = nullptr;    // (B,): e_t, or null
};

// Backward, step 3: a synapse (i, j) at a time (a sum over b).
struct BackwardWeightParams : StepSizes {
  const void* alpha = nullptr;   // (N_out, N_in)
  const void* h_prev = nullptr;  // (B, N_out, N_in)
  const void* grad_a = nullptr;  // (B, N_out)
  const void* p = nullptr;       // (B, N_in)
  void* grad_h = nullptr;        // G = dL/dH_t in, dL/dH_{t-1} out
  void* grad_alpha = nullptr;    // (N_out, N_in): accumulated
  const void* rate = nullptr;    // (B,): e_t, or null
};

}  // namespace localgrad::meta
