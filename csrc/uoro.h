// One UORO step (Tallec & Ollivier 2017, algorithm 1) per batch element, for
// the leaky RNN. The glue computes W_hh s̃ by BLAS; the kernel does the rest:
//   J s̃ = (1-α) s̃ + α φ' ⊙ (W_hh s̃);   δθ[i,c] = α ν_i φ'_i v[i,c]
//   ρ0 = √((‖θ̃‖+ε)/(‖J s̃‖+ε)),  ρ1 = √((‖δθ‖+ε)/(‖ν‖+ε))
//   s̃ ← ρ0 J s̃ + ρ1 ν,  θ̃ ← θ̃/ρ0 + δθ/ρ1
#pragma once

#include <cstdint>

namespace localgrad::uoro {

struct StepParams {
  void* s_out = nullptr;              // (batch, H)
  void* theta_out = nullptr;          // (batch, H, C)
  const void* s_tilde = nullptr;      // (batch, H)
  const void* theta_tilde = nullptr;  // (batch, H, C)
  const void* ws = nullptr;           // (batch, H), W_hh s̃
  const void* nu = nullptr;           // (batch, H), random signs
  const void* x = nullptr;            // (batch, I)
  const void* h_prev = nullptr;       // (batch, H)
  const void* dphi = nullptr;         // (batch, H)
  const void* mask = nullptr;         // (H, H) or null
  void* partials = nullptr;           // CUDA only: (batch, tiles, 4) squared-norm shares
  int64_t tiles = 1;                  // CUDA only: blocks per sample
  int64_t batch = 0;
  int64_t hidden = 0;
  int64_t input = 0;
  double alpha = 1.0;
  double eps = 1e-7;
};

}  // namespace localgrad::uoro
