// CPU target propagation feedback training: the shared driver
// (target_prop_glue.cpp) runs the products with ATen's BLAS; the three
// elementwise/reduction passes here run over rows (or row chunks) with
// at::parallel_for.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../predictive_coding.h"  // LOCALGRAD_DISPATCH_PC_ACTIVATION
#include "../target_prop_glue.h"

namespace localgrad::target_prop {
namespace {

int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

void noisy_cpu(const NoisyParams& p, at::ScalarType dtype) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "target_prop_noisy", [&] {
    const auto* h = static_cast<const scalar_t*>(p.h);
    const auto* eps = static_cast<const scalar_t*>(p.eps);
    auto* x = static_cast<scalar_t*>(p.x);
    const int64_t n = p.width;
    at::parallel_for(0, p.rows, grain(n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* hr = h + (r % p.batch) * n;
        const scalar_t* er = eps + r * n;
        scalar_t* xr = x + r * n;
        for (int64_t j = 0; j < n; ++j) xr[j] = hr[j] + er[j];
      }
    });
  });
}

template <typename T, Activation kAct>
void gate_rows(const GateParams& p, int64_t begin, int64_t end) {
  const int64_t m = p.width;
  const T slope = static_cast<T>(p.slope);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t i = r % p.batch;
    T* a = static_cast<T*>(p.a) + r * m;
    const T* q = p.gate == nullptr ? nullptr : static_cast<const T*>(p.gate) + i * m;
    if (p.variant == Variant::Dtp) {
      for (int64_t c = 0; c < m; ++c) {
        const T f = forward_activation<kAct>(a[c], slope);
        a[c] = q == nullptr ? f : q[c] * f;
      }
      continue;
    }
    const T* h = static_cast<const T*>(p.h_out) + i * m;
    const T* eta = static_cast<const T*>(p.eta) + r * m;
    T* pr = static_cast<T*>(p.p) + r * m;
    for (int64_t c = 0; c < m; ++c) {
      const T d = forward_activation<kAct>(a[c], slope) - h[c];
      a[c] = q == nullptr ? d : q[c] * d;
      pr[c] = q == nullptr ? eta[c] : q[c] * eta[c];
    }
  }
}

void gate_cpu(const GateParams& p, at::ScalarType dtype) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "target_prop_gate", [&] {
    LOCALGRAD_DISPATCH_PC_ACTIVATION(p.kind, [&] {
      at::parallel_for(0, p.rows, grain(p.width),
                       [&](int64_t b, int64_t e) { gate_rows<scalar_t, kAct>(p, b, e); });
    });
  });
}

void reduce_cpu(const ReduceParams& p, at::ScalarType dtype) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "target_prop_reduce", [&] {
    const int64_t n = p.width;
    at::parallel_for(0, p.chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        auto* sums = static_cast<scalar_t*>(p.sums) + k * n;
        auto* squares = static_cast<scalar_t*>(p.squares) + k * n;
        std::fill(sums, sums + n, scalar_t(0));
        std::fill(squares, squares + n, scalar_t(0));
        const int64_t last = std::min(p.rows, (k + 1) * kReduceRows);
        for (int64_t r = k * kReduceRows; r < last; ++r) {
          auto* a = static_cast<scalar_t*>(p.a) + r * n;
          const auto* s = p.sub == nullptr ? nullptr : static_cast<const scalar_t*>(p.sub) + r * n;
          for (int64_t j = 0; j < n; ++j) {
            scalar_t v = a[j];
            if (s != nullptr) {
              v -= s[j];
              a[j] = v;
            }
            sums[j] += v;
            squares[j] += v * v;
          }
        }
      }
    });
  });
}

void feedback_grads_cpu(at::TensorList inputs, at::TensorList outputs, at::TensorList gates,
                        at::TensorList weights, at::TensorList biases, at::TensorList fb_weights,
                        at::TensorList fb_biases, at::TensorList noise_in, at::TensorList noise_out,
                        at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant,
                        at::TensorList grad_weights, at::TensorList grad_biases, const at::Tensor& loss) {
  Kernels backend;
  backend.noisy = noisy_cpu;
  backend.gate = gate_cpu;
  backend.reduce = reduce_cpu;
  feedback_grads_impl(inputs, outputs, gates, weights, biases, fb_weights, fb_biases, noise_in, noise_out,
                      kinds, slopes, variant, grad_weights, grad_biases, loss, backend);
}

}  // namespace
}  // namespace localgrad::target_prop

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("target_prop_feedback_grads", &localgrad::target_prop::feedback_grads_cpu);
}
