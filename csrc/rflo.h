// RFLO (Murray 2019) / rate e-prop (Bellec 2020) eligibility traces and the
// weight-update accumulation over a chunk of T steps, in one call:
//   P_t[b,i,c] = (1-α) P_{t-1}[b,i,c] + α φ'_t[b,i] v_t[b,i,c]
//   grad[i,c]  = Σ_t Σ_b L_t[b,i] P_t[b,i,c]
// Each (i, c) is independent: a worker keeps P in a register across steps.
#pragma once

#include <cstdint>

namespace localgrad::rflo {

struct ChunkParams {
  void* trace_out = nullptr;        // (batch, H, C)
  void* grad = nullptr;             // (H, C)
  const void* trace = nullptr;      // (batch, H, C)
  const void* xs = nullptr;         // (T, batch, I)
  const void* h_prevs = nullptr;    // (T, batch, H)
  const void* dphis = nullptr;      // (T, batch, H)
  const void* signals = nullptr;    // (T, batch, H)
  const void* mask = nullptr;       // (H, H) or null
  int64_t steps = 0;
  int64_t batch = 0;
  int64_t hidden = 0;
  int64_t input = 0;
  double alpha = 1.0;
};

}  // namespace localgrad::rflo
