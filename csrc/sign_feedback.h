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
  uint64_t key = 0;  // rng::key(seed, counter), computed once per call
  double scale = 1.0;
};

// sign(w) in {-1, 0, 1}, and 0 for NaN, as torch.sign gives on every device
// (and so the reference): a NaN weight gets no feedback in every mode, on
// every backend. Branch-free so that loops over it vectorise.
template <typename acc_t>
LOCALGRAD_RNG_HD acc_t sign_of(acc_t w) {
  return static_cast<acc_t>((w > acc_t(0)) - (w < acc_t(0)));
}

// uSF element: sign(w) * scale. `scale` is already rounded to acc_t; with a
// sign in {-1, 0, 1} that gives the same bits as the double product rounded
// once (the reference's order).
template <typename acc_t>
LOCALGRAD_RNG_HD acc_t uniform_sign(acc_t w, acc_t scale) {
  return sign_of(w) * scale;
}

// brSF/frSF element: sign(w) * (scale * u_i), in double so every backend
// rounds identically.
template <typename acc_t>
LOCALGRAD_RNG_HD double random_sign(acc_t w, const Params& p, int64_t i) {
  const double magnitude = p.scale * rng::keyed_uniform(p.key, static_cast<uint64_t>(i));
  return static_cast<double>(sign_of(w)) * magnitude;
}

}  // namespace localgrad::sign_feedback
