// Argument checking and layer bookkeeping for dfa_project, shared by the CPU
// and CUDA implementations so both accept and refuse exactly the same calls.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include "dfa.h"

namespace localgrad::dfa {

struct PreparedProject {
  at::Tensor error;                  // rows dense
  at::Tensor feedback;               // rows dense
  std::vector<at::Tensor> acts;      // rows dense copies kept alive for `layers`
  std::vector<Layer> layers;         // empty layers (width 0) left out
};

PreparedProject prepare_project(const at::Tensor& error,
                                const at::Tensor& feedback,
                                const c10::List<std::optional<at::Tensor>>& activations,
                                at::IntArrayRef kinds,
                                at::ArrayRef<double> slopes,
                                at::TensorList out);

}  // namespace localgrad::dfa
