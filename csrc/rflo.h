// RFLO (Murray 2019) / rate e-prop (Bellec 2020) eligibility traces and the
// weight-update accumulation over a chunk of T steps, in one call:
//   P_t[b,i,c] = (1-α) P_{t-1}[b,i,c] + α φ'_t[b,i] v_t[b,i,c]
//   grad[i,c]  = Σ_t Σ_b L_t[b,i] P_t[b,i,c]
// Each (i, c) is independent: a worker keeps P in a register across steps.
#pragma once

#include <cstdint>

#include "activation.h"  // LOCALGRAD_HD

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

// The chunk's inputs in the op's dtype, as both backends' kernels read them.
template <typename scalar_t>
struct ChunkInputs {
  const scalar_t *trace, *xs, *h_prevs, *dphis, *signals, *mask;

  LOCALGRAD_HD explicit ChunkInputs(const ChunkParams& q)
      : trace(static_cast<const scalar_t*>(q.trace)),
        xs(static_cast<const scalar_t*>(q.xs)),
        h_prevs(static_cast<const scalar_t*>(q.h_prevs)),
        dphis(static_cast<const scalar_t*>(q.dphis)),
        signals(static_cast<const scalar_t*>(q.signals)),
        mask(static_cast<const scalar_t*>(q.mask)) {}
};

}  // namespace localgrad::rflo
