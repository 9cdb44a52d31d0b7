// hebbian_update, shared by the CPU and CUDA backends: the argument checks and
// the whole step (the GEMMs through ATen on the tensors' device), with the
// backend's kernels for the elementwise and reduction work in between. Both
// backends therefore accept, refuse and compute exactly the same things.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "hebbian.h"
#include "scalar_kind.h"

namespace localgrad::hebbian {

// The backend's kernels; `is_double` says whether the acc type is double
// (float otherwise); `out` in finalize is the storage type of grad.
struct Kernels {
  void (*power)(const PowerParams&, bool is_double);
  void (*activate)(const ActivateParams&, bool is_double);
  void (*combine)(const CombineParams&, bool is_double);
  void (*finalize)(const FinalizeParams&, bool is_double, ScalarKind out);
};

void hebbian_update(const at::Tensor& x, const at::Tensor& weight,
                    const std::optional<at::Tensor>& theta, int64_t rule,
                    double temperature, double p, int64_t rank, double anti,
                    double lr, double lr_power, bool normalize, const at::Tensor& u,
                    const at::Tensor& grad, const Kernels& kernels);

}  // namespace localgrad::hebbian
