export * from './types';
export * from './errors';
export {
  loadNvmlAddon,
  addonPath,
  type NvmlAddon,
  type NvmlLibraryState,
  type RawSnapshot,
  type RawGpuReading,
  type AddonLoadResult,
} from './addon';
export * from './readers';
// Test doubles (fake library state, StaticGpuReader, setNativeEnv...) are in '@app/nvml/testing'.
