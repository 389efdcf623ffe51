/** One compute process on a GPU, as NVML lists it. */
export interface GpuProcess {
  pid: number;
  /** Absent when NVML reports "not available" (e.g. no permission to see other users' processes). */
  usedMemoryBytes?: number;
}

/** Why one GPU could not be (fully) read; the other GPUs are still reported. */
export interface GpuDeviceError {
  /** NVML's own enum name, e.g. 'NVML_ERROR_GPU_IS_LOST'. */
  code: string;
  /** The nvmlReturn_t number, e.g. 15. */
  nvmlReturn: number;
  /** The NVML symbol that failed, e.g. 'nvmlDeviceGetTemperature'. */
  function: string;
  message: string;
}

/**
 * One GPU's readings. A field NVML answers NOT_SUPPORTED for (fan on a data-centre board,
 * utilisation under MIG, ...) is absent, never zero.
 */
export interface GpuReading {
  index: number;
  name?: string;
  uuid?: string;
  pciBusId?: string;
  utilizationGpu?: number;
  utilizationMemory?: number;
  memoryTotalBytes?: number;
  memoryFreeBytes?: number;
  /** With nvmlDeviceGetMemoryInfo_v2 this excludes reserved memory; with the v1 fallback it includes it. */
  memoryUsedBytes?: number;
  /** Only with nvmlDeviceGetMemoryInfo_v2. */
  memoryReservedBytes?: number;
  temperatureC?: number;
  powerUsageW?: number;
  powerLimitW?: number;
  fanSpeedPercent?: number;
  smClockMhz?: number;
  memClockMhz?: number;
  processes: GpuProcess[];
  error?: GpuDeviceError;
}

export interface GpuSnapshot {
  /** When this reading finished. */
  collectedAt: Date;
  driverVersion?: string;
  nvmlVersion?: string;
  gpuCount: number;
  gpus: GpuReading[];
  /** The library file actually loaded, when read through NVML. */
  libraryPath?: string;
  /** Versioned NVML symbols in use (which fallbacks were taken). */
  symbols?: string[];
}

/** Source of GPU readings: NVML through the addon in production, in-memory in unit tests. */
export interface GpuReader {
  /** Rejects with an {@link NvmlError} on a whole-library failure (driver not loaded, library missing...). */
  read(): Promise<GpuSnapshot>;
  /** Releases NVML (reference-counted); safe to call more than once. */
  close(): Promise<void>;
}
