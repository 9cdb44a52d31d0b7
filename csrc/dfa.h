// Direct Feedback Alignment (Nøkland 2016): the contract between the torch glue
// and the kernels of both backends. Torch-free.
//
//   delta_l = (error @ B_l) * f'(a_l)      for every hidden layer l,
//
// with all B_l stored side by side as one (n_out, total_width) matrix, so one
// launch projects the error onto every layer.
#pragma once

#include <cstdint>

#include "activation.h"

namespace localgrad::dfa {

// One hidden layer: its columns [col_offset, col_offset + width) of the
// feedback matrix, where its output delta goes, and what its derivative is
// read from. Row strides are in elements; the column stride is always 1.
struct Layer {
  void* out = nullptr;          // (batch, width)
  const void* act = nullptr;    // (batch, width); null for Identity
  int64_t width = 0;
  int64_t col_offset = 0;
  int64_t out_row_stride = 0;
  int64_t act_row_stride = 0;
  Activation kind = Activation::Identity;
  double slope = 0.0;           // LeakyReLU's negative slope (double: exact in fp64)
};

// Kernel arguments are passed by value and must stay under the 4 KiB limit;
// the glue splits longer layer lists into several launches.
constexpr int kMaxLayersPerLaunch = 32;

struct ProjectParams {
  const void* error = nullptr;     // (batch, n_out)
  const void* feedback = nullptr;  // (n_out, total_width)
  int64_t batch = 0;
  int64_t n_out = 0;
  int64_t error_row_stride = 0;
  int64_t feedback_row_stride = 0;
  int n_layers = 0;
  Layer layers[kMaxLayersPerLaunch];
};

}  // namespace localgrad::dfa
