// Argument checking for eprop_lif_chunk, shared by the CPU and CUDA
// implementations so both accept and refuse exactly the same calls.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "eprop_lif.h"

namespace localgrad::eprop_lif {

struct PreparedChunk {
  ChunkParams params;
  SignalMode mode = SignalMode::Mse;
  bool adaptive = false;
  // Dense copies of the inputs, kept alive while `params` points into them.
  at::Tensor in_current, weight_rec, weight_out, bias_out, feedback, x, target, signal;
};

// Checks every argument (naming it in the error) and fills the params. The
// input projection W_in x_t of the whole chunk is one GEMM, done here by ATen
// (BLAS on CPU, cuBLAS on CUDA) before the kernel walks the steps.
PreparedChunk prepare_chunk(const at::Tensor& x, const at::Tensor& weight_in,
                            const at::Tensor& weight_rec, const at::Tensor& weight_out,
                            const at::Tensor& bias_out, const at::Tensor& feedback,
                            const std::optional<at::Tensor>& target,
                            const std::optional<at::Tensor>& signal,
                            at::ArrayRef<double> neuron, bool adaptive, int64_t mode,
                            double loss_scale, const at::Tensor& v, const at::Tensor& a,
                            const at::Tensor& z, const at::Tensor& psi, const at::Tensor& y,
                            const at::Tensor& pre_trace, const at::Tensor& adapt_trace,
                            const at::Tensor& filt_trace, const at::Tensor& out_trace,
                            const at::Tensor& grad_w, const at::Tensor& grad_out,
                            const at::Tensor& outputs);

}  // namespace localgrad::eprop_lif
