// A torch-free tag for the element types kernels are instantiated for, so the
// glue can name a dtype to a .cu file that never sees at::ScalarType.
#pragma once

namespace localgrad {

enum class ScalarKind { Float32, Float64, Float16, BFloat16 };

}  // namespace localgrad
