// The emulator behind cuda_emulation.h: device model, kernel records (static
// shared memory, the dynamic shared memory attribute), launch checks, the
// thread pool that runs a block's threads, barriers and warp exchanges.
#include "cuda_emulation.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <thread>

namespace localgrad::emulation {

// --- errors ----------------------------------------------------------------

namespace {
thread_local cudaError_t last_error = cudaSuccess;

cudaError_t fail(cudaError_t e) {
  last_error = e;
  return e;
}
}  // namespace

void fatal(const std::string& message) {
  std::fprintf(stderr, "localgrad CUDA emulation: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

// --- device model ----------------------------------------------------------

namespace {
std::mutex model_mutex;
DeviceModel model;
}  // namespace

DeviceModel device_model() {
  std::lock_guard<std::mutex> lock(model_mutex);
  return model;
}

void set_device_model(const DeviceModel& m) {
  std::lock_guard<std::mutex> lock(model_mutex);
  model = m;
}

void reset_device_model() { set_device_model(DeviceModel{}); }

// --- kernel records --------------------------------------------------------

struct KernelRecord {
  KernelId id = nullptr;
  std::vector<std::pair<const void*, size_t>> statics;  // address, bytes
  size_t static_bytes = 0;
  int max_dynamic = -1;  // cudaFuncAttributeMaxDynamicSharedMemorySize; -1: default
};

namespace {
std::mutex registry_mutex;
std::map<KernelId, std::unique_ptr<KernelRecord>>& registry() {
  static auto* r = new std::map<KernelId, std::unique_ptr<KernelRecord>>();
  return *r;
}
thread_local KernelRecord* probing_record = nullptr;

// The static segment as ptxas reports it: padded to 16 bytes, so that the
// dynamic segment that follows starts aligned (a 1-byte flag costs 16).
size_t padded(size_t bytes) { return (bytes + 15) / 16 * 16; }
}  // namespace

ThreadContext& thread_context() {
  thread_local ThreadContext context;
  return context;
}

KernelRecord& kernel_record(KernelId id, void (*probe)(KernelId)) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto& slot = registry()[id];
  if (!slot) {
    slot = std::make_unique<KernelRecord>();
    slot->id = id;
    probing_record = slot.get();
    probe(id);
    probing_record = nullptr;
    size_t total = 0;
    for (const auto& s : slot->statics) total += s.second;
    slot->static_bytes = padded(total);
  }
  return *slot;
}

size_t static_shared_bytes(KernelRecord& record) { return record.static_bytes; }

int max_dynamic_shared(KernelRecord& record) {
  if (record.max_dynamic >= 0) return record.max_dynamic;
  return std::max(0, device_model().shared_per_block - static_cast<int>(record.static_bytes));
}

cudaError_t set_max_dynamic_shared(KernelRecord& record, int bytes) {
  const DeviceModel m = device_model();
  if (bytes < 0 || static_cast<size_t>(bytes) + record.static_bytes > static_cast<size_t>(m.shared_per_block_optin))
    return fail(cudaErrorInvalidValue);
  record.max_dynamic = bytes;
  return cudaSuccess;
}

// --- launch counts ---------------------------------------------------------

namespace {
struct SiteCount {
  int64_t launches = 0;
  int64_t blocks = 0;
  std::set<KernelId> kernels;
};
std::mutex counts_mutex;
std::map<std::pair<std::string, std::string>, SiteCount>& counts() {
  static auto* c = new std::map<std::pair<std::string, std::string>, SiteCount>();
  return *c;
}
}  // namespace

std::vector<LaunchCount> launch_counts() {
  std::lock_guard<std::mutex> lock(counts_mutex);
  std::vector<LaunchCount> out;
  for (const auto& [key, c] : counts()) {
    out.push_back({key.first, key.second, c.launches, static_cast<int64_t>(c.kernels.size()), c.blocks});
  }
  return out;
}

void reset_launch_counts() {
  std::lock_guard<std::mutex> lock(counts_mutex);
  counts().clear();
}

// --- barriers --------------------------------------------------------------

namespace {

// A reusable barrier over a set of threads that may shrink as threads exit
// (exited threads no longer take part, as on the GPU). Returns the OR, AND
// and count of the predicates of the generation it completes.
class Barrier {
 public:
  void reset(int expected) {
    std::lock_guard<std::mutex> lock(m_);
    expected_ = expected;
    arrived_ = 0;
    count_ = 0;
  }

  int arrive(int predicate) {
    std::unique_lock<std::mutex> lock(m_);
    count_ += predicate != 0;
    const uint64_t gen = generation_;
    if (++arrived_ == expected_) {
      complete();
      return result_;
    }
    cv_.wait(lock, [&] { return generation_ != gen; });
    return result_;
  }

  void leave() {
    std::lock_guard<std::mutex> lock(m_);
    --expected_;
    if (arrived_ > 0 && arrived_ == expected_) complete();
  }

  int total() const { return total_; }
  int expected() {
    std::lock_guard<std::mutex> lock(m_);
    return expected_;
  }

 private:
  void complete() {
    result_ = count_;
    total_ = arrived_;
    count_ = 0;
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  }

  std::mutex m_;
  std::condition_variable cv_;
  int expected_ = 0, arrived_ = 0, count_ = 0, result_ = 0, total_ = 0;
  uint64_t generation_ = 0;
};

struct Warp {
  Barrier barrier;
  unsigned present = 0;  // lanes of this warp in the block
  unsigned live = 0;     // lanes not yet exited (guarded by the block mutex)
  alignas(8) unsigned char slots[32][8];
};

}  // namespace

struct LaunchContext {
  KernelRecord* record = nullptr;
  unsigned char* dynamic = nullptr;
  Barrier block_barrier;
  std::mutex warp_mutex;
  std::vector<std::unique_ptr<Warp>> warps;
};

void static_shared(const void* address, size_t bytes) {
  ThreadContext& c = thread_context();
  if (c.probing) {
    KernelRecord* r = probing_record;
    if (r == nullptr) return;
    for (const auto& s : r->statics)
      if (s.first == address) return;
    r->statics.emplace_back(address, bytes);
    return;
  }
  if (c.launch == nullptr) fatal("LOCALGRAD_SHARED used outside a kernel");
  for (const auto& s : c.launch->record->statics)
    if (s.first == address) return;
  fatal("a LOCALGRAD_SHARED declaration comes after the kernel's first read of threadIdx, blockIdx, "
        "blockDim or gridDim; declare static shared memory at the top of the kernel");
}

unsigned char* dynamic_shared() {
  ThreadContext& c = thread_context();
  if (c.probing) {
    alignas(16) static unsigned char dummy[16];
    return dummy;
  }
  if (c.launch == nullptr) fatal("LOCALGRAD_DYNAMIC_SHARED used outside a kernel");
  return c.launch->dynamic;
}

namespace {
LaunchContext& current_launch(const char* what) {
  ThreadContext& c = thread_context();
  if (c.launch == nullptr) fatal(std::string(what) + " called outside a kernel");
  return *c.launch;
}
}  // namespace

void syncthreads() { current_launch("__syncthreads").block_barrier.arrive(0); }

int syncthreads_or(int predicate) {
  return current_launch("__syncthreads_or").block_barrier.arrive(predicate) > 0;
}

int syncthreads_and(int predicate) {
  LaunchContext& l = current_launch("__syncthreads_and");
  const int n = l.block_barrier.arrive(predicate);
  return n == l.block_barrier.total();
}

int syncthreads_count(int predicate) { return current_launch("__syncthreads_count").block_barrier.arrive(predicate); }

void warp_exchange(unsigned mask, const void* value, size_t bytes, int src_lane, void* out) {
  LaunchContext& l = current_launch("a warp shuffle");
  const ThreadContext& c = thread_context();
  const int lane = c.linear_tid % 32;
  Warp& w = *l.warps[c.linear_tid / 32];
  {
    std::lock_guard<std::mutex> lock(l.warp_mutex);
    if (!(mask >> lane & 1u)) fatal("a warp shuffle whose mask leaves out the calling lane");
    if (mask != w.present)
      fatal("a warp shuffle whose mask is not the warp's full set of lanes (partial masks are not emulated)");
    if ((w.live & mask) != mask) fatal("a warp shuffle waits for a lane that has exited");
  }
  std::memcpy(w.slots[lane], value, bytes);
  w.barrier.arrive(0);  // every lane has written its value
  std::memcpy(out, w.slots[src_lane], bytes);
  w.barrier.arrive(0);  // every lane has read before the slots are reused
}

// --- the thread pool -------------------------------------------------------

namespace {

class Pool {
 public:
  // Runs body(launcher) on `n` threads with the given block context; returns
  // when all have finished.
  void run_block(int n, const ThreadContext& block, BlockBody body, void* launcher) {
    std::unique_lock<std::mutex> lock(m_);
    while (static_cast<int>(workers_) < n) {
      std::thread(&Pool::work, this, static_cast<int>(workers_)).detach();
      ++workers_;
    }
    active_ = n;
    remaining_ = n;
    block_ = block;
    body_ = body;
    launcher_ = launcher;
    ++generation_;
    start_.notify_all();
    done_.wait(lock, [&] { return remaining_ == 0; });
  }

 private:
  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      ThreadContext mine;
      BlockBody body;
      void* launcher;
      {
        std::unique_lock<std::mutex> lock(m_);
        start_.wait(lock, [&] { return generation_ != seen && index < active_; });
        seen = generation_;
        mine = block_;
        body = body_;
        launcher = launcher_;
      }
      const unsigned bx = mine.block_dim.x, by = mine.block_dim.y;
      mine.linear_tid = index;
      mine.thread_idx = uint3{index % bx, (index / bx) % by, index / (bx * by)};
      thread_context() = mine;
      try {
        body(launcher);
      } catch (const std::exception& e) {
        fatal(std::string("a kernel thread threw: ") + e.what());
      } catch (...) {
        fatal("a kernel thread threw");
      }
      LaunchContext& l = *mine.launch;
      {
        std::lock_guard<std::mutex> lock(l.warp_mutex);
        l.warps[index / 32]->live &= ~(1u << (index % 32));
      }
      l.warps[index / 32]->barrier.leave();
      l.block_barrier.leave();
      thread_context() = ThreadContext{};
      std::lock_guard<std::mutex> lock(m_);
      if (--remaining_ == 0) done_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable start_, done_;
  size_t workers_ = 0;
  int active_ = 0, remaining_ = 0;
  uint64_t generation_ = 0;
  ThreadContext block_;
  BlockBody body_ = nullptr;
  void* launcher_ = nullptr;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: its threads outlive main
  return *p;
}

std::mutex launch_mutex;

}  // namespace

cudaError_t launch(KernelRecord& record, const char* site, const char* kernel, dim3 grid, dim3 block,
                   size_t dynamic_bytes, BlockBody body, void* launcher) {
  std::lock_guard<std::mutex> serial(launch_mutex);
  const DeviceModel m = device_model();
  const int64_t threads = int64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || threads > m.max_threads_per_block ||
      block.x > unsigned(m.max_block_dim[0]) || block.y > unsigned(m.max_block_dim[1]) ||
      block.z > unsigned(m.max_block_dim[2]))
    return fail(cudaErrorInvalidConfiguration);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > m.max_grid_dim[0] || grid.y > m.max_grid_dim[1] ||
      grid.z > m.max_grid_dim[2])
    return fail(cudaErrorInvalidConfiguration);
  if (dynamic_bytes > static_cast<size_t>(max_dynamic_shared(record)) ||
      dynamic_bytes + record.static_bytes > static_cast<size_t>(m.shared_per_block_optin))
    return fail(cudaErrorInvalidValue);

