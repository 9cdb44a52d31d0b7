// CUDA EqProp: checks, the input drive and the per-step path's products go
// through the shared glue (eqprop_glue.cpp, cuBLAS via ATen); this file picks
// the persistent kernel when the states and weights fit in shared memory.
//
// LOCALGRAD_EQPROP_PATH=persistent|step forces a path (tests, benchmarks).
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../eqprop_glue.h"
#include "device.h"
#include "eqprop_kernel.cuh"

namespace localgrad::eqprop {
namespace {

constexpr const char* kRelax = "eqprop_relax";
constexpr int kMaxRowsPerBlock = 16;
// Steps between the per-step path's checks for an early exit (each check
// waits for the GPU).
constexpr int64_t kExitCheckEvery = 8;

void check_launch(cudaError_t status) {
  TORCH_CHECK(status == cudaSuccess, kRelax, ": CUDA kernel launch failed: ",
              cudaGetErrorString(status));
}

std::string forced_path() {
  const char* env = std::getenv("LOCALGRAD_EQPROP_PATH");
  return env == nullptr ? std::string() : std::string(env);
}

// Rows per block of the persistent kernel: enough blocks to cover the SMs,
// at most what shared memory holds; 0 when not even one row fits.
int rows_per_block(const RelaxParams& params, ScalarKind dtype, int64_t batch) {
  int device = 0;
  cudaGetDevice(&device);
  int sm_count = 1;
  cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  int rows = 1;
  while (rows < kMaxRowsPerBlock && batch / (2 * rows) >= sm_count) rows *= 2;
  const size_t limit = max_block_smem();
  while (rows > 0 && persistent_smem_bytes(params, dtype, rows) > limit) rows /= 2;
  return rows;
}

at::Tensor eqprop_relax_cuda(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                             at::TensorList states, const std::optional<at::Tensor>& target,
                             double beta, int64_t nudge, int64_t activation, int64_t steps,
                             bool async_update, double tol) {
  PreparedRelax p = prepare_relax(x, weights, biases, states, target, beta, nudge, activation,
                                  steps, tol);
  const device::Guard guard(x.device());
  const cudaStream_t stream = device::current_stream();
  const int64_t batch = x.size(0);
  const int n_layers = static_cast<int>(p.weights.size());
  const ScalarKind dtype = scalar_kind(x.scalar_type());
  at::Tensor ran = at::zeros({batch}, x.options().dtype(at::kLong));
  if (p.nudge == Nudge::Clamp) states[n_layers - 1].copy_(p.target);
  if (batch == 0 || steps == 0) return ran;

  const at::Tensor drive = at::addmm(p.biases[0], p.x, p.weights[0].t());
  const std::string path = forced_path();

  RelaxParams params;
  params.drive = drive.const_data_ptr();
  params.width[0] = p.widths[0];
  for (int j = 0; j < n_layers; ++j) {
    params.weight[j] = p.weights[j].const_data_ptr();
    params.bias[j] = p.biases[j].const_data_ptr();
    params.state[j] = states[j].data_ptr();
    params.state_row_stride[j] = states[j].stride(0);
    params.width[j + 1] = p.widths[j + 1];
  }
  if (p.target.defined()) {
    params.target = p.target.const_data_ptr();
    params.target_row_stride = p.target.stride(0);
  }
  params.ran = ran.data_ptr<int64_t>();
  params.batch = batch;
  params.n_layers = n_layers;
  params.steps = steps;
  params.beta = beta;
  params.tol = tol;
  params.sigma = p.sigma;
  params.nudge = p.nudge;
  params.async_update = async_update;

  const int rows = path == "step" ? 0 : rows_per_block(params, dtype, batch);
  TORCH_CHECK(path != "persistent" || rows > 0, kRelax,
              ": LOCALGRAD_EQPROP_PATH=persistent, but the states and weights do not fit in "
              "shared memory");
  if (rows > 0) {
    check_launch(launch_relax_persistent(params, dtype, rows, stream));
    return ran;
  }

  // Per-step path: cuBLAS products, then the fused elementwise kernel.
  std::vector<at::Tensor> pre(n_layers);
  for (int j = 0; j < n_layers; ++j) pre[j] = at::empty({batch, p.widths[j + 1]}, x.options());
  at::Tensor frozen = at::zeros({batch}, x.options().dtype(at::kByte));
  at::Tensor row_delta = at::zeros({batch}, x.options());
  StepParams step;
  step.n_layers = n_layers;
  step.batch = batch;
  step.beta = beta;
  step.sigma = p.sigma;
  step.nudge = p.nudge;
  step.frozen = frozen.const_data_ptr<uint8_t>();
  step.row_delta = row_delta.data_ptr();
  step.target = params.target;
  step.target_row_stride = params.target_row_stride;
  for (int j = 0; j < n_layers; ++j) {
    step.pre[j] = pre[j].const_data_ptr();
    step.state[j] = states[j].data_ptr();
    step.state_row_stride[j] = states[j].stride(0);
    step.width[j] = p.widths[j + 1];
  }
  const auto groups = update_groups(n_layers, p.nudge, async_update);
  for (int64_t t = 0; t < steps; ++t) {
    if (tol > 0 && t > 0 && t % kExitCheckEvery == 0 && frozen.all().item<bool>()) break;
    for (const auto& group : groups) {
      if (group.empty()) continue;
      compute_pre(p, drive, states, group, pre);
      std::fill(std::begin(step.update), std::end(step.update), false);
      for (int j : group) step.update[j] = true;
      check_launch(launch_relax_step(step, dtype, stream));
    }
    check_launch(launch_finish_step(frozen.data_ptr<uint8_t>(), row_delta.data_ptr(),
                                    ran.data_ptr<int64_t>(), batch, tol, dtype, stream));
  }
  return ran;
}

void eqprop_update_cuda(const at::Tensor& x, at::TensorList states_a, at::TensorList states_b,
                        double scale, at::TensorList weight_grads, at::TensorList bias_grads) {
  check_update(x, states_a, states_b, scale, weight_grads, bias_grads);
  const device::Guard guard(x.device());
  eqprop_update_impl(x, states_a, states_b, scale, weight_grads, bias_grads);
}

}  // namespace
}  // namespace localgrad::eqprop

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("eqprop_relax", &localgrad::eqprop::eqprop_relax_cuda);
  m.impl("eqprop_update", &localgrad::eqprop::eqprop_update_cuda);
}
