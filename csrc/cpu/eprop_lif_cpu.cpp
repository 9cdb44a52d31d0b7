// CPU eprop_lif_chunk. Samples are independent over the whole chunk, so each
// task runs all T steps for its own samples (state stays hot in its cache)
// and sums its weight updates into a private buffer; the buffers are added at
// the end in a fixed order, so a run is reproducible for a given thread count.
// The recurrent and readout products read only the columns of neurons that
// spiked (z is binary), which is why they are loops and not BLAS calls; the
// dense input projection of the chunk was one GEMM in the glue.
#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../eprop_lif_glue.h"

namespace localgrad::eprop_lif {
namespace {

template <typename scalar_t, bool kAdaptive, SignalMode kMode>
void run_samples(const ChunkParams& c, int64_t b_begin, int64_t b_end, scalar_t* grad_w,
                 scalar_t* grad_out) {
  const int64_t T = c.steps, B = c.batch, I = c.n_in, H = c.hidden, K = c.n_out;
  const int64_t P = I + H;
  const auto alpha = static_cast<scalar_t>(c.alpha), rho = static_cast<scalar_t>(c.rho);
  const auto beta = static_cast<scalar_t>(c.beta), v_th = static_cast<scalar_t>(c.v_th);
  const auto gamma = static_cast<scalar_t>(c.gamma), kappa = static_cast<scalar_t>(c.kappa);
  const auto scale = static_cast<scalar_t>(c.loss_scale);
  const auto* in_current = static_cast<const scalar_t*>(c.in_current);
  const auto* w_rec = static_cast<const scalar_t*>(c.weight_rec);
  const auto* w_out = static_cast<const scalar_t*>(c.weight_out);
  const auto* b_out = static_cast<const scalar_t*>(c.bias_out);
  const auto* fb = static_cast<const scalar_t*>(c.feedback);
  const auto* x = static_cast<const scalar_t*>(c.x);

  std::vector<int64_t> fired(H);     // indices of z_{t-1} (then z_t) that are 1
  std::vector<scalar_t> current(H), psi_now(H), dedy(K), signal(H);
  for (int64_t b = b_begin; b < b_end; ++b) {
    scalar_t* v = static_cast<scalar_t*>(c.v) + b * H;
    scalar_t* z = static_cast<scalar_t*>(c.z) + b * H;
    scalar_t* y = static_cast<scalar_t*>(c.y) + b * K;
    scalar_t* eps = static_cast<scalar_t*>(c.pre_trace) + b * P;
    scalar_t* zk = static_cast<scalar_t*>(c.out_trace) + b * (H + 1);
    scalar_t* a = kAdaptive ? static_cast<scalar_t*>(c.a) + b * H : nullptr;
    scalar_t* psi = kAdaptive ? static_cast<scalar_t*>(c.psi) + b * H : nullptr;
    scalar_t* epsa = kAdaptive ? static_cast<scalar_t*>(c.adapt_trace) + b * H * P : nullptr;
    scalar_t* ebar = kMode != SignalMode::Given ? static_cast<scalar_t*>(c.filt_trace) + b * H * P
                                                : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* x_t = x + (t * B + b) * I;
      // z_{t-1}: the spikes of the last step, before this step overwrites z.
      int64_t n_fired = 0;
      for (int64_t i = 0; i < H; ++i)
        if (z[i] != scalar_t(0)) fired[n_fired++] = i;

      if constexpr (kAdaptive) {
        // epsa_t from eps_{t-1} and psi_{t-1}: before eps is advanced.
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t p = psi[j], decay = rho - beta * p;
          scalar_t* row = epsa + j * P;
          for (int64_t i = 0; i < P; ++i) row[i] = p * eps[i] + decay * row[i];
        }
      }
      for (int64_t i = 0; i < I; ++i) eps[i] = alpha * eps[i] + x_t[i];
      for (int64_t i = 0; i < H; ++i) eps[I + i] = alpha * eps[I + i] + z[i];

      const scalar_t* in_t = in_current + (t * B + b) * H;
      for (int64_t j = 0; j < H; ++j) {
        scalar_t s = in_t[j];
        const scalar_t* row = w_rec + j * H;
        // z_{t-1} weighs the column: it is 0 or 1 after a step, but a caller's
        // initial state may hold any value (the reference computes W z).
        for (int64_t n = 0; n < n_fired; ++n) s += row[fired[n]] * z[fired[n]];
        current[j] = s - v_th * z[j];
      }
      n_fired = 0;
      for (int64_t j = 0; j < H; ++j) {
        scalar_t threshold = v_th;
        if constexpr (kAdaptive) {
          a[j] = rho * a[j] + z[j];
          threshold += beta * a[j];
        }
        v[j] = alpha * v[j] + current[j];
        const scalar_t u = v[j] - threshold;
        z[j] = u > scalar_t(0) ? scalar_t(1) : scalar_t(0);
        if (u > scalar_t(0)) fired[n_fired++] = j;
        // Not std::max: a NaN membrane gives a NaN pseudo-derivative (as the reference).
        const scalar_t q = scalar_t(1) - std::abs(u) / v_th;
        psi_now[j] = gamma * (q < scalar_t(0) ? scalar_t(0) : q);
      }

      scalar_t* out_t = static_cast<scalar_t*>(c.outputs) + (t * B + b) * K;
      for (int64_t k = 0; k < K; ++k) {
        scalar_t s = b_out[k];
        const scalar_t* row = w_out + k * H;
        for (int64_t n = 0; n < n_fired; ++n) s += row[fired[n]];
        y[k] = kappa * y[k] + s;
        out_t[k] = y[k];
      }
      for (int64_t j = 0; j < H; ++j) zk[j] = kappa * zk[j] + z[j];
      zk[H] = kappa * zk[H] + scalar_t(1);

      if constexpr (kMode == SignalMode::Given) {
        const scalar_t* sig = static_cast<const scalar_t*>(c.signal) + (t * B + b) * H;
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t l = sig[j], p = psi_now[j];
          scalar_t* g = grad_w + j * P;
          if constexpr (kAdaptive) {
            const scalar_t* ra = epsa + j * P;
            for (int64_t i = 0; i < P; ++i) g[i] += l * (p * (eps[i] - beta * ra[i]));
          } else {
            for (int64_t i = 0; i < P; ++i) g[i] += l * (p * eps[i]);
          }
        }
      } else {
        bool has_loss = true;
        if constexpr (kMode == SignalMode::Mse) {
          const scalar_t* tgt = static_cast<const scalar_t*>(c.target) + (t * B + b) * K;
          for (int64_t k = 0; k < K; ++k) dedy[k] = (y[k] - tgt[k]) * scale;
        } else {
          const int64_t label = static_cast<const int64_t*>(c.target)[t * B + b];
          has_loss = label >= 0;
          if (has_loss) {
            scalar_t m = y[0];
            for (int64_t k = 1; k < K; ++k) m = std::max(m, y[k]);
            scalar_t total = 0;
            for (int64_t k = 0; k < K; ++k) total += std::exp(y[k] - m);
            for (int64_t k = 0; k < K; ++k)
              dedy[k] = (std::exp(y[k] - m) / total - (k == label ? scalar_t(1) : scalar_t(0))) * scale;
          }
        }
        for (int64_t j = 0; j < H; ++j) {
          scalar_t l = 0;
          if (has_loss)
            for (int64_t k = 0; k < K; ++k) l += dedy[k] * fb[k * H + j];
          signal[j] = l;
        }
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t l = signal[j], p = psi_now[j];
          scalar_t* e = ebar + j * P;
          scalar_t* g = grad_w + j * P;
          if constexpr (kAdaptive) {
            const scalar_t* ra = epsa + j * P;
            for (int64_t i = 0; i < P; ++i) {
              e[i] = kappa * e[i] + p * (eps[i] - beta * ra[i]);
              g[i] += l * e[i];
            }
          } else {
            for (int64_t i = 0; i < P; ++i) {
              e[i] = kappa * e[i] + p * eps[i];
              g[i] += l * e[i];
            }
          }
        }
        if (has_loss) {
          for (int64_t k = 0; k < K; ++k) {
            scalar_t* g = grad_out + k * (H + 1);
            for (int64_t j = 0; j <= H; ++j) g[j] += dedy[k] * zk[j];
          }
        }
      }
      if constexpr (kAdaptive) std::copy(psi_now.begin(), psi_now.end(), psi);
    }
  }
}

