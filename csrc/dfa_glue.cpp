#include "dfa_glue.h"

#include <string>

#include "checks.h"

namespace localgrad::dfa {

namespace {
constexpr const char* kOp = "dfa_project";
}

PreparedProject prepare_project(const at::Tensor& error,
                                const at::Tensor& feedback,
                                const c10::List<std::optional<at::Tensor>>& activations,
                                at::IntArrayRef kinds,
                                at::ArrayRef<double> slopes,
                                at::TensorList out) {
  check_dim(error, 2, kOp, "error", "(batch, n_out)");
  check_float(error, kOp, "error");
  check_dim(feedback, 2, kOp, "feedback", "(n_out, total_width)");
  check_same_dtype(feedback, error, kOp, "feedback", "error");
  check_same_device(feedback, error, kOp, "feedback", "error");
  TORCH_CHECK_VALUE(feedback.size(0) == error.size(1), kOp,
                    ": feedback must have ", error.size(1),
                    " rows (n_out, the columns of error), got ", feedback.size(0));

  const auto n_layers = static_cast<int64_t>(out.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(activations.size()) == n_layers &&
                        static_cast<int64_t>(kinds.size()) == n_layers &&
                        static_cast<int64_t>(slopes.size()) == n_layers,
                    kOp, ": activations, kinds, slopes and out must have one "
                    "entry per layer, got ", activations.size(), ", ",
                    kinds.size(), ", ", slopes.size(), " and ", n_layers);

  const int64_t batch = error.size(0);
  PreparedProject p;
  // Inputs may require grad: the op reads their data and records nothing.
  p.error = rows_dense(error.detach());
  p.feedback = rows_dense(feedback.detach());
  p.acts.reserve(n_layers);

  int64_t offset = 0;
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string out_name = "out[" + std::to_string(l) + "]";
    const std::string act_name = "activations[" + std::to_string(l) + "]";
    const at::Tensor& o = out[l];
    check_dim(o, 2, kOp, out_name.c_str(), "(batch, width)");
    check_same_dtype(o, error, kOp, out_name.c_str(), "error");
    check_same_device(o, error, kOp, out_name.c_str(), "error");
    TORCH_CHECK_VALUE(o.size(0) == batch, kOp, ": ", out_name, " must have ",
                      batch, " rows (the batch of error), got ", o.size(0));
    check_rows_dense(o, kOp, out_name.c_str());

    TORCH_CHECK_VALUE(kinds[l] >= 0 && kinds[l] < kNumActivations, kOp,
                      ": kinds[", l, "] = ", kinds[l],
                      " is not an activation code (0..", kNumActivations - 1, ")");
    const auto kind = static_cast<Activation>(kinds[l]);

    const std::optional<at::Tensor> maybe_act = activations.get(l);
    at::Tensor act;
    if (maybe_act.has_value() && maybe_act->defined()) {
      act = *maybe_act;
      check_dim(act, 2, kOp, act_name.c_str(), "(batch, width)");
      check_same_dtype(act, error, kOp, act_name.c_str(), "error");
      check_same_device(act, error, kOp, act_name.c_str(), "error");
      TORCH_CHECK_VALUE(act.sizes() == o.sizes(), kOp, ": ", act_name,
                        " must have the shape of ", out_name, " ", o.sizes(),
                        ", got ", act.sizes());
      act = rows_dense(act.detach());
    } else {
      TORCH_CHECK_VALUE(kind == Activation::Identity, kOp, ": ", act_name,
                        " is None, which only an identity layer (kinds[", l,
                        "] = 1) allows");
    }

    const int64_t width = o.size(1);
    if (width > 0) {
      Layer layer;
      layer.out = o.data_ptr();
      layer.act = act.defined() ? act.const_data_ptr() : nullptr;
      layer.width = width;
      layer.col_offset = offset;
      layer.out_row_stride = o.stride(0);
      layer.act_row_stride = act.defined() ? act.stride(0) : 0;
      // Without a tensor the derivative is 1 whatever the nominal kind.
      layer.kind = act.defined() ? kind : Activation::Identity;
      layer.slope = slopes[l];
      p.layers.push_back(layer);
    }
    if (act.defined()) p.acts.push_back(std::move(act));
    offset += width;
  }
  TORCH_CHECK_VALUE(offset == feedback.size(1), kOp,
                    ": the widths of out sum to ", offset,
                    " but feedback has ", feedback.size(1),
                    " columns (one per hidden unit of all layers)");
  // The kernels write every out[l] before (CPU: a GEMM into the shared
  // buffer) or while reading the inputs: any shared memory gives garbage.
  TensorRoles roles;
  roles.input(error, "error");
  roles.input(feedback, "feedback");
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::optional<at::Tensor> a = activations.get(l);
    if (a.has_value()) roles.input(*a, "activations[" + std::to_string(l) + "]");
    roles.output(out[l], "out[" + std::to_string(l) + "]");
  }
  roles.check(kOp);
  return p;
}

}  // namespace localgrad::dfa
