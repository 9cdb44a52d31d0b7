// The emulator behind cuda_emulation.h: device model, kernel records (static
// shared memory, the dynamic shared memory attribute), launch checks, the
// thread pool that runs a block's threads, barriers and warp exchanges.
#include "cuda_emulation.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <thread>

#include <dlfcn.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

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

const char* sanitizer() {
#if defined(LOCALGRAD_EMULATION_SANITIZER)
  return LOCALGRAD_EMULATION_SANITIZER;
#else
  return "";
#endif
}

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
    LaunchCount count{key.first, key.second, c.launches, static_cast<int64_t>(c.kernels.size()), c.blocks, {}};
    for (KernelId k : c.kernels) {
      Dl_info info{};
      const auto base = dladdr(k, &info) != 0 ? reinterpret_cast<uintptr_t>(info.dli_fbase) : 0;
      count.kernels.push_back(reinterpret_cast<uintptr_t>(k) - base);
    }
    out.push_back(std::move(count));
  }
  return out;
}

void reset_launch_counts() {
  std::lock_guard<std::mutex> lock(counts_mutex);
  counts().clear();
}

// --- barriers --------------------------------------------------------------

namespace {

// Waiting on a 32-bit atomic: the atomic carries the happens-before edges
// (ThreadSanitizer sees them), the futex only parks the thread, so a phase
// wakes its waiters without their queueing on a mutex.
void futex_wait(std::atomic<uint32_t>& word, uint32_t seen) {
  while (word.load(std::memory_order_acquire) == seen)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

// How a block's threads run. Threads: one OS thread per CUDA thread, all
// concurrent (what ThreadSanitizer needs; the sanitizer builds' default).
// Fibers: one user-level context per CUDA thread on the launching thread,
// switched at barriers, round-robin in thread order (the default otherwise:
// a barrier costs context switches in one process, not a wake-up of every OS
// thread, some 100x faster on a busy machine; a missing barrier shows
// deterministically). LOCALGRAD_EMULATION_THREADS=os|fibers chooses.
enum class Mode { Threads, Fibers };

Mode run_mode() {
  static const Mode mode = [] {
    const char* env = std::getenv("LOCALGRAD_EMULATION_THREADS");
    if (env != nullptr && std::string(env) == "os") return Mode::Threads;
    if (env != nullptr && std::string(env) == "fibers") return Mode::Fibers;
    if (env != nullptr && *env) fatal("LOCALGRAD_EMULATION_THREADS must be os or fibers");
#if defined(LOCALGRAD_EMULATION_SANITIZER)
    return Mode::Threads;
#else
    return Mode::Fibers;
#endif
  }();
  return mode;
}

// Fiber switch (x86-64 System V): saves the callee-saved registers, MXCSR
// and the x87 control word on the current stack, stores its stack pointer in
// *save, and resumes the stack `load` saved the same way. No system call
// (swapcontext makes one per switch for the signal mask).
extern "C" void localgrad_emulation_switch(void** save, void* load);
asm(R"(
.text
.globl localgrad_emulation_switch
.hidden localgrad_emulation_switch
.type localgrad_emulation_switch,@function
localgrad_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size localgrad_emulation_switch, .-localgrad_emulation_switch
)");

// The fibers of the block being run (fiber mode).
struct FiberBlock {
  enum State { Runnable, Waiting, Done };
  struct Fiber {
    void* sp = nullptr;
    ThreadContext thread;
    State state = Runnable;
  };
  void* scheduler_sp = nullptr;
  std::vector<Fiber> fibers;
  int current = -1;

  // Parks the running fiber until a barrier makes it runnable again.
  void park() {
    fibers[current].state = Waiting;
    localgrad_emulation_switch(&fibers[current].sp, scheduler_sp);
  }
};
thread_local FiberBlock* fiber_block = nullptr;

// A barrier over a block's (or a warp's) threads that shrinks as threads exit
// (exited threads no longer take part, as on the GPU), returning the count of
// true predicates of the phase it completes.
class Barrier {
 public:
  explicit Barrier(int expected) : expected_(expected) {}

  int arrive(int predicate) {
    if (fiber_block != nullptr) {
      count_ += predicate != 0;
      if (++arrived_ == expected_) {
        complete_fibers();
      } else {
        waiters_.push_back(fiber_block->current);
        fiber_block->park();
      }
      return result_;
    }
    uint32_t gen;
    {
      std::lock_guard<std::mutex> lock(m_);
      count_ += predicate != 0;
      gen = generation_.load(std::memory_order_relaxed);
      if (++arrived_ == expected_) {
        complete();
        return result_;
      }
    }
    futex_wait(generation_, gen);
    return result_;
  }

  void leave() {
    if (fiber_block != nullptr) {
      --expected_;
      if (arrived_ > 0 && arrived_ == expected_) complete_fibers();
      return;
    }
    std::lock_guard<std::mutex> lock(m_);
    --expected_;
    if (arrived_ > 0 && arrived_ == expected_) complete();
  }

  int total() const { return total_; }

 private:
  void complete_fibers() {
    result_ = count_;
    total_ = arrived_;
    count_ = 0;
    arrived_ = 0;
    for (int f : waiters_) fiber_block->fibers[f].state = FiberBlock::Runnable;
    waiters_.clear();
  }

  void complete() {  // under m_; result_ and total_ stay put until every waiter has read them
    result_ = count_;
    total_ = arrived_;
    count_ = 0;
    arrived_ = 0;
    generation_.fetch_add(1, std::memory_order_release);
    futex_wake_all(generation_);
  }

  std::mutex m_;
  int expected_, arrived_ = 0, count_ = 0, result_ = 0, total_ = 0;
  std::atomic<uint32_t> generation_{0};
  std::vector<int> waiters_;  // fiber mode
};

struct Warp {
  explicit Warp(int lanes) : barrier(lanes) {}
  Barrier barrier;
  unsigned present = 0;  // lanes of this warp in the block
  unsigned live = 0;     // lanes not yet exited (guarded by the block mutex)
  // Two sets of slots, used in turn: a lane writes the next shuffle's set
  // only after the barrier that every lane reaches after reading this one.
  alignas(8) unsigned char slots[2][32][8];
  int turn[32] = {};
};

}  // namespace

struct LaunchContext {
  KernelRecord* record = nullptr;
  unsigned char* dynamic = nullptr;
  std::unique_ptr<Barrier> block_barrier;  // new for every block
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

void syncthreads() { current_launch("__syncthreads").block_barrier->arrive(0); }

int syncthreads_or(int predicate) {
  return current_launch("__syncthreads_or").block_barrier->arrive(predicate) > 0;
}

int syncthreads_and(int predicate) {
  LaunchContext& l = current_launch("__syncthreads_and");
  const int n = l.block_barrier->arrive(predicate);
  return n == l.block_barrier->total();
}

int syncthreads_count(int predicate) { return current_launch("__syncthreads_count").block_barrier->arrive(predicate); }

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
  const int t = w.turn[lane];
  w.turn[lane] = t ^ 1;
  std::memcpy(w.slots[t][lane], value, bytes);
  w.barrier.arrive(0);  // every lane has written its value
  std::memcpy(out, w.slots[t][src_lane], bytes);
}

// --- the thread pool -------------------------------------------------------

namespace {

class Pool {
 public:
  // Runs body(launcher) on `n` threads with the given block context; returns
  // when all have finished. Each worker has its own start word, so only the
  // block's threads wake.
  void run_block(int n, const ThreadContext& block, BlockBody body, void* launcher) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.push_back(std::make_unique<Worker>());
      std::thread(&Pool::work, this, static_cast<int>(workers_.size()) - 1, workers_.back().get()).detach();
    }
    block_ = block;
    body_ = body;
    launcher_ = launcher;
    remaining_.store(static_cast<uint32_t>(n), std::memory_order_relaxed);
    ++generation_;
    for (int i = 0; i < n; ++i) {
      workers_[i]->go.store(generation_, std::memory_order_release);
      futex_wake_all(workers_[i]->go);
    }
    for (uint32_t r; (r = remaining_.load(std::memory_order_acquire)) != 0;) futex_wait(remaining_, r);
  }

