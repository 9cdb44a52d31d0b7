// CUDA eprop_lif_chunk: checks and the input projection (cuBLAS through ATen)
// are shared with the CPU backend (eprop_lif_glue.cpp); this file copies the
// initial neuron state for the kernel's many readers and launches it.
#include <ATen/Context.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "../checks.h"
#include "../eprop_lif_glue.h"
#include "device.h"
#include "eprop_lif_kernel.cuh"

namespace localgrad::eprop_lif {
namespace {

void eprop_lif_chunk_cuda(const at::Tensor& x, const at::Tensor& weight_in,
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
  // Checks first: a tensor on the wrong device must get the named-argument
  // message, not the device guard's.
  PreparedChunk p = prepare_chunk(x, weight_in, weight_rec, weight_out, bias_out, feedback,
                                  target, signal, neuron, adaptive, mode, loss_scale, v, a, z,
                                  psi, y, pre_trace, adapt_trace, filt_trace, out_trace, grad_w,
                                  grad_out, outputs);
  const device::Guard guard(x.device());
  // The kernel sums the weight gradients with float atomics, in an order that
  // changes from run to run (the CPU kernel's is fixed).
  at::globalContext().alertNotDeterministic(
      "eprop_lif_chunk (CUDA): grad_w and grad_out are accumulated with atomicAdd; run it on "
      "the CPU for bitwise reproducible gradients");
  ChunkParams& c = p.params;
  if (c.batch == 0 || c.steps == 0) return;

  const ScalarKind dtype = scalar_kind(x.scalar_type());
  const size_t bytes = chunk_shared_bytes(c, dtype, p.adaptive, p.mode);
  int device = 0, max_bytes = 0;
  TORCH_CHECK(cudaGetDevice(&device) == cudaSuccess &&
                  cudaDeviceGetAttribute(&max_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                         device) == cudaSuccess,
              "eprop_lif_chunk: could not query the device's shared memory");
  TORCH_CHECK_VALUE(bytes <= static_cast<size_t>(max_bytes), "eprop_lif_chunk: hidden ",
                    c.hidden, ", n_in ", c.n_in, " and n_out ", c.n_out, " need ", bytes,
                    " bytes of shared memory per block, more than the device's ", max_bytes);

  // Initial state copies (small: per neuron, not per synapse).
  const at::Tensor v0 = v.clone(), z0 = z.clone(), y0 = y.clone();
  const at::Tensor pre0 = pre_trace.clone(), out0 = out_trace.clone();
  at::Tensor a0, psi0;
  c.v0 = v0.const_data_ptr();
  c.z0 = z0.const_data_ptr();
  c.y0 = y0.const_data_ptr();
  c.pre_trace0 = pre0.const_data_ptr();
  c.out_trace0 = out0.const_data_ptr();
  if (adaptive) {
    a0 = a.clone();
    psi0 = psi.clone();
    c.a0 = a0.const_data_ptr();
    c.psi0 = psi0.const_data_ptr();
  }
  const cudaStream_t stream = device::current_stream();
  const cudaError_t status = launch_chunk(c, dtype, p.adaptive, p.mode, stream);
  device::check_launch(status, "eprop_lif_chunk");
}

}  // namespace
}  // namespace localgrad::eprop_lif

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("eprop_lif_chunk", &localgrad::eprop_lif::eprop_lif_chunk_cuda);
}
