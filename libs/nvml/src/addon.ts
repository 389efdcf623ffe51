import { existsSync } from 'fs';
import * as path from 'path';
import { ADDON_NOT_LOADED, NvmlError, NvmlReturn, nvmlErrorName, toNvmlError } from './errors';
import type { GpuDeviceError, GpuReading } from './types';

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

/**
 * The native module (libs/nvml/native) as this library hands it out: every NVML call runs in a
 * Napi::AsyncWorker, and its failures come out as {@link NvmlError}s named from errors.ts.
 */
export interface NvmlAddon {
  /** Reference-counted: the first call dlopens the library (default 'libnvidia-ml.so.1') and runs nvmlInit_v2. */
  init(libraryPath?: string): Promise<NvmlLibraryState>;
  /** The last matching call runs nvmlShutdown and unloads; extra calls are no-ops. */
  shutdown(): Promise<NvmlLibraryState>;
  read(): Promise<RawSnapshot>;
  /** Drops every reference and unloads at once (tests share one loaded addon per process). */
  reset(): void;
  state(): NvmlLibraryState;
  /** setenv/unsetenv in the real process environment (see setNativeEnv in `@app/nvml/testing`). */
  setNativeEnv(name: string, value?: string): void;
}

/**
 * What the .node file exports. Its errors (and a GPU's `error`) carry the nvmlReturn_t number, the
 * function and a message, never a name: the one table of names is errors.ts.
 */
type NativeGpuReading = Omit<RawGpuReading, 'error'> & { error?: Omit<GpuDeviceError, 'code'> };
interface NativeNvml extends Omit<NvmlAddon, 'read'> {
  read(): Promise<Omit<RawSnapshot, 'gpus'> & { gpus: NativeGpuReading[] }>;
}

function rethrow(e: unknown): never {
  throw toNvmlError(e);
}

/** The native module with errors named (sync argument errors still throw on the spot). */
function named(native: NativeNvml): NvmlAddon {
  return {
    init: (libraryPath) => native.init(libraryPath).catch(rethrow),
    shutdown: () => native.shutdown().catch(rethrow),
    read: () =>
      native.read().then(
        (raw) => ({
          ...raw,
          gpus: raw.gpus.map(({ error, ...g }) =>
            error ? { ...g, error: { ...error, code: nvmlErrorName(error.nvmlReturn) } } : g,
          ),
        }),
        rethrow,
      ),
    reset: () => native.reset(),
    state: () => native.state(),
    setNativeEnv: (name, value) => native.setNativeEnv(name, value),
  };
}

/**
 * The folder of the package this file belongs to: the nearest one above it with a package.json,
 * as the `bindings` package finds a module's root. It is the repository from the TypeScript
 * sources (ts-jest, ts-node) and from dist/, and /app in the gpu-agent image.
 */
export function packageRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

/** Where the compiled addon is: $NVML_ADDON_PATH, else libs/nvml/build/Release/nvml.node under the package root. */
export function addonPath(): string {
  return process.env.NVML_ADDON_PATH || path.join(packageRoot(), 'libs', 'nvml', 'build', 'Release', 'nvml.node');
}

export type AddonLoadResult = { ok: true; addon: NvmlAddon; path: string } | { ok: false; error: NvmlError };

let cached: AddonLoadResult | undefined;

/**
 * Loads the addon once per process. Fails soft: a missing or unloadable .node comes back as
 * `{ ok: false, error }` (code NVML_ADDON_NOT_LOADED) for the agent to report, never a throw.
 */
export function loadNvmlAddon(): AddonLoadResult {
  if (cached?.ok) return cached;
  const file = addonPath();
  let why: string;
  if (!existsSync(file)) {
    why = `${file} is missing`;
  } else {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const native = require(file) as NativeNvml;
      cached = { ok: true, addon: named(native), path: file };
      return cached;
    } catch (e) {
      why = `${file}: ${(e as Error).message}`;
    }
  }
  cached = {
    ok: false,
    error: new NvmlError(
      `NVML addon not loaded; run "npm run build:native" (or set NVML_ADDON_PATH). ${why}`,
      ADDON_NOT_LOADED,
      NvmlReturn.LIBRARY_NOT_FOUND,
      'loadNvmlAddon',
    ),
  };
  return cached;
}
