"""The counter-based RNG of csrc/counter_rng.h, in NumPy: the number drawn for
element i is a pure function of (seed, counter, i), so kernels can draw random
feedback without storing it and the tests can reproduce every bit.

Three rounds of the SplitMix64 finaliser (Steele, Lea & Flood, "Fast
splittable pseudorandom number generators", OOPSLA 2014), keyed by seed, then
counter, then index; uniform = top 53 bits * 2^-53.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2^64, as in C++
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def bits(seed: int, counter: int, index: np.ndarray) -> np.ndarray:
    """64 random bits per index (uint64)."""
    key = _splitmix64(np.asarray(seed % 2**64, dtype=np.uint64))
    key = _splitmix64(key ^ np.uint64(counter % 2**64))
    return _splitmix64(key ^ index.astype(np.uint64))


def uniform(seed: int, counter: int, numel: int) -> torch.Tensor:
    """Uniform [0, 1) draws for elements 0..numel-1, float64."""
    index = np.arange(numel, dtype=np.uint64)
    return torch.from_numpy((bits(seed, counter, index) >> np.uint64(11)).astype(np.float64) * 2.0**-53)
