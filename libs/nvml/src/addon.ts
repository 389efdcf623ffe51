import { existsSync } from 'fs';
import * as path from 'path';
import { ADDON_NOT_LOADED, NvmlError, NvmlReturn } from './errors';
import type { GpuReading } from './types';

/** Raw per-GPU record as the addon returns it: GpuReading with power in milliwatts, as NVML gives it. */
export type RawGpuReading = Omit<GpuReading, 'powerUsageW' | 'powerLimitW'> & {
  powerUsageMw?: number;
  powerLimitMw?: number;
};

export interface RawSnapshot {
  driverVersion?: string;
  nvmlVersion?: string;
  gpuCount: number;
  libraryPath: string;
  symbols: string[];
  gpus: RawGpuReading[];
}

export interface NvmlLibraryState {
  loaded: boolean;
  refCount: number;
  libraryPath: string | null;
}

/** The native module (libs/nvml/native). Every NVML call runs in a Napi::AsyncWorker. */
export interface NvmlAddon {
  /** Reference-counted: the first call dlopens the library (default 'libnvidia-ml.so.1') and runs nvmlInit_v2. */
  init(libraryPath?: string): Promise<NvmlLibraryState>;
  /** The last matching call runs nvmlShutdown and unloads; extra calls are no-ops. */
  shutdown(): Promise<NvmlLibraryState>;
  read(): Promise<RawSnapshot>;
  /** Drops every reference and unloads at once (tests share one loaded addon per process). */
  reset(): void;
  state(): NvmlLibraryState;
  errorName(code: number): string;
  /** setenv/unsetenv in the real process environment (see {@link setNativeEnv}). */
  setNativeEnv(name: string, value?: string): void;
}

const ADDON_FILE = path.join('build', 'Release', 'nvml.node');

/** Where the .node may be: beside the sources (ts-jest, ts-node) or, from dist/, back in libs/nvml. */
export function addonCandidates(): string[] {
  const list = [
    process.env.NVML_ADDON_PATH,
    path.resolve(__dirname, '..', ADDON_FILE),
    path.resolve(__dirname, '..', '..', '..', '..', 'libs', 'nvml', ADDON_FILE),
    path.resolve(process.cwd(), 'libs', 'nvml', ADDON_FILE),
  ];
  return [...new Set(list.filter((p): p is string => !!p))];
}

export type AddonLoadResult = { ok: true; addon: NvmlAddon; path: string } | { ok: false; error: NvmlError };

let cached: AddonLoadResult | undefined;

/**
 * Loads the addon once per process. Fails soft: a missing or unloadable .node comes back as
 * `{ ok: false, error }` (code NVML_ADDON_NOT_LOADED) for the agent to report, never a throw.
 */
export function loadNvmlAddon(): AddonLoadResult {
  if (cached?.ok) return cached;
  const tried: string[] = [];
  for (const file of addonCandidates()) {
    if (!existsSync(file)) {
      tried.push(`${file} (missing)`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const addon = require(file) as NvmlAddon;
      cached = { ok: true, addon, path: file };
      return cached;
    } catch (e) {
      tried.push(`${file} (${(e as Error).message})`);
    }
  }
  cached = {
    ok: false,
    error: new NvmlError(
      `NVML addon not loaded; run "npm run build:native". Tried: ${tried.join('; ')}`,
      ADDON_NOT_LOADED,
      NvmlReturn.LIBRARY_NOT_FOUND,
      'loadNvmlAddon',
    ),
  };
  return cached;
}

/** Resets the loaded addon's NVML state (every reference dropped, library unloaded), if loaded. */
export function resetNvmlAddon(): void {
  const r = loadNvmlAddon();
  if (r.ok) r.addon.reset();
}

/**
 * Sets (or, with `value` undefined, removes) a variable in the real process environment, where the
 * loaded C library's getenv() sees it. Needed under Jest, whose `process.env` is a per-spec copy:
 * tests point the fake library at its state file (FAKE_NVML_STATE) through this. Throws if the
 * addon is not built.
 */
export function setNativeEnv(name: string, value: string | undefined): void {
  const r = loadNvmlAddon();
  if (!r.ok) throw r.error;
  r.addon.setNativeEnv(name, value);
}

/** The fake library built by `npm run build:native` (libs/nvml/fake/build), for tests and demos. */
export function fakeNvmlLibraryPath(variant: 'default' | 'v1only' = 'default'): string {
  const rel = variant === 'v1only' ? ['fake', 'build', 'v1only'] : ['fake', 'build'];
  const candidates = [
    path.resolve(__dirname, '..', ...rel, 'libnvidia-ml.so.1'),
    path.resolve(__dirname, '..', '..', '..', '..', 'libs', 'nvml', ...rel, 'libnvidia-ml.so.1'),
  ];
  return candidates.find((p) => existsSync(p)) ?? candidates[0];
}
