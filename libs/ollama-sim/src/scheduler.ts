import { createHash } from 'crypto';
import { normalizeModelName, type ResolvedSimConfig, type SimModel } from './config';

/** A model on disk, with what /api/tags and /api/show report. */
export interface DiskModel extends SimModel {
  name: string;
  digest: string;
  modifiedAt: Date;
}

export function toDiskModel(m: SimModel, modifiedAt = new Date()): DiskModel {
  const name = normalizeModelName(m.name);
  return { ...m, name, digest: createHash('sha256').update(name).digest('hex'), modifiedAt };
}

export type RunnerState = 'loading' | 'ready';

/**
 * The options a runner is loaded with (api.Runner plus context shift). A request whose options
 * differ from the loaded runner's reloads it, as server/sched.go needsReload decides.
 */
export interface RunnerOptions {
  numCtx: number;
  /** num_ctx was not given: the server default applied (two defaults never differ). */
  numCtxAuto: boolean;
  numBatch: number;
  numBatchAuto: boolean;
  /** -1 = decide dynamically (never forces a reload). */
  numGpu: number;
  /** undefined = automatic. */
  useMmap?: boolean;
  numThread: number;
  shift: boolean;
}

/** Ollama's default num_ctx by total VRAM (server/routes.go: 4k below 23 GiB, 32k below 47 GiB, else 256k), capped by the model's trained context. */
export function defaultNumCtx(vramBytes: number, trainCtx: number): number {
  const gib = 1024 ** 3;
  const byVram = vramBytes >= 47 * gib ? 262_144 : vramBytes >= 23 * gib ? 32_768 : 4096;
  return Math.min(byVram, trainCtx);
}

export function trainContext(m: SimModel): number {
  return m.contextLength ?? (m.embedding ? 2048 : 131_072);
}

/** A request's runner options from its `options` object and top-level `shift`. */
export function runnerOptions(m: SimModel, vramBytes: number, options: unknown, shift: unknown): RunnerOptions {
  const o = (options && typeof options === 'object' ? options : {}) as Record<string, unknown>;
  const int = (v: unknown): number | undefined =>
    typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : undefined;
  const train = trainContext(m);
  const numCtx = int(o.num_ctx);
  const numBatch = int(o.num_batch);
  return {
    numCtx: numCtx !== undefined ? Math.max(4, Math.min(numCtx, train)) : defaultNumCtx(vramBytes, train),
    numCtxAuto: numCtx === undefined,
    numBatch: numBatch ?? 512,
    numBatchAuto: numBatch === undefined,
    numGpu: int(o.num_gpu) ?? -1,
    useMmap: typeof o.use_mmap === 'boolean' ? o.use_mmap : undefined,
    numThread: int(o.num_thread) ?? 0,
    shift: shift !== false,
  };
}

/** server/sched.go needsReload, for the options the simulator models. */
export function needsReload(loaded: RunnerOptions, want: RunnerOptions): boolean {
  if (loaded.shift !== want.shift) return true;
  if (!(loaded.numCtxAuto && want.numCtxAuto) && loaded.numCtx !== want.numCtx) return true;
  if (!(loaded.numBatchAuto && want.numBatchAuto) && loaded.numBatch !== want.numBatch) return true;
  if (want.numGpu >= 0 && loaded.numGpu !== want.numGpu) return true;
  if (loaded.useMmap !== want.useMmap) return true;
  return loaded.numThread !== want.numThread;
}

/** A loaded model: Ollama's runner process with `slots` parallel sequences. */
export class Runner {
  state: RunnerState = 'loading';
  active = 0;
  /** Requests waiting for a slot (FIFO). */
  readonly queue: Waiter[] = [];
  readonly loadStartedAt = Date.now();
  loadedAt = 0;
  lastUsed = Date.now();
  /** ms; -1 = forever. */
  keepAliveMs: number;
  expiresAt = 0;
  expiryTimer: NodeJS.Timeout | undefined;
  loadTimer: NodeJS.Timeout | undefined;
  /** Set by DELETE while busy: unload as soon as idle. */
  unloadWhenIdle = false;
  /** A request with other runner options waits to reload this runner: no new requests join it. */
  draining = false;
  constructor(
    readonly model: DiskModel,
    readonly slots: number,
    keepAliveMs: number,
    readonly pid: number,
    readonly opts: RunnerOptions,
  ) {
    this.keepAliveMs = keepAliveMs;
  }
  get idle(): boolean {
    return this.state === 'ready' && this.active === 0 && this.queue.length === 0;
  }
}

/** A request waiting to be scheduled; `onGrant` runs once when it holds a slot. */
export interface Waiter {
  model: DiskModel;
  keepAliveMs: number | undefined;
  /** Runner options the request needs (absent: any loaded runner will do; a new one gets the defaults). */
  opts?: RunnerOptions;
  arrivedAt: number;
  onGrant: (lease: Lease) => void;
  runner?: Runner;
  done?: boolean;
}

