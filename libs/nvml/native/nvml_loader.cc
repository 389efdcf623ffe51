#include "nvml_loader.h"

#include <dlfcn.h>

#include <climits>
#include <cstring>
#include <mutex>
#include <shared_mutex>

namespace nvml {
namespace {

typedef struct nvmlDevice_st* nvmlDevice_t;

// x86_64 layouts from NVML's header (see libs/nvml reference notes).
struct nvmlUtilization_t { unsigned gpu, memory; };
struct nvmlMemory_t { unsigned long long total, free, used; };
struct nvmlMemory_v2_t { unsigned version; unsigned long long total, reserved, free, used; };
struct nvmlProcessInfo_v1_t { unsigned pid; unsigned long long usedGpuMemory; };
struct nvmlProcessInfo_t { unsigned pid; unsigned long long usedGpuMemory; unsigned gpuInstanceId, computeInstanceId; };
struct nvmlPciInfo_t {
  char busIdLegacy[16];
  unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
};
static_assert(sizeof(nvmlUtilization_t) == 8, "nvmlUtilization_t");
static_assert(sizeof(nvmlMemory_t) == 24, "nvmlMemory_t");
static_assert(sizeof(nvmlMemory_v2_t) == 40, "nvmlMemory_v2_t");
static_assert(sizeof(nvmlProcessInfo_v1_t) == 16, "nvmlProcessInfo_v1_t");
static_assert(sizeof(nvmlProcessInfo_t) == 24, "nvmlProcessInfo_t");
static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t");

constexpr unsigned kMemoryV2Version = 0x02000028;  // sizeof | 2 << 24, not plain 2
constexpr unsigned long long kValueNotAvailable = ULLONG_MAX;
constexpr unsigned kSystemStringLen = 80;
constexpr unsigned kDeviceStringLen = 96;
// Drivers 535.43–535.86 wrote 32-byte process entries through _v3: size each slot for that.
constexpr size_t kProcessSlotBytes = 32;

using FnVoid = int (*)();
using FnStr = int (*)(char*, unsigned);
using FnCount = int (*)(unsigned*);
using FnHandle = int (*)(unsigned, nvmlDevice_t*);
using FnDevStr = int (*)(nvmlDevice_t, char*, unsigned);
using FnPci = int (*)(nvmlDevice_t, nvmlPciInfo_t*);
using FnUtil = int (*)(nvmlDevice_t, nvmlUtilization_t*);
using FnMem = int (*)(nvmlDevice_t, nvmlMemory_t*);
using FnMem2 = int (*)(nvmlDevice_t, nvmlMemory_v2_t*);
using FnTemp = int (*)(nvmlDevice_t, int, unsigned*);
using FnUint = int (*)(nvmlDevice_t, unsigned*);
using FnClock = int (*)(nvmlDevice_t, int, unsigned*);
using FnProcs = int (*)(nvmlDevice_t, unsigned*, void*);
using FnErrStr = const char* (*)(int);

struct Symbols {
  FnVoid init = nullptr, shutdown = nullptr;
  const char *initName = "", *countName = "", *handleName = "", *procsName = "";
  FnErrStr errorString = nullptr;
  FnStr driverVersion = nullptr, nvmlVersion = nullptr;
  FnCount count = nullptr;
  FnHandle handle = nullptr;
  FnDevStr name = nullptr, uuid = nullptr;
  FnPci pci = nullptr;
  FnUtil util = nullptr;
  FnMem mem = nullptr;
  FnMem2 mem2 = nullptr;
  FnTemp temp = nullptr;
  FnUint power = nullptr, powerLimit = nullptr, fan = nullptr;
  FnClock clock = nullptr;
  FnProcs procs = nullptr;
  size_t procStride = sizeof(nvmlProcessInfo_t);
};

std::shared_mutex g_lock;  // exclusive for init/shutdown/reset, shared for reads
void* g_handle = nullptr;
Symbols g_sym;
int g_refCount = 0;
std::string g_path;

template <typename F>
F Find(const char* name) {
  return reinterpret_cast<F>(dlsym(g_handle, name));
}

// Newest name first; records which one was found.
template <typename F>
F FindFirst(std::initializer_list<const char*> names, const char** found) {
  for (const char* n : names) {
    if (F f = Find<F>(n)) {
      if (found) *found = n;
      return f;
    }
  }
  return nullptr;
}

void Unload() {
  if (g_handle) dlclose(g_handle);
  g_handle = nullptr;
  g_sym = Symbols();
  g_path.clear();
}

Status Fail(int code, const std::string& fn, const std::string& message) {
  Status s;
  s.code = code;
  s.function = fn;
  s.message = message;
  return s;
}

Status FromNvml(int code, const char* fn) {
  return Fail(code, fn, std::string(fn) + " failed: " + ErrorString(code));
}

Status Load(const std::string& requested) {
  const std::string path = requested.empty() ? "libnvidia-ml.so.1" : requested;
  dlerror();
  g_handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_GLOBAL);
  if (!g_handle) {
    const char* why = dlerror();
    return Fail(kLibraryNotFound, "dlopen",
                "NVML Shared Library Not Found (" + (why ? std::string(why) : path) + ")");
  }
  Symbols s;
  s.init = FindFirst<FnVoid>({"nvmlInit_v2", "nvmlInit"}, &s.initName);
  s.shutdown = Find<FnVoid>("nvmlShutdown");
  s.count = FindFirst<FnCount>({"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"}, &s.countName);
  s.handle = FindFirst<FnHandle>({"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"}, &s.handleName);
  const char* missing = !s.init ? "nvmlInit_v2"
                        : !s.shutdown ? "nvmlShutdown"
                        : !s.count ? "nvmlDeviceGetCount_v2"
                        : !s.handle ? "nvmlDeviceGetHandleByIndex_v2"
                                    : nullptr;
  if (missing) {
    Unload();
    return Fail(kFunctionNotFound, missing, std::string("Function Not Found: ") + missing + " in " + path);
  }
  // Everything else is optional: a missing symbol leaves its readings absent.
  s.errorString = Find<FnErrStr>("nvmlErrorString");
  s.driverVersion = Find<FnStr>("nvmlSystemGetDriverVersion");
  s.nvmlVersion = Find<FnStr>("nvmlSystemGetNVMLVersion");
  s.name = Find<FnDevStr>("nvmlDeviceGetName");
  s.uuid = Find<FnDevStr>("nvmlDeviceGetUUID");
  s.pci = Find<FnPci>("nvmlDeviceGetPciInfo_v3");
  s.util = Find<FnUtil>("nvmlDeviceGetUtilizationRates");
  s.mem = Find<FnMem>("nvmlDeviceGetMemoryInfo");
  s.mem2 = Find<FnMem2>("nvmlDeviceGetMemoryInfo_v2");
  s.temp = Find<FnTemp>("nvmlDeviceGetTemperature");
  s.power = Find<FnUint>("nvmlDeviceGetPowerUsage");
  s.powerLimit = Find<FnUint>("nvmlDeviceGetEnforcedPowerLimit");
  s.fan = Find<FnUint>("nvmlDeviceGetFanSpeed");
  s.clock = Find<FnClock>("nvmlDeviceGetClockInfo");
  s.procs = FindFirst<FnProcs>({"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"},
                               &s.procsName);
  if (!s.procs) {
    s.procs = Find<FnProcs>("nvmlDeviceGetComputeRunningProcesses");
    s.procsName = "nvmlDeviceGetComputeRunningProcesses";
    s.procStride = sizeof(nvmlProcessInfo_v1_t);
  }
  g_sym = s;
  g_path = path;
  return Status();
}

bool IsLibraryWide(int code) {
  return code == kUninitialized || code == kDriverNotLoaded || code == kLibraryNotFound ||
         code == kFunctionNotFound || code == kLibRmVersionMismatch;
}

// Thrown inside Read to abandon the whole snapshot on a library-wide failure.
struct Abort {
  Status status;
};

// Per-metric outcome: true = value valid. NOT_SUPPORTED leaves the field absent; a library-wide
// code aborts the read; anything else is recorded as the device's (first) error.
bool Check(int rc, const char* fn, DeviceReading& d) {
  if (rc == kSuccess) return true;
  if (rc == kNotSupported) return false;
  if (IsLibraryWide(rc)) throw Abort{FromNvml(rc, fn)};
  if (d.error.ok()) d.error = FromNvml(rc, fn);
  return false;
}

void ReadProcesses(nvmlDevice_t dev, DeviceReading& d) {
  unsigned count = 0;
  int rc = g_sym.procs(dev, &count, nullptr);
  if (rc == kSuccess) return;  // no processes
  std::vector<unsigned char> buf;
  for (int attempt = 0; attempt < 4 && rc == kInsufficientSize; attempt++) {
    // Processes come and go between the two calls: leave headroom.
    unsigned capacity = count * 2 + 8;
    buf.assign(static_cast<size_t>(capacity) * kProcessSlotBytes, 0);
    count = capacity;
    rc = g_sym.procs(dev, &count, buf.data());
  }
  if (!Check(rc, g_sym.procsName, d)) return;
  for (unsigned i = 0; i < count; i++) {
    const unsigned char* entry = buf.data() + i * g_sym.procStride;
    ProcessReading p;
    std::memcpy(&p.pid, entry, sizeof(unsigned));
    unsigned long long used;
    std::memcpy(&used, entry + 8, sizeof used);
    if (used != kValueNotAvailable) p.usedMemoryBytes = used;
    d.processes.push_back(p);
  }
}

void ReadDevice(unsigned index, DeviceReading& d) {
  d.index = index;
  nvmlDevice_t dev = nullptr;
  if (!Check(g_sym.handle(index, &dev), g_sym.handleName, d)) {
    // NO_PERMISSION for a counted device in a restricted container, or GPU lost: report and skip.
    if (d.error.ok()) d.error = Fail(kNotSupported, g_sym.handleName, "device handle not available");
    return;
  }
  char buf[kDeviceStringLen];
  if (g_sym.name && Check(g_sym.name(dev, buf, sizeof buf), "nvmlDeviceGetName", d)) d.name = buf;
  if (g_sym.uuid && Check(g_sym.uuid(dev, buf, sizeof buf), "nvmlDeviceGetUUID", d)) d.uuid = buf;
  if (g_sym.pci) {
    nvmlPciInfo_t pci;
    std::memset(&pci, 0, sizeof pci);
    if (Check(g_sym.pci(dev, &pci), "nvmlDeviceGetPciInfo_v3", d)) {
      pci.busId[sizeof pci.busId - 1] = 0;
      d.pciBusId = pci.busId;
    }
  }
  if (g_sym.util) {
    nvmlUtilization_t u{};
    if (Check(g_sym.util(dev, &u), "nvmlDeviceGetUtilizationRates", d)) {
      d.utilizationGpu = u.gpu;
      d.utilizationMemory = u.memory;
    }
  }
  bool memDone = false;
  if (g_sym.mem2) {
    nvmlMemory_v2_t m{};
    m.version = kMemoryV2Version;
    int rc = g_sym.mem2(dev, &m);
    // An older driver may export _v2 but refuse our struct version: fall back to v1 quietly.
    if (rc != kArgumentVersionMismatch && rc != kFunctionNotFound) {
      memDone = true;
      if (Check(rc, "nvmlDeviceGetMemoryInfo_v2", d)) {
        d.memoryTotalBytes = m.total;
        d.memoryReservedBytes = m.reserved;
        d.memoryFreeBytes = m.free;
        d.memoryUsedBytes = m.used;
      }
    }
  }
  if (!memDone && g_sym.mem) {
    nvmlMemory_t m{};
    if (Check(g_sym.mem(dev, &m), "nvmlDeviceGetMemoryInfo", d)) {
      d.memoryTotalBytes = m.total;
      d.memoryFreeBytes = m.free;
      d.memoryUsedBytes = m.used;  // v1 counts reserved memory as used
    }
  }
  unsigned v = 0;
  if (g_sym.temp && Check(g_sym.temp(dev, 0, &v), "nvmlDeviceGetTemperature", d)) d.temperatureC = v;
  if (g_sym.power && Check(g_sym.power(dev, &v), "nvmlDeviceGetPowerUsage", d)) d.powerUsageMw = v;
  if (g_sym.powerLimit && Check(g_sym.powerLimit(dev, &v), "nvmlDeviceGetEnforcedPowerLimit", d)) d.powerLimitMw = v;
  if (g_sym.fan && Check(g_sym.fan(dev, &v), "nvmlDeviceGetFanSpeed", d)) d.fanSpeedPercent = v;
  if (g_sym.clock && Check(g_sym.clock(dev, 1, &v), "nvmlDeviceGetClockInfo", d)) d.smClockMhz = v;
  if (g_sym.clock && Check(g_sym.clock(dev, 2, &v), "nvmlDeviceGetClockInfo", d)) d.memClockMhz = v;
  if (g_sym.procs) ReadProcesses(dev, d);
}

Status ReadSystemString(FnStr fn, const char* name, std::optional<std::string>* out) {
  if (!fn) return Status();
  char buf[kSystemStringLen];
  int rc = fn(buf, sizeof buf);
  if (rc == kSuccess) {
    buf[sizeof buf - 1] = 0;
    *out = buf;
  } else if (IsLibraryWide(rc)) {
    return FromNvml(rc, name);
  }
  return Status();
}

}  // namespace

