// NVML loaded with dlopen at run time, never linked: the addon must load on hosts without a driver.
// Everything here is plain C++ (no N-API) so it can run on libuv's thread pool.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nvml {

// nvmlReturn_t values we act on. Their names (NVML_ERROR_*) are in one table, libs/nvml/src/errors.ts:
// errors leave the addon with the number only.
enum Code : int {
  kSuccess = 0,
  kUninitialized = 1,
  kInvalidArgument = 2,
  kNotSupported = 3,
  kNoPermission = 4,
  kInsufficientSize = 7,
  kDriverNotLoaded = 9,
  kLibraryNotFound = 12,
  kFunctionNotFound = 13,
  kGpuIsLost = 15,
  kLibRmVersionMismatch = 18,
  kArgumentVersionMismatch = 25,
  kUnknown = 999,
};

struct Status {
  int code = kSuccess;
  std::string function;  // the NVML symbol (or our loader step) that failed
  std::string message;
  bool ok() const { return code == kSuccess; }
};

struct ProcessReading {
  unsigned pid = 0;
  std::optional<unsigned long long> usedMemoryBytes;  // absent when NVML says "not available"
};

struct DeviceReading {
  unsigned index = 0;
  std::optional<std::string> name, uuid, pciBusId;
  std::optional<unsigned> utilizationGpu, utilizationMemory, temperatureC, powerUsageMw, powerLimitMw,
      fanSpeedPercent, smClockMhz, memClockMhz;
  std::optional<unsigned long long> memoryTotalBytes, memoryFreeBytes, memoryUsedBytes, memoryReservedBytes;
  std::vector<ProcessReading> processes;
  Status error;  // first per-device failure (GPU lost, no permission, ...); code 0 when none
};

struct Snapshot {
  std::optional<std::string> driverVersion, nvmlVersion;
  unsigned gpuCount = 0;
  std::vector<DeviceReading> devices;
  std::string libraryPath;
  // Which versioned symbols were found, for diagnostics ("nvmlInit_v2", ...).
  std::vector<std::string> symbols;
};

struct LibraryState {
  bool loaded = false;
  int refCount = 0;
  std::string libraryPath;
};

// Reference-counted: the first Init loads the library and calls nvmlInit, the last Shutdown calls
// nvmlShutdown and unloads it. A Shutdown with nothing initialised is a harmless no-op.
Status Init(const std::string& libraryPath, LibraryState* after);
Status Shutdown(LibraryState* after);
// Whole-library failures (uninitialised, driver not loaded, RM mismatch) come back as the status;
// per-device failures are recorded on that device and the read goes on.
Status Read(Snapshot* out);
// Drops every reference and unloads, whatever the count: for tests sharing one loaded addon.
void Reset();
LibraryState State();

std::string ErrorString(int code);    // nvmlErrorString when loaded, else our own wording

}  // namespace nvml
