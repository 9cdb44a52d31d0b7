// RTRL influence update (Williams & Zipser 1989) for the leaky RNN
// (online_rnn.h). The glue computes W_hh M_{t-1} by BLAS into `out`; the
// kernel finishes the step in place:
//   out[b,k,(i,c)] = (1-α) M[b,k,(i,c)] + α φ'_k (out[b,k,(i,c)] + δ_ki v[b,i,c])
#pragma once

#include <cstdint>

namespace localgrad::rtrl {

struct StepParams {
  void* out = nullptr;                // (batch, H, H*C), holds W_hh M_{t-1} on entry
  const void* influence = nullptr;    // (batch, H, H*C), M_{t-1}
  const void* x = nullptr;            // (batch, I)
  const void* h_prev = nullptr;       // (batch, H)
  const void* dphi = nullptr;         // (batch, H), φ'(a_t)
  const void* mask = nullptr;         // (H, H) or null
  int64_t batch = 0;
  int64_t hidden = 0;
  int64_t input = 0;
  double alpha = 1.0;
};

}  // namespace localgrad::rtrl
