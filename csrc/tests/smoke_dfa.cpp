// C++ smoke test of the CMake build: finds localgrad::dfa_project through the
// dispatcher, as a C++ user of libtorch would, and checks one float64 call
// against at::mm times f'. That the schema is found and a CPU kernel answers
// proves the library's static registrations ran when it was loaded.
#include <cmath>
#include <cstdint>
#include <exception>
#include <iostream>
#include <optional>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

namespace {

using DfaProject = void(const at::Tensor&, const at::Tensor&,
                        const c10::List<std::optional<at::Tensor>>&,
                        at::IntArrayRef, at::ArrayRef<double>, at::TensorList);

constexpr int64_t kRelu = 2;      // localgrad/activations.py
constexpr int64_t kIdentity = 1;
constexpr double kTolerance = 1e-12;

// Largest |out - expected|; NaN (an unwritten, poisoned output) propagates.
double max_abs_error(const at::Tensor& out, const at::Tensor& expected) {
  const at::Tensor diff = (out - expected).abs();
  if (diff.isnan().any().item<bool>()) return NAN;
  return diff.numel() == 0 ? 0.0 : diff.max().item<double>();
}

bool dfa_project_matches_mm() {
  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("localgrad::dfa_project", "")
                      .typed<DfaProject>();

  at::manual_seed(0);
  const int64_t batch = 7, n_out = 5, width0 = 11, width1 = 6;
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor error = at::randn({batch, n_out}, f64);
  const at::Tensor feedback = at::randn({n_out, width0 + width1}, f64);
  // A ReLU layer's output h: about half of it exactly 0, where f' is 0.
  const at::Tensor h0 = at::relu(at::randn({batch, width0}, f64));

  c10::List<std::optional<at::Tensor>> activations;
  activations.push_back(h0);
  activations.push_back(std::nullopt);
  const std::vector<int64_t> kinds = {kRelu, kIdentity};
  const std::vector<double> slopes = {0.0, 0.0};
  const std::vector<at::Tensor> out = {at::full({batch, width0}, NAN, f64),
                                       at::full({batch, width1}, NAN, f64)};

  op.call(error, feedback, activations, kinds, slopes, out);

  const at::Tensor projected = at::mm(error, feedback);
  const at::Tensor expected0 = projected.narrow(1, 0, width0) * (h0 > 0).to(at::kDouble);
  const at::Tensor expected1 = projected.narrow(1, width0, width1);
  const double err0 = max_abs_error(out[0], expected0);
  const double err1 = max_abs_error(out[1], expected1);
  const bool ok = err0 < kTolerance && err1 < kTolerance;
  if (!ok) {
    std::cerr << "dfa_project float64: max abs error " << err0 << " (ReLU layer), "
              << err1 << " (identity layer), tolerance " << kTolerance << "\n";
  }
  return ok;
}

}  // namespace

int main() {
  int passed = 0, failed = 0;
  bool ok = false;
  try {
    ok = dfa_project_matches_mm();
  } catch (const std::exception& e) {
    std::cerr << "dfa_project float64: " << e.what() << "\n";
  }
  (ok ? passed : failed) += 1;
  std::cout << passed << " passed, " << failed << " failed" << std::endl;
  return failed == 0 ? 0 : 1;
}
