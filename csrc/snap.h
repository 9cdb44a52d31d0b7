// SnAp-n influence update (Menick et al. 2021) over a fixed pattern of kept
// entries e = (unit k, parameter row i), each holding all C columns of row i:
//   out[b,e,c] = (1-α) M[b,e,c]
//              + α φ'_k (Σ_{n in nbr(e)} W[nbr_weight[n]] M[b,nbr_entry[n],c] + δ_ki v[b,i,c])
// nbr(e) = nbr_ptr[e] .. nbr_ptr[e+1] (CSR), precomputed by the learner.
#pragma once

#include <cstdint>

namespace localgrad::snap {

struct StepParams {
  void* out = nullptr;               // (batch, E, C)
  const void* influence = nullptr;   // (batch, E, C)
  const void* weight = nullptr;      // (H, H), masked W_hh
  const void* x = nullptr;           // (batch, I)
  const void* h_prev = nullptr;      // (batch, H)
  const void* dphi = nullptr;        // (batch, H)
  const void* mask = nullptr;        // (H, H) or null
  const int64_t* entry_unit = nullptr;  // (E,) k of each entry
  const int64_t* entry_row = nullptr;   // (E,) i of each entry
  const int64_t* nbr_ptr = nullptr;     // (E + 1,)
  const int64_t* nbr_entry = nullptr;   // (nnz,)
  const int64_t* nbr_weight = nullptr;  // (nnz,) flat index k*H + l
  int64_t batch = 0;
  int64_t entries = 0;
  int64_t hidden = 0;
  int64_t input = 0;
  double alpha = 1.0;
};

}  // namespace localgrad::snap
