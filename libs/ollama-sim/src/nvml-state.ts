// Relative, not '@app/nvml/testing': the CLI also runs under plain ts-node, without path mapping.
import {
  writeFakeNvmlState,
  writeFakeNvmlStateSync,
  type FakeGpuState,
  type FakeNvmlState,
} from '../../nvml/src/testing';
import type { SimNvmlConfig } from './config';
import type { Scheduler } from './scheduler';

const IDLE_POWER_W = 60;
const LOADING_FLOOR_UTIL = 10;

/** What the fake NVML library should report for this server's current load. */
export function nvmlStateFor(cfg: SimNvmlConfig, sched: Scheduler): FakeNvmlState {
  let slots = 0;
  let active = 0;
  let loading = false;
  for (const r of sched.runners.values()) {
    slots += r.slots;
    active += r.active;
    if (r.state === 'loading') loading = true;
  }
  let util = slots > 0 ? (100 * active) / slots : 0;
  if (loading) util = Math.max(util, LOADING_FLOOR_UTIL);
  util = Math.min(100, Math.max(0, util));

  const reserved = 512 * 1024 ** 2;
  const gpus: FakeGpuState[] = cfg.gpus.map((g) => {
    const limitW = g.powerLimitW ?? 700;
    return {
      name: g.name,
      uuid: g.uuid,
      utilGpu: util,
      utilMemory: util * 0.6,
      memTotal: g.memTotalBytes,
      memUsed: 0,
      memReserved: Math.min(reserved, g.memTotalBytes / 16),
      temperature: 34 + util * 0.45,
      powerUsage: (IDLE_POWER_W + ((limitW - IDLE_POWER_W) * util) / 100) * 1000,
      powerLimit: limitW * 1000,
      clockSm: util > 0 ? 1980 : 345,
      clockMem: 2619,
      processes: [],
    };
  });
  if (gpus.length === 0) return { gpus };

  // Each runner goes to the GPU with most free memory, spilling over to the next ones when it does not fit.
  for (const r of sched.runners.values()) {
    let left = r.model.sizeBytes;
    const order = [...gpus].sort((a, b) => free(b) - free(a));
    for (const g of order) {
      if (left <= 0) break;
      const take = Math.min(left, Math.max(0, free(g)));
      if (take <= 0) continue;
      g.memUsed += take;
      g.processes!.push({ pid: r.pid, usedMemory: take });
      left -= take;
    }
  }
  return { gpus };
}

function free(g: FakeGpuState): number {
  return g.memTotal - g.memUsed - (g.memReserved ?? 0);
}

/** Writes the state file at start and on change, at most once per `throttleMs`, never two writes at once. */
export class NvmlStateWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing = false;
  private dirty = false;
  private lastWrite = 0;
  private closed = false;
  writes = 0;

  constructor(
    private cfg: SimNvmlConfig,
    private readonly sched: Scheduler,
  ) {}

  setConfig(cfg: SimNvmlConfig): void {
    this.cfg = cfg;
    this.markDirty();
  }

  writeNow(): void {
    writeFakeNvmlStateSync(this.cfg.statePath, nvmlStateFor(this.cfg, this.sched));
    this.writes++;
    this.lastWrite = Date.now();
  }

  markDirty(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.timer || this.writing) return;
    const wait = Math.max(0, this.lastWrite + (this.cfg.throttleMs ?? 150) - Date.now());
    this.timer = setTimeout(() => void this.flush(), wait);
    this.timer.unref();
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (this.closed || !this.dirty) return;
    this.dirty = false;
    this.writing = true;
    try {
      await writeFakeNvmlState(this.cfg.statePath, nvmlStateFor(this.cfg, this.sched));
      this.writes++;
    } catch (e) {
      process.stderr.write(`ollama-sim: cannot write NVML state ${this.cfg.statePath}: ${(e as Error).message}\n`);
    } finally {
      this.writing = false;
      this.lastWrite = Date.now();
    }
    if (this.dirty) {
      this.dirty = false;
      this.markDirty();
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}
