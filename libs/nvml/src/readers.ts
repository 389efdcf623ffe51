import { loadNvmlAddon, NvmlAddon, RawSnapshot } from './addon';
import { NvmlError, toNvmlError } from './errors';
import { GpuReader, GpuReading, GpuSnapshot } from './types';

export interface NvmlGpuReaderOptions {
  /** Path of libnvidia-ml.so.1; default: the dynamic loader's search ('libnvidia-ml.so.1'). */
  libraryPath?: string;
  /** Injected addon (tests); default: {@link loadNvmlAddon}. */
  addon?: NvmlAddon;
}

const mwToW = (mw: number | undefined) => (mw === undefined ? undefined : mw / 1000);

export function snapshotFromRaw(raw: RawSnapshot, collectedAt = new Date()): GpuSnapshot {
  return {
    collectedAt,
    driverVersion: raw.driverVersion,
    nvmlVersion: raw.nvmlVersion,
    gpuCount: raw.gpuCount,
    libraryPath: raw.libraryPath,
    symbols: raw.symbols,
    gpus: raw.gpus.map((g): GpuReading => {
      const { powerUsageMw, powerLimitMw, ...rest } = g;
      const out: GpuReading = { ...rest, processes: g.processes.map((p) => ({ ...p })) };
      if (powerUsageMw !== undefined) out.powerUsageW = mwToW(powerUsageMw);
      if (powerLimitMw !== undefined) out.powerLimitW = mwToW(powerLimitMw);
      return out;
    }),
  };
}

/**
 * Reads GPUs through the addon. NVML is initialised lazily on the first read and again after a
 * failed init, so an agent started before the driver came up recovers by itself.
 */
export class NvmlGpuReader implements GpuReader {
  private initializing?: Promise<void>;
  private initialized = false;
  private closed = false;

  constructor(private readonly options: NvmlGpuReaderOptions = {}) {}

  private addon(): NvmlAddon {
    if (this.options.addon) return this.options.addon;
    const loaded = loadNvmlAddon();
    if (!loaded.ok) throw loaded.error;
    return loaded.addon;
  }

  private async ensureInit(addon: NvmlAddon): Promise<void> {
    if (this.initialized) return;
    // Concurrent first reads share one init, so the reference count goes up once.
    this.initializing ??= addon.init(this.options.libraryPath).then(
      () => {
        this.initialized = true;
        this.initializing = undefined;
      },
      (e: unknown) => {
        this.initializing = undefined;
        throw toNvmlError(e);
      },
    );
    return this.initializing;
  }

  async read(): Promise<GpuSnapshot> {
    if (this.closed) throw new NvmlError('reader is closed', 'NVML_ERROR_UNINITIALIZED', 1, 'read');
    const addon = this.addon();
    await this.ensureInit(addon);
    try {
      return snapshotFromRaw(await addon.read());
    } catch (e) {
      throw toNvmlError(e);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.initializing) await this.initializing.catch(() => undefined);
    if (!this.initialized) return;
    this.initialized = false;
    await this.addon()
      .shutdown()
      .catch(() => undefined);
  }
}
