// CUDA hebbian_update: the checks and the GEMMs (cuBLAS through ATen) are
// shared with the CPU backend (hebbian_glue.cpp); this file hands the
// elementwise and reduction work to the kernels on the current stream.
#include <torch/library.h>

#include "../hebbian_glue.h"
#include "device.h"
#include "hebbian_kernel.cuh"

namespace localgrad::hebbian {
namespace {

void check_launch(cudaError_t status, const char* kernel) {
  TORCH_CHECK(status == cudaSuccess, "hebbian_update: CUDA kernel launch failed (", kernel,
              "): ", cudaGetErrorString(status));
}

cudaStream_t stream() { return device::current_stream(); }

void power_cuda(const PowerParams& pp, bool is_double) {
  check_launch(launch_power(pp, is_double, stream()), "power");
}
void activate_cuda(const ActivateParams& ap, bool is_double) {
  check_launch(launch_activate(ap, is_double, stream()), "activate");
}
void combine_cuda(const CombineParams& cp, bool is_double) {
  check_launch(launch_combine(cp, is_double, stream()), "combine");
}
void finalize_cuda(const FinalizeParams& fp, bool is_double, ScalarKind out) {
  check_launch(launch_finalize(fp, is_double, out, stream()), "finalize");
}

constexpr Kernels kCudaKernels{&power_cuda, &activate_cuda, &combine_cuda, &finalize_cuda};

void hebbian_update_cuda(const at::Tensor& x, const at::Tensor& weight,
                         const std::optional<at::Tensor>& theta, int64_t rule,
                         double temperature, double p, int64_t rank, double anti, double lr,
                         double lr_power, bool normalize, const at::Tensor& u,
                         const at::Tensor& grad) {
  const device::Guard guard(x.device());
  hebbian_update(x, weight, theta, rule, temperature, p, rank, anti, lr, lr_power, normalize,
                 u, grad, kCudaKernels);
}

}  // namespace
}  // namespace localgrad::hebbian

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("hebbian_update", &localgrad::hebbian::hebbian_update_cuda);
}