 private:
  struct Worker {
    std::atomic<uint32_t> go{0};
  };

  void work(int index, Worker* me) {
    uint32_t seen = 0;
    for (;;) {
      futex_wait(me->go, seen);
      seen = me->go.load(std::memory_order_acquire);
      ThreadContext mine = block_;
      const BlockBody body = body_;
      void* const launcher = launcher_;
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
      l.block_barrier->leave();
      thread_context() = ThreadContext{};
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) futex_wake_all(remaining_);
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;  // only the launching thread grows it
  std::atomic<uint32_t> remaining_{0};
  uint32_t generation_ = 0;
  ThreadContext block_;
  BlockBody body_ = nullptr;
  void* launcher_ = nullptr;
};

// Runs a block as fibers on the calling thread (see Mode).
constexpr size_t kFiberStack = 256 * 1024;

struct FiberStacks {
  std::vector<std::unique_ptr<char[]>> stacks;
  char* get(size_t i) {
    while (stacks.size() <= i) stacks.emplace_back(new char[kFiberStack]);
    return stacks[i].get();
  }
};

struct FiberStart {
  BlockBody body;
  void* launcher;
};
thread_local FiberStart fiber_start;

void fiber_main() {
  FiberBlock& fb = *fiber_block;
  const int index = fb.current;
  try {
    fiber_start.body(fiber_start.launcher);
  } catch (const std::exception& e) {
    fatal(std::string("a kernel thread threw: ") + e.what());
  } catch (...) {
    fatal("a kernel thread threw");
  }
  LaunchContext& l = *fb.fibers[index].thread.launch;
  l.warps[index / 32]->live &= ~(1u << (index % 32));
  l.warps[index / 32]->barrier.leave();
  l.block_barrier->leave();
  fb.fibers[index].state = FiberBlock::Done;
  void* unused;
  localgrad_emulation_switch(&unused, fb.scheduler_sp);  // never resumed
  std::abort();
}

// A new fiber's stack, as localgrad_emulation_switch leaves one: the control
// words, six registers, then fiber_main as the return address (with the
// stack aligned as after a call).
void* initial_stack(char* base, size_t size) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;  // fiber_main's own return address: never used
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);
  for (int i = 0; i < 6; ++i) *--sp = 0;  // rbp, rbx, r12..r15
  uint32_t mxcsr;
  uint16_t fpu;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu));
  *--sp = (uint64_t(fpu) << 32) | mxcsr;
  return sp;
}

