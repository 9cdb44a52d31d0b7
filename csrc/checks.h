// Argument checks shared by every op's glue. Each message starts with the op
// and names the argument, so a user can tell which of their tensors is wrong.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "scalar_kind.h"

namespace localgrad {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf ||
         t == at::kBFloat16;
}

inline ScalarKind scalar_kind(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return ScalarKind::Float64;
    case at::kHalf: return ScalarKind::Float16;
    case at::kBFloat16: return ScalarKind::BFloat16;
    default: return ScalarKind::Float32;
  }
}

inline void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(is_supported_float(t.scalar_type()), op, ": ", name,
                   " must be float32, float64, float16 or bfloat16, got ",
                   t.scalar_type());
}

// Kernels written for float32 and float64 only (no half types).
inline void check_real(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
                   " must be float32 or float64, got ", t.scalar_type());
}

// The name of element i of a list argument, for messages: "weights[2]".
inline std::string item(const char* list, size_t i) {
  return std::string(list) + "[" + std::to_string(i) + "]";
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op,
                      const char* name, const char* shape) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must be ", dim, "-D ",
                    shape, ", got shape ", t.sizes());
}

inline void check_same_dtype(const at::Tensor& t, const at::Tensor& ref,
                             const char* op, const char* name,
                             const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", name,
                   " must have the dtype of ", ref_name, " (",
                   ref.scalar_type(), "), got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref,
                              const char* op, const char* name,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name,
              " must be on the device of ", ref_name, " (", ref.device(),
              "), got ", t.device());
}

// Kernels address rows by a stride and columns densely; anything else is
// copied for inputs, and refused for outputs (a copy would not be written back).
inline at::Tensor rows_dense(const at::Tensor& t) {
  return (t.size(1) <= 1 || t.stride(1) == 1) ? t : t.contiguous();
}

inline void check_rows_dense(const at::Tensor& t, const char* op,
                             const char* name) {
  TORCH_CHECK_VALUE(t.size(1) <= 1 || t.stride(1) == 1, op, ": ", name,
                    " must have unit stride along its last dimension (an "
                    "output cannot be copied), got strides ", t.strides());
}

// An output written in place must not have elements that share memory (an
// expanded or overlapping view): PyTorch refuses such outputs too, because
// the threads writing one row race with those writing another.
// ATen only detects stride-0 overlap (has_internal_overlap says "too hard" for
// rows that overlap by a few elements), so a layout counts as free of overlap
// when, dimensions sorted by stride, each stride exceeds the span of the
// smaller ones: true of every dense, transposed or sliced view.
inline bool may_overlap_internally(const at::Tensor& t) {
  if (t.numel() <= 1) return false;
  if (at::has_internal_overlap(t) == at::MemOverlap::Yes) return true;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of dims with size > 1
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.size(d) > 1) dims.emplace_back(t.stride(d), t.size(d));
  std::sort(dims.begin(), dims.end());
  int64_t span = 0;  // largest offset reachable with the smaller strides
  for (const auto& [stride, size] : dims) {
    if (stride <= span) return true;
    span += stride * (size - 1);
  }
  return false;
}

inline void check_no_internal_overlap(const at::Tensor& t, const char* op,
                                      const char* name) {
  TORCH_CHECK_VALUE(!may_overlap_internally(t), op, ": ",
                    name, " is written in place but some of its elements share "
                    "memory (an expanded or overlapping view, strides ",
                    t.strides(), "); pass a tensor of its own (e.g. .clone())");
}

// A view as rows of contiguous bytes: `rows` rows of `width` bytes, `pitch`
// bytes apart, from byte `begin` of the storage. Column blocks of one buffer
// (split along dim 1), their transposes and 1-D slices have this form.
struct ByteRows {
  int64_t begin = 0, pitch = 0, rows = 1, width = 0;
};

inline bool as_byte_rows(const at::Tensor& t, ByteRows& r) {
  const int64_t item = static_cast<int64_t>(t.element_size());
  r.begin = t.storage_offset() * item;
  r.width = item;
  bool have_unit = false, have_pitch = false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) <= 1) continue;
    if (t.stride(d) == 1 && !have_unit) {
      have_unit = true;
      r.width = t.size(d) * item;
    } else if (t.stride(d) > 1 && !have_pitch) {
      have_pitch = true;
      r.rows = t.size(d);
      r.pitch = t.stride(d) * item;
    } else {
      return false;  // a third dimension, or an expanded one
    }
  }
  return true;
}

// Whether two tensors may share an element. ATen decides only when both are
// dense ("too hard" otherwise, even for disjoint column blocks of one buffer,
// and even for tensors of different storages), so within one storage the
// common row layouts are decided exactly here and anything else counts as
// shared when the byte ranges meet.
inline bool may_share_memory(const at::Tensor& a, const at::Tensor& b) {
  switch (at::get_overlap_status(a, b)) {
    case at::MemOverlapStatus::Full:
    case at::MemOverlapStatus::Partial: return true;
    case at::MemOverlapStatus::No: return false;
    default: break;
  }
  if (!a.has_storage() || !b.has_storage() || !a.is_alias_of(b)) return false;
  auto last_byte = [](const at::Tensor& t) {
    int64_t off = t.storage_offset();
    for (int64_t d = 0; d < t.dim(); ++d) off += (t.size(d) - 1) * t.stride(d);
    return (off + 1) * static_cast<int64_t>(t.element_size());
  };
  const int64_t a0 = a.storage_offset() * static_cast<int64_t>(a.element_size());
  const int64_t b0 = b.storage_offset() * static_cast<int64_t>(b.element_size());
  if (last_byte(a) <= b0 || last_byte(b) <= a0) return false;
  ByteRows ra, rb;
  if (!as_byte_rows(a, ra) || !as_byte_rows(b, rb)) return true;
  if (ra.rows > 1 && rb.rows > 1 && ra.pitch != rb.pitch) return true;
  const int64_t pitch = ra.rows > 1 ? ra.pitch : rb.pitch;
  if (ra.rows == 1 && rb.rows == 1) return true;  // two byte ranges that meet
  // Row i of a meets row j of b iff -width_b < d + (j - i) pitch < width_a,
  // with d = b.begin - a.begin and j - i between -(rows_a - 1) and rows_b - 1.
  const int64_t d = rb.begin - ra.begin;
  auto floor_div = [](int64_t n, int64_t m) { return n / m - (n % m != 0 && n < 0); };
  const int64_t k_lo = std::max(floor_div(-rb.width - d, pitch) + 1, 1 - ra.rows);
  const int64_t k_hi = std::min(-floor_div(-(ra.width - d), pitch) - 1, rb.rows - 1);
  return k_lo <= k_hi;
}

