// CPU Equilibrium Propagation. Relaxation: each half-step computes the
// pre-activations of the layers it updates with BLAS products (the input drive
// W_0 x + b_0 once per call), then one vectorized pass over rows applies sigma
// and the nudge, writes the live rows and records how far each row moved.
// Nets with small inner weights relax in row tiles, one thread per tile.
// The update is device-independent ATen (eqprop_glue.cpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../eqprop_glue.h"

namespace localgrad::eqprop {
namespace {

// s <- sigma(u) over one row; returns the largest |change| (and `moved`).
// This pass touches every unit every step, next to GEMMs that are small for
// the narrow layers of an EqProp net, so it must vectorize: the max reduction
// only does with an explicit simd reduction.
// s <- sigma(u) when nothing reads the movement (tol = 0): one read fewer.
template <Sigma kSigma, typename scalar_t>
void set_row(scalar_t* __restrict s, const scalar_t* __restrict u, int64_t width) {
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) s[c] = apply_sigma<kSigma>(u[c]);
}

// A change that is NaN counts as infinite: the row never converges, as in the
// reference (NaN < tol is false), and a max keeps it (a NaN would be dropped).
template <typename scalar_t>
inline scalar_t change(scalar_t v, scalar_t old) {
  const scalar_t d = std::abs(v - old);
  return d != d ? std::numeric_limits<scalar_t>::infinity() : d;
}

template <Sigma kSigma, typename scalar_t>
scalar_t update_row(scalar_t* __restrict s, const scalar_t* __restrict u, int64_t width,
                    scalar_t moved) {
#pragma omp simd reduction(max : moved)
  for (int64_t c = 0; c < width; ++c) {
    const scalar_t v = apply_sigma<kSigma>(u[c]);
    const scalar_t d = change(v, s[c]);
    moved = d > moved ? d : moved;
    s[c] = v;
  }
  return moved;
}

template <typename scalar_t, Sigma kSigma, Nudge kNudge>
void apply_rows(const std::vector<int>& group, int n_layers, const std::vector<at::Tensor>& pre,
                at::TensorList states, const at::Tensor& target, double beta,
                const std::vector<uint8_t>& active, std::vector<scalar_t>& delta, bool track,
                int64_t row_begin, int64_t row_end) {
  const scalar_t b = static_cast<scalar_t>(beta);
  for (int j : group) {
    const int64_t width = states[j].size(1);
    const int64_t stride = states[j].stride(0);
    scalar_t* state = states[j].data_ptr<scalar_t>();
    const scalar_t* p = pre[j].const_data_ptr<scalar_t>();
    const bool nudged_output =
        j == n_layers - 1 && (kNudge == Nudge::Mse || kNudge == Nudge::CrossEntropy);
    for (int64_t r = row_begin; r < row_end; ++r) {
      if (!active[r]) continue;
      scalar_t* s = state + r * stride;
      const scalar_t* u = p + r * width;
      scalar_t moved = delta[r];
      if (nudged_output) {
        const scalar_t* y = target.const_data_ptr<scalar_t>() + r * target.stride(0);
        // Softmax of the old output row, taken before any unit is overwritten.
        scalar_t shift = 0, log_norm = 0;
        if constexpr (kNudge == Nudge::CrossEntropy) {
          shift = *std::max_element(s, s + width);
          scalar_t sum = 0;
          for (int64_t c = 0; c < width; ++c) sum += std::exp(s[c] - shift);
          log_norm = std::log(sum);
        }
        for (int64_t c = 0; c < width; ++c) {
          scalar_t grad;
          if constexpr (kNudge == Nudge::CrossEntropy) {
            grad = std::exp(s[c] - shift - log_norm) - y[c];
          } else {
            grad = s[c] - y[c];
          }
          const scalar_t v = apply_sigma<kSigma>(u[c] - b * grad);
          moved = std::max(moved, change(v, s[c]));
          s[c] = v;
        }
      } else if (track) {
        moved = update_row<kSigma>(s, u, width, moved);
      } else {
        set_row<kSigma>(s, u, width);
      }
      delta[r] = moved;
    }
  }
}

// A block of rows relaxed together: views of the call's tensors.
struct Block {
  std::vector<at::Tensor> states, pre;
  at::Tensor drive, target;
  int64_t* ran = nullptr;
  int64_t rows = 0;
};

template <typename scalar_t>
void relax_block(const PreparedRelax& p, Block& b, const std::vector<std::vector<int>>& groups,
                 int64_t steps, double beta, double tol) {
  const int n_layers = static_cast<int>(p.weights.size());
  const int64_t total_width = std::accumulate(p.widths.begin() + 1, p.widths.end(), int64_t{0});
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(total_width, 1));
  std::vector<uint8_t> active(b.rows, 1);
  std::vector<scalar_t> delta(b.rows);
  for (int64_t t = 0; t < steps; ++t) {
    if (std::none_of(active.begin(), active.end(), [](uint8_t a) { return a != 0; })) break;
    std::fill(delta.begin(), delta.end(), scalar_t(0));
    for (const auto& group : groups) {
      if (group.empty()) continue;
      compute_pre(p, b.drive, b.states, group, b.pre);
      // Runs inline when the block is itself one task of a parallel loop.
      at::parallel_for(0, b.rows, grain, [&](int64_t begin, int64_t end) {
        LOCALGRAD_DISPATCH_SIGMA(p.sigma, [&] {
          LOCALGRAD_DISPATCH_NUDGE(p.nudge, [&] {
            apply_rows<scalar_t, kSigma, kNudge>(group, n_layers, b.pre, b.states, b.target, beta,
                                                  active, delta, tol > 0, begin, end);
          });
        });
      });
    }
    for (int64_t r = 0; r < b.rows; ++r) {
      if (!active[r]) continue;
      ++b.ran[r];
      // In the state's dtype, as the CUDA kernels and the reference compare.
      if (delta[r] < static_cast<scalar_t>(tol)) active[r] = 0;
    }
  }
}

