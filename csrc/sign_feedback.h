// Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018):
// the backward pass of a layer uses B instead of its weight W, with
//
//   uSF         B = scale * sign(W)
//   brSF, frSF  B = |R| * sign(W),  R ~ U(-scale, scale) i.i.d.,
//
// R drawn element by element from the counter-based RNG (counter_rng.h) keyed
// by (seed, counter): brSF advances the counter at every update, frSF keeps
// it fixed, and neither stores R. Torch-free contract shared by both backends.
#pragma once

#include <cstdint>

#include "counter_rng.h"

namespace localgrad::sign_feedback {

struct Params {
  const void* weight = nullptr;  // contiguous, numel elements
  void* out = nullptr;           // contiguous, numel elements
  int64_t numel = 0;
  uint64_t seed = 0;
  uint64_t counter = 0;
  double scale = 1.0;
};

// One element of B, computed in double so every backend rounds identically.
template <bool kRandomMagnitude, typename acc_t>
LOCALGRAD_RNG_HD double value(acc_t w, const Params& p, int64_t i) {
  if (w != w) return w;  // NaN stays NaN, as torch.sign does
  const double sign = w > acc_t(0) ? 1.0 : (w < acc_t(0) ? -1.0 : 0.0);
  double magnitude = p.scale;
  if constexpr (kRandomMagnitude) {
    magnitude *= rng::uniform(p.seed, p.counter, static_cast<uint64_t>(i));
  }
  return sign * magnitude;
}

}  // namespace localgrad::sign_feedback