// `out` (written) and `other` (read or written) must not share memory: the
// kernels read inputs after writing outputs, in an order no caller can rely on.
inline void check_no_overlap(const at::Tensor& out, const char* out_name,
                             const at::Tensor& other, const char* other_name,
                             const char* op) {
  if (!out.defined() || !other.defined()) return;
  TORCH_CHECK_VALUE(!may_share_memory(out, other),
                    op, ": ", out_name, " (written) shares memory with ", other_name,
                    "; in-place use is not supported, pass a separate buffer for ",
                    out_name);
}

// A stack of layers (weights[i]: (n_{i+1}, n_i), biases[i]: (n_{i+1},)) on x
// (batch, n_0): every weight and bias checked against x and its neighbours.
// Returns the widths n_0..n_L.
inline std::vector<int64_t> check_layers(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                                         int64_t max_layers, const char* op) {
  TORCH_CHECK_VALUE(!weights.empty(), op, ": weights must hold at least one layer");
  TORCH_CHECK_VALUE(static_cast<int64_t>(weights.size()) <= max_layers, op,
                    ": at most ", max_layers, " layers, got ", weights.size());
  TORCH_CHECK_VALUE(biases.size() == weights.size(), op, ": biases must have one tensor per layer (",
                    weights.size(), "), got ", biases.size());
  std::vector<int64_t> widths{x.size(1)};
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::string wname = item("weights", i), bname = item("biases", i);
    const at::Tensor& w = weights[i];
    check_dim(w, 2, op, wname.c_str(), "(n_out, n_in)");
    check_same_dtype(w, x, op, wname.c_str(), "x");
    check_same_device(w, x, op, wname.c_str(), "x");
    TORCH_CHECK_VALUE(w.size(1) == widths.back(), op, ": ", wname, " must have ", widths.back(),
                      " columns (the width of layer ", i, "), got shape ", w.sizes());
    TORCH_CHECK_VALUE(w.size(0) > 0, op, ": ", wname, " has no rows: every layer needs a unit");
    const at::Tensor& b = biases[i];
    check_dim(b, 1, op, bname.c_str(), "(n_out,)");
    check_same_dtype(b, x, op, bname.c_str(), "x");
    check_same_device(b, x, op, bname.c_str(), "x");
    TORCH_CHECK_VALUE(b.size(0) == w.size(0), op, ": ", bname, " must have ", w.size(0),
                      " entries (the rows of ", wname, "), got ", b.size(0));
    widths.push_back(w.size(0));
  }
  return widths;
}

// localgrad's ops are outside autograd: they read tensors that require grad
// (their data is what it is; nothing is recorded), but writing in place into
// one would silently bypass autograd, so outputs that require grad are refused.
inline void check_output_no_grad(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(!t.requires_grad(), op, ": ", name,
                    " requires grad, but localgrad's ops write it in place outside "
                    "autograd; pass ", name, ".detach() (or a buffer that does not "
                    "require grad)");
}

inline void check_finite(double value, const char* op, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value), op, ": ", name, " must be finite, got ", value);
}

// Every written tensor: no internal overlap, no grad, and no memory shared
// with any other argument. `tensors` holds all of the call's tensors, `names`
// their names, `written[i]` whether tensor i is an output.
inline void check_outputs(const std::vector<at::Tensor>& tensors,
                          const std::vector<std::string>& names,
                          const std::vector<bool>& written, const char* op) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!written[i] || !tensors[i].defined()) continue;
    check_no_internal_overlap(tensors[i], op, names[i].c_str());
    check_output_no_grad(tensors[i], op, names[i].c_str());
    for (size_t j = 0; j < tensors.size(); ++j) {
      if (j == i) continue;
      check_no_overlap(tensors[i], names[i].c_str(), tensors[j], names[j].c_str(), op);
    }
  }
}

// Collects a call's tensors with their names and roles for check_outputs.
struct TensorRoles {
  std::vector<at::Tensor> tensors;
  std::vector<std::string> names;
  std::vector<bool> written;
  void input(const at::Tensor& t, std::string name) { add(t, std::move(name), false); }
  void output(const at::Tensor& t, std::string name) { add(t, std::move(name), true); }
  void check(const char* op) const { check_outputs(tensors, names, written, op); }

 private:
  void add(const at::Tensor& t, std::string name, bool w) {
    if (!t.defined() || t.numel() == 0) return;  // nothing to write or to alias
    tensors.push_back(t);
    names.push_back(std::move(name));
    written.push_back(w);
  }
};

}  // namespace localgrad