// Weights of layers 1..L-1 up to this size stay in a core's cache, and then
// each thread relaxes its own tiles of rows for all steps (rows are
// independent): states stay cache-resident and threads never wait for each
// other between steps. Larger nets are GEMM-bound and relax the whole batch
// step by step with multi-threaded products.
constexpr int64_t kTiledWeightBytes = 1 << 20;
constexpr int64_t kTileStateBytes = 256 << 10;

at::Tensor eqprop_relax_cpu(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                            at::TensorList states, const std::optional<at::Tensor>& target,
                            double beta, int64_t nudge, int64_t activation, int64_t steps,
                            bool async_update, double tol) {
  PreparedRelax p = prepare_relax(x, weights, biases, states, target, beta, nudge, activation,
                                  steps, tol);
  const int64_t batch = x.size(0);
  const int n_layers = static_cast<int>(p.weights.size());
  at::Tensor ran = at::zeros({batch}, x.options().dtype(at::kLong));
  if (p.nudge == Nudge::Clamp) states[n_layers - 1].copy_(p.target);
  if (batch == 0 || steps == 0) return ran;

  const at::Tensor drive = at::addmm(p.biases[0], p.x, p.weights[0].t());
  std::vector<at::Tensor> pre(n_layers);
  for (int j = 0; j < n_layers; ++j) pre[j] = at::empty({batch, p.widths[j + 1]}, x.options());
  const auto groups = update_groups(n_layers, p.nudge, async_update);

  const int64_t elem = static_cast<int64_t>(x.element_size());
  int64_t weight_bytes = 0;
  for (int j = 1; j < n_layers; ++j) weight_bytes += p.weights[j].numel() * elem;
  const int64_t total_width = std::accumulate(p.widths.begin() + 1, p.widths.end(), int64_t{0});
  const int64_t threads = at::get_num_threads();
  int64_t n_tiles = 1;
  if (weight_bytes <= kTiledWeightBytes) {
    const int64_t by_cache = (batch * total_width * 2 * elem + kTileStateBytes - 1) / kTileStateBytes;
    n_tiles = std::min(batch, std::max(threads, by_cache));
  }
  const int64_t tile = (batch + n_tiles - 1) / n_tiles;
  n_tiles = (batch + tile - 1) / tile;

  auto make_block = [&](int64_t row0, int64_t rows) {
    Block b;
    for (int j = 0; j < n_layers; ++j) {
      b.states.push_back(states[j].narrow(0, row0, rows));
      b.pre.push_back(pre[j].narrow(0, row0, rows));
    }
    b.drive = drive.narrow(0, row0, rows);
    if (p.target.defined()) b.target = p.target.narrow(0, row0, rows);
    b.ran = ran.data_ptr<int64_t>() + row0;
    b.rows = rows;
    return b;
  };

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eqprop_relax_cpu", [&] {
    if (n_tiles == 1) {
      Block b = make_block(0, batch);
      relax_block<scalar_t>(p, b, groups, steps, beta, tol);
      return;
    }
    at::parallel_for(0, n_tiles, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        Block b = make_block(i * tile, std::min(tile, batch - i * tile));
        relax_block<scalar_t>(p, b, groups, steps, beta, tol);
      }
    });
  });
  return ran;
}

void eqprop_update_cpu(const at::Tensor& x, at::TensorList states_a, at::TensorList states_b,
                       double scale, at::TensorList weight_grads, at::TensorList bias_grads) {
  eqprop_update_impl(x, states_a, states_b, scale, weight_grads, bias_grads);
}

}  // namespace
}  // namespace localgrad::eqprop

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("eqprop_relax", &localgrad::eqprop::eqprop_relax_cpu);
  m.impl("eqprop_update", &localgrad::eqprop::eqprop_update_cpu);
}