  const int64_t n_blocks = int64_t(grid.x) * grid.y * grid.z;
  {
    std::lock_guard<std::mutex> lock(counts_mutex);
    std::string where = site;  // from csrc/ on, however the file was reached
    const size_t at = where.rfind("csrc/");
    if (at != std::string::npos) where = where.substr(at);
    SiteCount& c = counts()[{where, kernel}];
    ++c.launches;
    c.blocks += n_blocks;
    c.kernels.insert(record.id);
  }

  // Exactly the launch's bytes, so that AddressSanitizer sees an overrun.
  const size_t alloc = std::max<size_t>(dynamic_bytes, 1);
  auto* dynamic = static_cast<unsigned char*>(::operator new(alloc, std::align_val_t(16)));
  LaunchContext context;
  context.record = &record;
  context.dynamic = dynamic;
  const int n = static_cast<int>(threads);
  for (int w = 0; w < (n + 31) / 32; ++w) context.warps.push_back(std::make_unique<Warp>());

  ThreadContext ctx;
  ctx.block_dim = block;
  ctx.grid_dim = grid;
  ctx.launch = &context;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        // Shared memory starts as garbage on the GPU: all-ones bytes (NaN
        // for floating point) make a read before any write show.
        std::memset(dynamic, 0xff, alloc);
        for (const auto& s : record.statics) std::memset(const_cast<void*>(s.first), 0xff, s.second);
        context.block_barrier.reset(n);
        for (int w = 0; w < (n + 31) / 32; ++w) {
          Warp& warp = *context.warps[w];
          const int lanes = std::min(32, n - 32 * w);
          warp.present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
          warp.live = warp.present;
          warp.barrier.reset(lanes);
        }
        ctx.block_idx = uint3{x, y, z};
        pool().run_block(n, ctx, body, launcher);
      }
    }
  }
  ::operator delete(dynamic, std::align_val_t(16));
  return cudaSuccess;
}

}  // namespace localgrad::emulation

// --- runtime API -----------------------------------------------------------

using localgrad::emulation::device_model;
using localgrad::emulation::last_error;

cudaError_t cudaGetLastError() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
  }
  return "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
  }
  return "cudaErrorUnknown";
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return localgrad::emulation::fail(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return localgrad::emulation::fail(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return localgrad::emulation::fail(cudaErrorInvalidValue);
  if (device != 0) return localgrad::emulation::fail(cudaErrorInvalidDevice);
  const auto m = device_model();
  auto clamp = [](int64_t v) { return static_cast<int>(std::min<int64_t>(v, 2147483647)); };
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = m.max_threads_per_block; break;
    case cudaDevAttrMaxBlockDimX: *value = m.max_block_dim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = m.max_block_dim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = m.max_block_dim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = clamp(m.max_grid_dim[0]); break;
    case cudaDevAttrMaxGridDimY: *value = clamp(m.max_grid_dim[1]); break;
    case cudaDevAttrMaxGridDimZ: *value = clamp(m.max_grid_dim[2]); break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = m.shared_per_block; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = m.sm_count; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = m.shared_per_block_optin; break;
    default: return localgrad::emulation::fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