void eprop_lif_chunk_cpu(const at::Tensor& x, const at::Tensor& weight_in,
                         const at::Tensor& weight_rec, const at::Tensor& weight_out,
                         const at::Tensor& bias_out, const at::Tensor& feedback,
                         const std::optional<at::Tensor>& target,
                         const std::optional<at::Tensor>& signal, at::ArrayRef<double> neuron,
                         bool adaptive, int64_t mode, double loss_scale, const at::Tensor& v,
                         const at::Tensor& a, const at::Tensor& z, const at::Tensor& psi,
                         const at::Tensor& y, const at::Tensor& pre_trace,
                         const at::Tensor& adapt_trace, const at::Tensor& filt_trace,
                         const at::Tensor& out_trace, const at::Tensor& grad_w,
                         const at::Tensor& grad_out, const at::Tensor& outputs) {
  PreparedChunk p = prepare_chunk(x, weight_in, weight_rec, weight_out, bias_out, feedback,
                                  target, signal, neuron, adaptive, mode, loss_scale, v, a, z,
                                  psi, y, pre_trace, adapt_trace, filt_trace, out_trace, grad_w,
                                  grad_out, outputs);
  const ChunkParams& c = p.params;
  if (c.batch == 0 || c.steps == 0) return;
  const bool readout_driven = p.mode != SignalMode::Given;
  const int64_t n_w = c.hidden * (c.n_in + c.hidden);
  const int64_t n_o = readout_driven ? c.n_out * (c.hidden + 1) : 0;
  const int64_t n_tasks = std::min<int64_t>(c.batch, at::get_num_threads());
  // One row of partial sums per task: [grad_w | grad_out].
  at::Tensor partial = at::zeros({n_tasks, n_w + n_o}, x.options());

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eprop_lif_chunk_cpu", [&] {
    scalar_t* base = partial.data_ptr<scalar_t>();
    LOCALGRAD_DISPATCH_ADAPTIVE(p.adaptive, [&] {
      LOCALGRAD_DISPATCH_SIGNAL_MODE(p.mode, [&] {
        at::parallel_for(0, n_tasks, 1, [&](int64_t task_begin, int64_t task_end) {
          for (int64_t task = task_begin; task < task_end; ++task) {
            scalar_t* row = base + task * (n_w + n_o);
            run_samples<scalar_t, kAdaptive, kMode>(c, c.batch * task / n_tasks,
                                                    c.batch * (task + 1) / n_tasks, row,
                                                    row + n_w);
          }
        });
      });
    });
  });
  const at::Tensor total = partial.sum(0);
  grad_w.view({n_w}).add_(total.narrow(0, 0, n_w));
  if (readout_driven) grad_out.view({n_o}).add_(total.narrow(0, n_w, n_o));
}

}  // namespace
}  // namespace localgrad::eprop_lif

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("eprop_lif_chunk", &localgrad::eprop_lif::eprop_lif_chunk_cpu);
}
