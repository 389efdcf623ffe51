export * from './types';
export * from './errors';
export {
  loadNvmlAddon,
  resetNvmlAddon,
  setNativeEnv,
  fakeNvmlLibraryPath,
  addonCandidates,
  type NvmlAddon,
  type NvmlLibraryState,
  type RawSnapshot,
  type RawGpuReading,
  type AddonLoadResult,
} from './addon';
export * from './readers';
export * from './fake-state';
