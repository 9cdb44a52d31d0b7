// Spiking e-prop (Bellec et al. 2020) over a chunk of time steps: the contract
// between the torch glue and the kernels of both backends. Torch-free.
//
// Per sample and step (pre_t = [x_t, z_{t-1}], P = n_in + hidden):
//   a_t = rho a_{t-1} + z_{t-1}                              (ALIF)
//   v_t = alpha v_{t-1} + (W_in x_t) + W_rec z_{t-1} - v_th z_{t-1}
//   z_t = H(v_t - A_t), A_t = v_th + beta a_t; psi_t = gamma max(0, 1 - |v_t - A_t| / v_th)
//   y_t = kappa y_{t-1} + W_out z_t + b_out
//   eps_t = alpha eps_{t-1} + pre_t; epsa_t = psi_{t-1} eps_{t-1} + (rho - beta psi_{t-1}) epsa_{t-1}
//   e_t = psi_t (eps_t - beta epsa_t)
//   readout-driven: ebar_t = kappa ebar_{t-1} + e_t, grad_w += (dE/dy_t B) x ebar_t
//   given signal:   grad_w += signal_t x e_t
// (the equations with their sources: localgrad/reference/eprop_lif.py).
#pragma once

#include <cstdint>

namespace localgrad::eprop_lif {

// Where the learning signal comes from: the readout error of a per-step loss
// (mse or cross-entropy) sent back through `feedback`, or given per step.
enum class SignalMode : int { Mse = 0, CrossEntropy = 1, Given = 2 };
constexpr int kNumSignalModes = 3;

// Every tensor is dense (contiguous) in the layouts below; the glue copies
// inputs that are not and refuses state that is not.
struct ChunkParams {
  const void* in_current = nullptr;  // (T, batch, hidden): W_in x_t for the whole chunk
  const void* weight_rec = nullptr;  // (hidden, hidden), zero diagonal
  const void* weight_out = nullptr;  // (n_out, hidden)
  const void* bias_out = nullptr;    // (n_out)
  const void* feedback = nullptr;    // (n_out, hidden): B^T; W_out itself when symmetric
  const void* x = nullptr;           // (T, batch, n_in)
  const void* target = nullptr;      // mse: (T, batch, n_out); cross-entropy: int64 (T, batch), < 0 = no loss
  const void* signal = nullptr;      // given: (T, batch, hidden)
  void* v = nullptr;                 // (batch, hidden)
  void* a = nullptr;                 // (batch, hidden), ALIF
  void* z = nullptr;                 // (batch, hidden), last step's spikes
  void* psi = nullptr;               // (batch, hidden), ALIF: last step's pseudo-derivative
  void* y = nullptr;                 // (batch, n_out)
  void* pre_trace = nullptr;         // (batch, P)
  void* adapt_trace = nullptr;       // (batch, hidden, P), ALIF
  void* filt_trace = nullptr;        // (batch, hidden, P), readout-driven modes
  void* out_trace = nullptr;         // (batch, hidden + 1)
  void* grad_w = nullptr;            // (hidden, P), accumulated
  void* grad_out = nullptr;          // (n_out, hidden + 1), accumulated (readout-driven modes)
  void* outputs = nullptr;           // (T, batch, n_out), written
  // CUDA only: copies of the per-neuron state at the start of the chunk. Many
  // blocks replay one sample's dynamics; they all read these, and one of them
  // writes the final state above, so no block reads what another overwrote.
  const void* v0 = nullptr;
  const void* a0 = nullptr;
  const void* z0 = nullptr;
  const void* psi0 = nullptr;
  const void* y0 = nullptr;
  const void* pre_trace0 = nullptr;
  const void* out_trace0 = nullptr;
  int64_t steps = 0;
  int64_t batch = 0;
  int64_t n_in = 0;
  int64_t hidden = 0;
  int64_t n_out = 0;
  double alpha = 0, rho = 0, beta = 0, v_th = 1, gamma = 0, kappa = 0;
  double loss_scale = 0;             // dE/dy = loss_scale * (y - y*) or loss_scale * (softmax - onehot)
};

}  // namespace localgrad::eprop_lif

// Instantiates a generic lambda for the signal mode as the constexpr kMode.
#define LOCALGRAD_DISPATCH_SIGNAL_MODE(MODE, ...)                               \
  [&] {                                                                        \
    switch (MODE) {                                                            \
      case ::localgrad::eprop_lif::SignalMode::Mse: {                          \
        constexpr auto kMode = ::localgrad::eprop_lif::SignalMode::Mse;        \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::localgrad::eprop_lif::SignalMode::CrossEntropy: {                 \
        constexpr auto kMode = ::localgrad::eprop_lif::SignalMode::CrossEntropy; \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      default: {                                                               \
        constexpr auto kMode = ::localgrad::eprop_lif::SignalMode::Given;      \
        return __VA_ARGS__();                                                  \
      }                                                                        \
    }                                                                          \
  }()

// Instantiates a generic lambda for LIF (kAdaptive false) or ALIF (true).
#define LOCALGRAD_DISPATCH_ADAPTIVE(ADAPTIVE, ...) \
  [&] {                                            \
    if (ADAPTIVE) {                                \
      constexpr bool kAdaptive = true;             \
      return __VA_ARGS__();                        \
    }                                              \
    constexpr bool kAdaptive = false;              \
    return __VA_ARGS__();                          \
  }()
