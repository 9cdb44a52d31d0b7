// The leaky rate RNN shared by the online learners (RTRL, SnAp, RFLO/e-prop,
// UORO). Torch-free, included by CPU and CUDA kernels alike.
//
//   a_t = W_ih x_t + (W_hh ⊙ mask) h_{t-1} + b,   h_t = (1-α) h_{t-1} + α φ(a_t)
//
// θ is laid out per hidden unit i as a row of C = I + H + 1 columns
// [W_ih[i,:] | W_hh[i,:] | b_i]; the immediate Jacobian of a_t,i with respect
// to that row is v_i = [x_t | mask_i ⊙ h_{t-1} | 1].
#pragma once

#include <cstdint>

#include "activation.h"

namespace localgrad::online_rnn {

// The step's inputs every update reads. Rows are dense (the glue makes them so).
template <typename scalar_t>
struct RowInputs {
  const scalar_t* x;       // (batch, I)
  const scalar_t* h_prev;  // (batch, H)
  const scalar_t* mask;    // (H, H) or null: no mask
  int64_t input;
  int64_t hidden;

  // v[b, i, c] in the accumulation type.
  template <typename acc_t>
  LOCALGRAD_HD acc_t at(int64_t b, int64_t i, int64_t c) const {
    if (c < input) return static_cast<acc_t>(x[b * input + c]);
    const int64_t j = c - input;
    if (j < hidden) {
      const acc_t h = static_cast<acc_t>(h_prev[b * hidden + j]);
      return mask == nullptr ? h : h * static_cast<acc_t>(mask[i * hidden + j]);
    }
    return acc_t(1);
  }
};

// A step's RowInputs in the op's dtype, from its params (any struct with
// x, h_prev, mask, input and hidden: RTRL's, SnAp's, UORO's).
template <typename scalar_t, typename Params>
LOCALGRAD_HD RowInputs<scalar_t> row_inputs(const Params& q) {
  return {static_cast<const scalar_t*>(q.x), static_cast<const scalar_t*>(q.h_prev),
          static_cast<const scalar_t*>(q.mask), q.input, q.hidden};
}

}  // namespace localgrad::online_rnn
