// The importable `localgrad._C`. Importing it runs the TORCH_LIBRARY
// registrations linked into the same shared object; the module itself only
// reports how it was built.
#include <torch/extension.h>

#ifndef LOCALGRAD_CUDA_ARCH_LIST
#define LOCALGRAD_CUDA_ARCH_LIST ""
#endif

#ifndef LOCALGRAD_VERSION
#define LOCALGRAD_VERSION "unknown"
#endif

namespace {

pybind11::dict compiled_info() {
  pybind11::dict info;
  info["version"] = LOCALGRAD_VERSION;
  info["torch_version"] = TORCH_VERSION;
#ifdef LOCALGRAD_WITH_CUDA
  info["cuda"] = true;
  info["cuda_arch_list"] = LOCALGRAD_CUDA_ARCH_LIST;
#else
  info["cuda"] = false;
  info["cuda_arch_list"] = "";
#endif
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "localgrad's compiled ops; call them through torch.ops.localgrad";
  m.def("compiled_info", &compiled_info,
        "How this extension was built: versions, backends and CUDA arch list");
}