std::string ErrorString(int code) {
  // Our loader's own failures, worded like NVIDIA's Python binding.
  if (code == kLibraryNotFound) return "NVML Shared Library Not Found";
  if (code == kFunctionNotFound) return "Function Not Found";
  if (g_sym.errorString) {
    const char* s = g_sym.errorString(code);
    if (s) return s;
  }
  // Without nvmlErrorString: the number; errors.ts names it (NVML_ERROR_*) on the JS side.
  return "nvmlReturn_t " + std::to_string(code);
}

Status Init(const std::string& libraryPath, LibraryState* after) {
  std::unique_lock<std::shared_mutex> lock(g_lock);
  Status st;
  if (g_refCount == 0) {
    if (g_handle) Unload();
    st = Load(libraryPath);
    if (st.ok()) {
      int rc = g_sym.init();
      if (rc != kSuccess) {
        st = FromNvml(rc, g_sym.initName);
        Unload();
      }
    }
    if (st.ok()) g_refCount = 1;
  } else {
    g_refCount++;  // one NVML init serves every user of this process
  }
  if (after) *after = LibraryState{g_handle != nullptr, g_refCount, g_path};
  return st;
}

Status Shutdown(LibraryState* after) {
  std::unique_lock<std::shared_mutex> lock(g_lock);
  Status st;
  if (g_refCount > 0 && --g_refCount == 0) {
    int rc = g_sym.shutdown();
    if (rc != kSuccess) st = FromNvml(rc, "nvmlShutdown");
    Unload();
  }
  if (after) *after = LibraryState{g_handle != nullptr, g_refCount, g_path};
  return st;
}

