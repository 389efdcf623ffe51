import { NvmlError } from '../errors';
import { GpuReader, GpuSnapshot } from '../types';

/** In-memory reader for unit tests: answers the snapshot (or error) it was last given. */
export class StaticGpuReader implements GpuReader {
  reads = 0;
  closed = false;
  private current: { snapshot?: Omit<GpuSnapshot, 'collectedAt'> & { collectedAt?: Date }; error?: NvmlError };

  constructor(snapshot: Omit<GpuSnapshot, 'collectedAt'> & { collectedAt?: Date }) {
    this.current = { snapshot };
  }

  set(snapshot: Omit<GpuSnapshot, 'collectedAt'> & { collectedAt?: Date }): void {
    this.current = { snapshot };
  }

  fail(error: NvmlError): void {
    this.current = { error };
  }

  async read(): Promise<GpuSnapshot> {
    this.reads++;
    if (this.current.error) throw this.current.error;
    const s = this.current.snapshot!;
    return {
      ...s,
      collectedAt: s.collectedAt ?? new Date(),
      gpus: s.gpus.map((g) => ({ ...g, processes: [...g.processes] })),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
