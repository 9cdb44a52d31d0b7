// CPU dfa_project: one BLAS GEMM projects the error onto every layer's
// feedback at once; a parallel pass then multiplies by f' and scatters the
// columns to each layer's output.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../dfa_glue.h"

namespace localgrad::dfa {
namespace {

template <typename scalar_t, typename acc_t, Activation kAct>
void apply_derivative(const Layer& layer, const acc_t* proj, int64_t proj_row_stride,
                      int64_t row_begin, int64_t row_end) {
  auto* out = static_cast<scalar_t*>(layer.out);
  const auto* act = static_cast<const scalar_t*>(layer.act);
  const acc_t slope = static_cast<acc_t>(layer.slope);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const acc_t* p = proj + r * proj_row_stride + layer.col_offset;
    scalar_t* o = out + r * layer.out_row_stride;
    if constexpr (kAct == Activation::Identity) {
      for (int64_t j = 0; j < layer.width; ++j) o[j] = static_cast<scalar_t>(p[j]);
    } else {
      const scalar_t* a = act + r * layer.act_row_stride;
      for (int64_t j = 0; j < layer.width; ++j) {
        const acc_t d = derivative_from_output<kAct, acc_t>(static_cast<acc_t>(a[j]), slope);
        o[j] = static_cast<scalar_t>(p[j] * d);
      }
    }
  }
}

// When the outputs are the column blocks of one (batch, total_width) buffer
// in the accumulation dtype, the GEMM can write there and f' be applied in
// place, saving a pass over a temporary as large as the result.
at::Tensor shared_output_block(at::TensorList out, const PreparedProject& p,
                               at::ScalarType acc_dtype, int64_t total_width) {
  const at::Tensor* first = nullptr;
  for (const at::Tensor& o : out) {
    if (o.size(1) > 0) { first = &o; break; }
  }
  if (first == nullptr || first->scalar_type() != acc_dtype) return {};
  const auto* base = static_cast<const char*>(first->data_ptr());
  const auto elem = static_cast<int64_t>(first->element_size());
  for (const at::Tensor& o : out) {
    if (o.size(1) > 0 && !o.storage().is_alias_of(first->storage())) return {};
  }
  for (const Layer& layer : p.layers) {
    if (layer.out_row_stride != total_width ||
        static_cast<const char*>(layer.out) != base + layer.col_offset * elem)
      return {};
  }
  return first->as_strided({first->size(0), total_width}, {total_width, 1},
                           first->storage_offset());
}

void dfa_project_cpu(const at::Tensor& error, const at::Tensor& feedback,
                     const c10::List<std::optional<at::Tensor>>& activations,
                     at::IntArrayRef kinds, at::ArrayRef<double> slopes,
                     at::TensorList out) {
  PreparedProject p = prepare_project(error, feedback, activations, kinds, slopes, out);
  const int64_t batch = error.size(0);
  const int64_t total_width = feedback.size(1);
  if (batch == 0 || p.layers.empty()) return;

  const auto acc_dtype = at::toOpMathType(error.scalar_type());
  const at::Tensor e = p.error.to(acc_dtype);
  const at::Tensor b = p.feedback.to(acc_dtype);
  at::Tensor proj = shared_output_block(out, p, acc_dtype, total_width);
  if (proj.defined()) {
    at::mm_out(proj, e, b);
  } else {
    proj = at::mm(e, b);
  }

  // Rows are independent; each task walks all layers for its rows so the
  // activation switch runs once per layer and row block, not per element.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(total_width, 1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, error.scalar_type(),
                                  "dfa_project_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* proj_ptr = proj.const_data_ptr<acc_t>();
    const int64_t proj_row_stride = proj.stride(0);
    at::parallel_for(0, batch, grain, [&](int64_t row_begin, int64_t row_end) {
      for (const Layer& layer : p.layers) {
        LOCALGRAD_DISPATCH_ACTIVATION(layer.kind, [&] {
          apply_derivative<scalar_t, acc_t, kAct>(layer, proj_ptr, proj_row_stride,
                                                  row_begin, row_end);
        });
      }
    });
  });
}

}  // namespace
}  // namespace localgrad::dfa

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("dfa_project", &localgrad::dfa::dfa_project_cpu);
}