void run_fibers(int n, const ThreadContext& block, BlockBody body, void* launcher) {
  static thread_local FiberStacks stacks;
  FiberBlock fb;
  fb.fibers.resize(n);
  const unsigned bx = block.block_dim.x, by = block.block_dim.y;
  for (int i = 0; i < n; ++i) {
    auto& f = fb.fibers[i];
    f.thread = block;
    f.thread.linear_tid = i;
    f.thread.thread_idx = uint3{i % bx, (i / bx) % by, i / (bx * by)};
    f.sp = initial_stack(stacks.get(i), kFiberStack);
  }
  fiber_start = FiberStart{body, launcher};
  const ThreadContext saved = thread_context();
  fiber_block = &fb;
  for (;;) {
    bool ran = false, all_done = true;
    for (int i = 0; i < n; ++i) {
      if (fb.fibers[i].state == FiberBlock::Done) continue;
      all_done = false;
      if (fb.fibers[i].state != FiberBlock::Runnable) continue;
      ran = true;
      fb.current = i;
      thread_context() = fb.fibers[i].thread;
      localgrad_emulation_switch(&fb.scheduler_sp, fb.fibers[i].sp);
    }
    if (all_done) break;
    if (!ran) fatal("deadlock: threads wait at barriers that the others never reach (divergent __syncthreads?)");
  }
  fiber_block = nullptr;
  thread_context() = saved;
}

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
        context.block_barrier = std::make_unique<Barrier>(n);
        context.warps.clear();
        for (int w = 0; w < (n + 31) / 32; ++w) {
          const int lanes = std::min(32, n - 32 * w);
          auto warp = std::make_unique<Warp>(lanes);
          warp->present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
          warp->live = warp->present;
          context.warps.push_back(std::move(warp));
        }
        ctx.block_idx = uint3{x, y, z};
        if (run_mode() == Mode::Fibers) {
          run_fibers(n, ctx, body, launcher);
        } else {
          pool().run_block(n, ctx, body, launcher);
        }
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