export interface Lease {
  runner: Runner;
  /** Time this request spent waiting for its model to load (ns). */
  loadNs: number;
}

export interface SchedulerCounters {
  loads: number;
  evictions: number;
  unloads: number;
  expirations: number;
  /** Runners unloaded and loaded again because a request needed other runner options (each also counts in `loads`). */
  reloads: number;
}

/**
 * Ollama's scheduler in miniature: models load into memory (taking time), each holds `slots`
 * parallel requests, extra requests wait FIFO, a model that does not fit evicts the least recently
 * used idle one, and idle models unload when their keep-alive runs out.
 */
export class Scheduler {
  readonly runners = new Map<string, Runner>();
  /** Requests whose model is not loaded yet and could not be loaded (memory held by busy models). */
  private readonly pending: Waiter[] = [];
  private queuedCount = 0;
  private nextPid = 40_000;
  readonly counters: SchedulerCounters = { loads: 0, evictions: 0, unloads: 0, expirations: 0, reloads: 0 };
  /** Called whenever load, activity or memory changes (drives the fake NVML file). */
  onChange: () => void = () => undefined;

  constructor(private config: ResolvedSimConfig) {}

  setConfig(c: ResolvedSimConfig): void {
    this.config = c;
    this.pump();
  }

  /** Requests waiting for a load or a slot. */
  get queued(): number {
    return this.queuedCount;
  }

  get active(): number {
    let n = 0;
    for (const r of this.runners.values()) n += r.active;
    return n;
  }

  get usedBytes(): number {
    let n = 0;
    for (const r of this.runners.values()) n += r.model.sizeBytes;
    return n;
  }

  /** Queues a request. Returns false (and queues nothing) when the queue is full: answer 503. */
  request(w: Waiter): boolean {
    const r = this.runners.get(w.model.name);
    const fits = r !== undefined && !r.draining && !this.mismatch(r, w);
    if (fits && r.state === 'ready' && r.active < r.slots && r.queue.length === 0) {
      this.grant(w, r);
      return true;
    }
    if (this.queuedCount >= this.config.maxQueue) return false;
    this.queuedCount++;
    if (fits) {
      w.runner = r;
      r.queue.push(w);
    } else {
      this.pending.push(w);
      this.pump();
    }
    this.onChange();
    return true;
  }

  /** The client went away before its turn. */
  cancel(w: Waiter): void {
    if (w.done) return;
    w.done = true;
    const list = w.runner ? w.runner.queue : this.pending;
    const i = list.indexOf(w);
    if (i >= 0) {
      list.splice(i, 1);
      this.queuedCount--;
    }
    if (w.runner) this.afterActivity(w.runner);
    this.pump();
    this.onChange();
  }

  /** A request holding a slot finished (or its client went away). */
  release(r: Runner): void {
    r.active--;
    r.lastUsed = Date.now();
    this.drain(r);
    this.afterActivity(r);
    this.pump();
    this.onChange();
  }

  /** Loads instantly (used by `loaded` at start and by /_sim): no load time, still respects memory. */
  loadNow(m: DiskModel): boolean {
    const existing = this.runners.get(m.name);
    if (existing) return true;
    if (!this.makeRoom(m)) return false;
    const r = this.createRunner(m);
    clearTimeout(r.loadTimer);
    this.becomeReady(r);
    return true;
  }

  /** Unloads now when idle; otherwise as soon as its last request ends. Returns whether it was loaded. */
  unload(name: string): boolean {
    const r = this.runners.get(name);
    if (!r) return false;
    if (r.idle) this.drop(r, 'unload');
    else {
      r.unloadWhenIdle = true;
      r.keepAliveMs = 0;
    }
    return true;
  }

  /** Frees every timer (server close). */
  shutdown(): void {
    for (const r of this.runners.values()) {
      clearTimeout(r.expiryTimer);
      clearTimeout(r.loadTimer);
    }
    this.runners.clear();
    this.pending.length = 0;
    this.queuedCount = 0;
  }

  /** Moves pending requests onto runners, loading models (and evicting idle ones) as room allows. */
  private pumping = false;
  private pumpAgain = false;

