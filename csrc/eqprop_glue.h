// Argument checking and the backend-independent parts of the EqProp ops,
// shared by the CPU and CUDA implementations so both accept and refuse
// exactly the same calls.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "eqprop.h"

namespace localgrad::eqprop {

struct PreparedRelax {
  at::Tensor x;                        // rows dense
  std::vector<at::Tensor> weights;     // dense
  std::vector<at::Tensor> weights_t;   // their transposes (views), made once per call
  std::vector<at::Tensor> biases;      // dense
  at::Tensor target;                   // rows dense; undefined in the free phase
  std::vector<int64_t> widths;         // n_0 .. n_L
  Sigma sigma = Sigma::HardSigmoid;
  Nudge nudge = Nudge::Free;
};

PreparedRelax prepare_relax(const at::Tensor& x, at::TensorList weights,
                            at::TensorList biases, at::TensorList states,
                            const std::optional<at::Tensor>& target, double beta,
                            int64_t nudge, int64_t activation, int64_t steps,
                            double tol);

// The state indices a step updates, as one group (synchronous) or two
// (asynchronous: even layers k = j + 1, then odd ones).
std::vector<std::vector<int>> update_groups(int n_layers, Nudge nudge, bool async_update);

// pre[j] = W_j s_{j-1} + b_j + W_{j+1}^T s_{j+1} for every j in `group`
// (drive for j = 0), by ATen matrix products on the tensors' device; pre[j]
// is in the accumulation dtype.
void compute_pre(const PreparedRelax& p, const at::Tensor& drive, at::TensorList states,
                 const std::vector<int>& group, std::vector<at::Tensor>& pre);

// eqprop_update's argument checks (run by eqprop_update_impl; the CUDA glue
// runs them before its device guard so a wrong device gets this message).
void check_update(const at::Tensor& x, at::TensorList states_a, at::TensorList states_b,
                  double scale, at::TensorList weight_grads, at::TensorList bias_grads);

// eqprop_update for any device: only ATen products and reductions.
void eqprop_update_impl(const at::Tensor& x, at::TensorList states_a,
                        at::TensorList states_b, double scale,
                        at::TensorList weight_grads, at::TensorList bias_grads);

}  // namespace localgrad::eqprop
