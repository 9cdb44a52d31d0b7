// The importable `localgrad._C`. Importing it runs the TORCH_LIBRARY
// registrations linked into the same shared object; the module itself only
// reports how it was built.
#include <torch/extension.h>

#if defined(LOCALGRAD_CUDA_EMULATION)
#include "emulation/cuda_emulation.h"
#endif

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
#if defined(LOCALGRAD_CUDA_EMULATION)
  info["cuda"] = false;
  info["cuda_arch_list"] = "";
  info["cuda_emulation"] = true;
  info["sanitizer"] = localgrad::emulation::sanitizer();
#elif defined(LOCALGRAD_WITH_CUDA)
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

#if defined(LOCALGRAD_CUDA_EMULATION)
namespace emu = localgrad::emulation;

pybind11::dict device_model() {
  const emu::DeviceModel d = emu::device_model();
  pybind11::dict out;
  out["sm_count"] = d.sm_count;
  out["max_threads_per_block"] = d.max_threads_per_block;
  out["max_grid_dim"] = pybind11::make_tuple(d.max_grid_dim[0], d.max_grid_dim[1], d.max_grid_dim[2]);
  out["shared_per_block"] = d.shared_per_block;
  out["shared_per_block_optin"] = d.shared_per_block_optin;
  out["launcher_grid_cap"] = d.launcher_grid_cap;
  return out;
}

void set_device_model(const pybind11::dict& changes) {
  emu::DeviceModel d = emu::device_model();
  for (const auto& [key, value] : changes) {
    const std::string k = pybind11::cast<std::string>(key);
    if (k == "sm_count") {
      d.sm_count = pybind11::cast<int>(value);
    } else if (k == "max_threads_per_block") {
      d.max_threads_per_block = pybind11::cast<int>(value);
    } else if (k == "max_grid_dim") {
      const auto dims = pybind11::cast<std::vector<int64_t>>(value);
      TORCH_CHECK_VALUE(dims.size() == 3, "max_grid_dim must have 3 entries");
      for (int i = 0; i < 3; ++i) d.max_grid_dim[i] = dims[i];
    } else if (k == "shared_per_block") {
      d.shared_per_block = pybind11::cast<int>(value);
    } else if (k == "shared_per_block_optin") {
      d.shared_per_block_optin = pybind11::cast<int>(value);
    } else if (k == "launcher_grid_cap") {
      d.launcher_grid_cap = pybind11::cast<int64_t>(value);
    } else {
      TORCH_CHECK_VALUE(false, "set_device_model: unknown field ", k);
    }
  }
  emu::set_device_model(d);
}

pybind11::list launch_counts() {
  pybind11::list out;
  for (const auto& c : emu::launch_counts()) {
    pybind11::dict d;
    d["site"] = c.site;
    d["kernel"] = c.kernel;
    d["launches"] = c.launches;
    d["instantiations"] = c.instantiations;
    d["blocks"] = c.blocks;
    d["kernels"] = c.kernels;
    out.append(d);
  }
  return out;
}

int64_t get_last_error() { return static_cast<int64_t>(cudaPeekAtLastError()); }
#endif

}  // namespace

#if defined(LOCALGRAD_CUDA_EMULATION)
PYBIND11_MODULE(_C_emulated, m) {
  m.doc() = "localgrad's CUDA kernels on the host emulation; call them through torch.ops.localgrad_emulated";
  m.def("compiled_info", &compiled_info, "How this extension was built");
  m.def("device_model", &device_model, "The emulated device's limits");
  m.def("set_device_model", &set_device_model, "Changes some of the emulated device's limits");
  m.def("reset_device_model", &emu::reset_device_model, "Back to the default device (an H100)");
  m.def("launch_counts", &launch_counts, "Launches per launch site and kernel since the last reset");
  m.def("reset_launch_counts", &emu::reset_launch_counts, "Forgets the launch counts");
  m.def("peek_last_error", &get_last_error, "cudaPeekAtLastError() of the calling thread, as an int");
}
#else
PYBIND11_MODULE(_C, m) {
  m.doc() = "localgrad's compiled ops; call them through torch.ops.localgrad";
  m.def("compiled_info", &compiled_info,
        "How this extension was built: versions, backends and CUDA arch list");
}
#endif
