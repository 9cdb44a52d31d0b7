// A counter-based random number generator: the number drawn for element i is
// a pure function of (seed, counter, i). Nothing is stored between draws,
// every thread can draw its own element, and the CPU, the GPU and the
// reference (localgrad/reference/counter_rng.py) produce the same bits.
//
// Three rounds of the SplitMix64 finaliser (Steele, Lea & Flood 2014), keyed
// by seed, then counter, then index. Statistically sound for drawing weights;
// not cryptographic.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LOCALGRAD_RNG_HD __host__ __device__ __forceinline__
#else
#define LOCALGRAD_RNG_HD inline
#endif

namespace localgrad::rng {

LOCALGRAD_RNG_HD uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The first two rounds depend on (seed, counter) only: callers that draw many
// elements compute this key once and draw each element with one round.
LOCALGRAD_RNG_HD uint64_t key(uint64_t seed, uint64_t counter) {
  return splitmix64(splitmix64(seed) ^ counter);
}

LOCALGRAD_RNG_HD uint64_t keyed_bits(uint64_t key, uint64_t index) { return splitmix64(key ^ index); }

LOCALGRAD_RNG_HD uint64_t bits(uint64_t seed, uint64_t counter, uint64_t index) {
  return keyed_bits(key(seed, counter), index);
}

LOCALGRAD_RNG_HD double keyed_uniform(uint64_t key, uint64_t index) {
  return static_cast<double>(keyed_bits(key, index) >> 11) * 0x1.0p-53;
}

// Uniform on [0, 1) with 53 random bits; exact in double on every backend, so
// a value derived from it rounds the same way everywhere.
LOCALGRAD_RNG_HD double uniform(uint64_t seed, uint64_t counter, uint64_t index) {
  return keyed_uniform(key(seed, counter), index);
}

}  // namespace localgrad::rng