void Reset() {
  std::unique_lock<std::shared_mutex> lock(g_lock);
  if (g_refCount > 0 && g_sym.shutdown) g_sym.shutdown();
  g_refCount = 0;
  Unload();
}

LibraryState State() {
  std::shared_lock<std::shared_mutex> lock(g_lock);
  return LibraryState{g_handle != nullptr, g_refCount, g_path};
}

Status Read(Snapshot* out) {
  std::shared_lock<std::shared_mutex> lock(g_lock);
  if (g_refCount == 0) return Fail(kUninitialized, "read", "NVML is not initialised: call init() first");
  out->libraryPath = g_path;
  out->symbols = {g_sym.initName, g_sym.countName, g_sym.handleName, g_sym.procsName};
  if (g_sym.mem2) out->symbols.push_back("nvmlDeviceGetMemoryInfo_v2");
  if (g_sym.pci) out->symbols.push_back("nvmlDeviceGetPciInfo_v3");
  Status st = ReadSystemString(g_sym.driverVersion, "nvmlSystemGetDriverVersion", &out->driverVersion);
  if (!st.ok()) return st;
  st = ReadSystemString(g_sym.nvmlVersion, "nvmlSystemGetNVMLVersion", &out->nvmlVersion);
  if (!st.ok()) return st;
  unsigned count = 0;
  int rc = g_sym.count(&count);
  if (rc != kSuccess) return FromNvml(rc, g_sym.countName);
  out->gpuCount = count;
  out->devices.resize(count);
  try {
    for (unsigned i = 0; i < count; i++) ReadDevice(i, out->devices[i]);
  } catch (const Abort& a) {
    out->devices.clear();
    return a.status;
  }
  return Status();
}

}  // namespace nvml