  private pump(): void {
    // Granting runs request callbacks, which may release or cancel and so pump again: loop instead.
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private mismatch(r: Runner, w: Waiter): boolean {
    return w.opts !== undefined && needsReload(r.opts, w.opts);
  }

  private pumpOnce(): void {
    let blocked = false;
    for (const r of this.runners.values()) r.draining = false;
    for (let i = 0; i < this.pending.length;) {
      const w = this.pending[i];
      let r = this.runners.get(w.model.name);
      if (r && r.draining && !this.mismatch(r, w)) {
        i++; // queued behind the reload, as in Ollama's single pending queue
        continue;
      }
      if (r && this.mismatch(r, w)) {
        // Ollama reloads the runner once its running requests finish; nothing else joins it meanwhile.
        if (!blocked && r.idle) {
          this.counters.reloads++;
          this.drop(r, 'reload');
          r = undefined;
        } else {
          r.draining = true;
          blocked = true;
          i++;
          continue;
        }
      }
      if (!r && !blocked) {
        if (this.makeRoom(w.model)) r = this.createRunner(w.model, w.opts);
        else blocked = true; // FIFO: later loads wait behind this one, as Ollama's scheduler does
      }
      if (!r) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      w.runner = r;
      r.queue.push(w);
      this.drain(r);
    }
  }

  private makeRoom(m: DiskModel): boolean {
    const c = this.config;
    for (;;) {
      const fitsCount = this.runners.size < c.maxLoadedModels;
      const fitsMemory = this.usedBytes + m.sizeBytes <= c.vramBytes || this.runners.size === 0;
      if (fitsCount && fitsMemory) return true;
      let victim: Runner | undefined;
      for (const r of this.runners.values()) {
        if (r.idle && (!victim || r.lastUsed < victim.lastUsed)) victim = r;
      }
      if (!victim) return false;
      this.drop(victim, 'evict');
    }
  }

  private createRunner(m: DiskModel, opts?: RunnerOptions): Runner {
    const slots = m.embedding ? 1 : this.config.numParallel;
    const r = new Runner(
      m,
      slots,
      this.config.keepAliveMs,
      this.nextPid++,
      opts ?? runnerOptions(m, this.config.vramBytes, undefined, undefined),
    );
    this.runners.set(m.name, r);
    const loadMs = m.loadTimeMs ?? (m.sizeBytes / 1e9) * this.config.loadMsPerGB;
    r.loadTimer = setTimeout(() => this.becomeReady(r), Math.max(0, loadMs));
    this.counters.loads++;
    this.onChange();
    return r;
  }

  private becomeReady(r: Runner): void {
    r.loadTimer = undefined;
    if (this.runners.get(r.model.name) !== r) return;
    r.state = 'ready';
    r.loadedAt = Date.now();
    r.lastUsed = r.loadedAt;
    this.drain(r);
    this.afterActivity(r);
    this.pump();
    this.onChange();
  }

  /** Hands free slots to the runner's queue in order. */
  private drain(r: Runner): void {
    while (r.state === 'ready' && r.active < r.slots && r.queue.length > 0) {
      const w = r.queue.shift()!;
      this.queuedCount--;
      this.grant(w, r);
    }
  }

  private grant(w: Waiter, r: Runner): void {
    w.done = true;
    w.runner = r;
    r.active++;
    r.lastUsed = Date.now();
    if (r.expiryTimer) {
      clearTimeout(r.expiryTimer);
      r.expiryTimer = undefined;
    }
    if (w.keepAliveMs !== undefined && !r.unloadWhenIdle) r.keepAliveMs = w.keepAliveMs;
    const loadNs = r.loadedAt > w.arrivedAt ? (r.loadedAt - Math.max(w.arrivedAt, r.loadStartedAt)) * 1e6 : 0;
    this.onChange();
    w.onGrant({ runner: r, loadNs: Math.round(loadNs) });
  }

  /** An idle runner starts its keep-alive countdown (or unloads at once with keep_alive 0). */
  private afterActivity(r: Runner): void {
    if (!r.idle || this.runners.get(r.model.name) !== r) return;
    if (r.unloadWhenIdle || r.keepAliveMs === 0) {
      this.drop(r, 'unload');
      return;
    }
    if (r.keepAliveMs < 0) {
      r.expiresAt = Number.POSITIVE_INFINITY;
      return;
    }
    r.expiresAt = Date.now() + r.keepAliveMs;
    this.armExpiry(r);
  }

  /** Unloads an idle runner at its expiresAt (in steps: a timer waits at most 2^31-1 ms). */
  private armExpiry(r: Runner): void {
    clearTimeout(r.expiryTimer);
    r.expiryTimer = setTimeout(
      () => {
        r.expiryTimer = undefined;
        if (!r.idle || this.runners.get(r.model.name) !== r) return;
        if (Date.now() < r.expiresAt) return this.armExpiry(r);
        this.counters.expirations++;
        this.drop(r, 'unload');
      },
      Math.min(Math.max(0, r.expiresAt - Date.now()), 2 ** 31 - 1),
    );
    r.expiryTimer.unref();
  }

  private drop(r: Runner, why: 'evict' | 'unload' | 'reload'): void {
    clearTimeout(r.expiryTimer);
    clearTimeout(r.loadTimer);
    this.runners.delete(r.model.name);
    if (why === 'evict') this.counters.evictions++;
    else if (why === 'unload') this.counters.unloads++;
    this.onChange();
    if (why === 'unload') this.pump();
  }
}
