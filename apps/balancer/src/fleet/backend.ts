import type { AgentStatusDto } from '@app/common';
import { BackendConfig } from '../config/balancer-config';
import { LearnedStats } from './learned-stats';

export type HealthState = 'unknown' | 'healthy' | 'unhealthy';

/** Where a backend came from: the configuration, DNS discovery, or an agent's registration. */
export type BackendSource = 'config' | 'dns' | 'registered';

export interface ModelOnDisk {
  name: string;
  size: number;
  /** The blob digest /api/tags gave (capabilities learned from /api/show are kept per digest). */
  digest?: string | null;
  /** `capabilities` as /api/tags listed them (Ollama 0.12+), null when it did not. */
  capabilities?: readonly string[] | null;
  /** The entry exactly as the backend listed it in /api/tags (for merged views). */
  raw: Record<string, unknown>;
}

export interface LoadedModel {
  name: string;
  size: number;
  sizeVram: number;
  expiresAt: number | null;
  raw: Record<string, unknown>;
}

/**
 * Everything the balancer knows about one Ollama server. The in-flight counts are exact: taken at
 * dispatch, released when the response ends, errors or is aborted, never overwritten by a poll.
 */
export class Backend {
  readonly name: string;
  readonly url: URL;
  /** The backend's own host:port, sent as Host so Ollama's host check passes. */
  readonly host: string;
  readonly origin: string;

  inFlight = 0;
  readonly modelInFlight = new Map<string, number>();
  /** Requests dispatched since start (for the status view). */
  served = 0;

  // Active health (scheduled probes).
  health: HealthState = 'unknown';
  consecutiveFailures = 0;
  lastPollAt: number | null = null;
  lastOkAt: number | null = null;
  lastError: string | null = null;
  private knownVersion: string | null = null;
  /** Routes this backend answered with Gin's `404 page not found` (an Ollama older than them), since its version last changed. */
  readonly missingRoutes = new Set<string>();

  // Passive health (outlier ejection from live traffic).
  consecutiveErrors = 0;
  ejectedUntil = 0;
  ejections = 0;
  slowStartFrom = 0;

  /** Cordoned by an admin: no new requests, in-flight ones finish. */
  cordoned = false;

  /**
   * Why it is leaving the fleet (its address vanished from DNS, its agent deregistered or stopped
   * heartbeating), or null. Like a cordon — no new requests, in-flight ones finish — after which
   * the registry removes it. An admin's uncordon does not bring it back.
   */
  retiring: string | null = null;

  // Model inventory.
  readonly modelsOnDisk = new Map<string, ModelOnDisk>();
  readonly modelsLoaded = new Map<string, LoadedModel>();
  inventoryAt: number | null = null;
  /** Last time each model was used here through the balancer (for eviction cost). */
  readonly modelLastUsed = new Map<string, number>();
  /** Capabilities /api/show gave, per model digest (a re-pulled model has a new digest, so asks again). */
  readonly shownCapabilities = new Map<string, readonly string[]>();

  // GPU agent.
  agent: AgentStatusDto | null = null;
  agentAt: number | null = null;
  agentError: string | null = null;

  /** What its answers taught about its speed (fleet/learned-stats.ts). */
  readonly learned = new LearnedStats();

  constructor(
    readonly config: BackendConfig,
    readonly source: BackendSource = 'config',
  ) {
    this.name = config.name;
    this.url = new URL(config.url);
    this.host = this.url.host;
    this.origin = `${this.url.protocol}//${this.url.host}`;
  }

  /** The Ollama version /api/version reported. A new one forgets which routes were missing. */
  get version(): string | null {
    return this.knownVersion;
  }

  set version(v: string | null) {
    if (v !== this.knownVersion) this.missingRoutes.clear();
    this.knownVersion = v;
  }

  /**
   * Whether this backend lacks a route: it answered it with `404 page not found`, or its version
   * predates the route (ROUTE_SINCE). A dev build (0.0.0) or an unknown version is given the benefit of the doubt.
   */
  lacksRoute(path: string): boolean {
    if (this.missingRoutes.size > 0 && this.missingRoutes.has(path)) return true;
    const since = ROUTE_SINCE[path];
    return since !== undefined && this.knownVersion !== null && versionBelow(this.knownVersion, since);
  }

  /** The backend answered `path` with Gin's `404 page not found`: not a candidate for it until its version changes. */
  noteRouteMissing(path: string): void {
    this.missingRoutes.add(path);
  }

  get weight(): number {
    return this.config.weight;
  }

  inFlightFor(model: string): number {
    return this.modelInFlight.get(model) ?? 0;
  }

  /** Ejected by passive health right now. */
  isEjected(now = Date.now()): boolean {
    return this.ejectedUntil > now;
  }

  /** Whether routing may send new requests here. */
  isAvailable(now = Date.now()): boolean {
    return this.health !== 'unhealthy' && !this.cordoned && this.retiring === null && !this.isEjected(now);
  }

  /** The options each model's runner here was loaded with, when this balancer sent the load. */
  readonly runnerOptions = new Map<string, RunnerOptions>();

  /**
   * Whether a request for `model` with these options would make Ollama reload its runner here: by
   * the options this balancer loaded it with, else by the context length /api/ps shows (a request
   * that names num_ctx); unknown otherwise (then no).
   */
  forcesReload(model: string, want: RunnerOptions | undefined): boolean {
    if (want === undefined) return false;
    const known = this.runnerOptions.get(model);
    const ctx = Number(this.modelsLoaded.get(model)?.raw.context_length);
    const shownCtx = Number.isFinite(ctx) && ctx > 0 ? ctx : undefined;
    if (known !== undefined) {
      // Loaded with the default context, asked for a named one: Ollama compares the resolved values,
      // and /api/ps shows what the default resolved to there.
      if (known.numCtx === undefined && want.numCtx !== undefined && shownCtx !== undefined)
        return optionsForceReload({ ...known, numCtx: shownCtx }, want);
      return optionsForceReload(known, want);
    }
    return want.numCtx !== undefined && shownCtx !== undefined && shownCtx !== want.numCtx;
  }

  /** Until when it is passed over: it answered that its own queue is full (Ollama's "server busy"). */
  busyUntil = 0;

  /** It answered "server busy ... maximum pending requests exceeded": deprioritised for BUSY_BACKOFF_MS. */
  noteBusy(now = Date.now()): void {
    this.busyUntil = now + BUSY_BACKOFF_MS;
  }

  /** Whether a request for `model` would exceed a concurrency cap here. */
  atCap(model: string | null): boolean {
    const c = this.config;
    if (c.maxConcurrency > 0 && this.inFlight >= this.effectiveCap(c.maxConcurrency)) return true;
    if (model === null) return false;
    // A load the balancer started here in the background: nobody rides it (the model's warm holders
    // serve meanwhile, or nobody does). Its requests wait in the balancer until it is done, free to
    // take whichever server frees first instead of queueing in Ollama behind a load of unknown
    // length. (A load a request started takes its riders up to the cap below: they start at once
    // when it is done, where held ones would start a first token later.)
    if (this.loading.get(model)?.background === true) return true;
    // Learning: one beyond the slots proven so far, under a configured modelConcurrency if any.
    const probe = c.learnSlots ? this.learned.slotLearner(model).probeCap : 0;
    const cap = !c.learnSlots
      ? c.modelConcurrency
      : c.modelConcurrency > 0
        ? Math.min(probe, c.modelConcurrency)
        : probe;
    return cap > 0 && this.inFlightFor(model) >= this.effectiveCap(cap);
  }

  /**
   * Requests Ollama runs at once for `model` here: as configured, or as learned (proven so far;
   * Ollama's default of 1 until shown more). What predictions divide waiting work by.
   */
  slotsFor(model: string | null): number {
    if (!this.config.learnSlots || model === null) return Math.max(1, this.config.parallel);
    return Math.max(1, this.learned.slots.get(model)?.estimate ?? 1);
  }

  /**
   * At most how many it may run at once for `model` by what is known: the slots, or while they are
   * being learned, one beyond those proven (never past a proven ceiling). Judging a model's warm
   * holders overloaded by this, a capacity not learned yet does not pass for a lack of capacity.
   */
  slotsAtMost(model: string | null): number {
    if (!this.config.learnSlots || model === null) return this.slotsFor(model);
    const l = this.learned.slots.get(model);
    return Math.max(1, l ? l.probeCap : 2);
  }

  /** Models it keeps loaded at once: as configured, else as learned (what it has been seen to hold). */
  get room(): number {
    return this.config.maxLoadedModels > 0 ? this.config.maxLoadedModels : this.learned.room.estimate;
  }

  /** Whether that room is known (configured, or an eviction showed it) rather than a lower bound. */
  get roomKnown(): boolean {
    return this.config.maxLoadedModels > 0 || this.learned.room.known;
  }

  /**
   * Models sent here cold and not yet confirmed loaded, with when the load should be done: later
   * requests for them wait for that load instead of starting another elsewhere.
   */
  readonly loading = new Map<string, { since: number; readyAt: number; background?: boolean }>();
  /**
   * Models a cold load here may have evicted, each with the model whose load may evict it: not
   * counted as loaded until /api/ps says (a guess must not send a request "warm" to a host that has
   * to reload it). While that load is still pending on a backend known to be full, not even a busy
   * one (evictionPending): Ollama evicts it the moment it is idle, so a request sent for it may find
   * it gone and wait for the load and a reload; and while it is loaded Ollama serves its requests
   * at once, so each one sent keeps it busy and holds back the load the balancer chose to make
   * there. Otherwise a busy one still counts as loaded (the load may fit beside it).
   */
  readonly maybeEvicted = new Map<string, string>();

  /**
   * A request for `model` was sent here while it was not loaded (or the balancer loads it in the
   * `background`): a load is under way, until about `readyAt`. Returns the model that load may evict
   * (null when it fits, or one was under way).
   */
  noteLoadStarted(model: string, readyAt: number, now = Date.now(), background = false): string | null {
    if (this.loading.has(model)) return null;
    this.loading.set(model, { since: now, readyAt, background });
    // Room for it means evicting the least recently used model, if it is full (or may be): an idle
    // one first; if every one is busy, Ollama waits for the least recently used to finish and
    // evicts that one (the load is queued behind it, and so is any later request for it here).
    const resident = [...this.modelsLoaded.values()].filter(
      (m) => m.name !== model && !this.maybeEvicted.has(m.name) && (m.expiresAt === null || m.expiresAt > now),
    );
    if (resident.length < this.room) return null;
    let victim: string | null = null;
    let victimBusy = true;
    let oldest = Infinity;
    for (const m of resident) {
      const busy = this.inFlightFor(m.name) > 0;
      const used = this.modelLastUsed.get(m.name) ?? 0;
      if (victim === null || (victimBusy && !busy) || (busy === victimBusy && used < oldest)) {
        victim = m.name;
        victimBusy = busy;
        oldest = used;
      }
    }
    if (victim !== null) this.maybeEvicted.set(victim, model);
    return victim;
  }

  /**
   * When a load of `model` started here should be done (0 when none is known to be under way). One
   * past its expected end that /api/ps does not list yet has not shown how long it takes: like a
   * request that overran its prediction, it is expected to take about as long again as it has
   * overrun so far.
   */
  loadingUntil(model: string, now = Date.now()): number {
    const t = this.loading.get(model)?.readyAt;
    if (t === undefined) return 0;
    // A load that should long be over and was never confirmed (an error, a lost answer) is forgotten.
    if (now > t + 60_000) {
      this.loading.delete(model);
      return 0;
    }
    return now > t && !this.modelsLoaded.has(model) ? 2 * now - t : t;
  }

  /**
   * Whether a load of `model` sent here is not over yet: under way, or held back by Ollama (its
   * request still waiting here after the balancer stopped counting it as under way). One never
   * confirmed is forgotten a minute after it was due, as in loadingUntil.
   */
  loadPending(model: string, now = Date.now()): boolean {
    return !this.modelsLoaded.has(model) && (this.loadingUntil(model, now) > 0 || this.inFlightFor(model) > 0);
  }

  /**
   * Whether a load of `model` still pending here will evict for sure: its room is known to be full
   * (configured, or shown by an eviction). Where the room is only a lower bound the load may fit
   * beside a busy model, which then stays warm (a guess either way; a busy model is not given up).
   */
  evictionPending(model: string): boolean {
    return this.roomKnown && this.loadPending(model);
  }

  /** During slow start a returning backend takes a growing share of its cap. */
  private effectiveCap(cap: number): number {
    if (this.slowStartFrom === 0) return cap;
    return Math.max(1, Math.floor(cap * this.slowStartFactor()));
  }

  /** Length of the slow start after an ejection (SLOW_START_MS). */
  slowStartMs = 10000;

  slowStartFactor(now = Date.now(), windowMs = this.slowStartMs): number {
    if (this.slowStartFrom === 0) return 1;
    if (windowMs <= 0) {
      this.slowStartFrom = 0;
      return 1;
    }
    const f = (now - this.slowStartFrom) / windowMs;
    if (f >= 1) {
      this.slowStartFrom = 0;
      return 1;
    }
    return Math.max(0.1, f);
  }

  /** Expected end time of each request in flight here, per model (0 when unknown). */
  readonly runningEnds = new Map<string | null, number[]>();

  acquire(model: string | null, expectedEnd = 0): void {
    this.inFlight++;
    this.served++;
    let ends = this.runningEnds.get(model);
    if (!ends) this.runningEnds.set(model, (ends = []));
    ends.push(expectedEnd);
    if (model !== null) {
      this.modelInFlight.set(model, this.inFlightFor(model) + 1);
      this.modelLastUsed.set(model, Date.now());
    }
  }

  release(model: string | null, expectedEnd = 0): void {
    this.inFlight--;
    const ends = this.runningEnds.get(model);
    if (ends) {
      const i = ends.indexOf(expectedEnd);
      ends.splice(i >= 0 ? i : 0, 1);
    }
    if (model !== null) {
      const n = this.inFlightFor(model) - 1;
      if (n <= 0) this.modelInFlight.delete(model);
      else this.modelInFlight.set(model, n);
      this.modelLastUsed.set(model, Date.now());
    }
  }

  hasModel(model: string): boolean {
    return this.modelsOnDisk.has(model) || this.modelsLoaded.has(model);
  }

  /** How many models count as loaded here now (isLoaded). */
  loadedCount(now = Date.now()): number {
    let n = 0;
    for (const m of this.modelsLoaded.values()) if (this.isLoaded(m.name, now)) n++;
    return n;
  }

  isLoaded(model: string, now = Date.now()): boolean {
    const m = this.modelsLoaded.get(model);
    const evictedBy = this.maybeEvicted.get(model);
    if (!m || (evictedBy !== undefined && (this.inFlightFor(model) === 0 || this.evictionPending(evictedBy))))
      return false;
    return m.expiresAt === null || m.expiresAt > now || this.inFlightFor(model) > 0;
  }

  /**
   * What the model can do here (`tools`, `thinking`, `vision`, ...): from /api/tags, else from an
   * earlier /api/show of the same digest; undefined while unknown.
   */
  capabilitiesOf(model: string): readonly string[] | undefined {
    const m = this.modelsOnDisk.get(model);
    if (m === undefined) return undefined;
    return m.capabilities ?? this.shownCapabilities.get(m.digest ?? m.name);
  }

  /** Whether the model here has every one of `needed`; undefined while its capabilities are unknown. */
  canServe(model: string, needed: readonly string[]): boolean | undefined {
    const caps = this.capabilitiesOf(model);
    if (caps === undefined) return undefined;
    for (const c of needed) if (!caps.includes(c)) return false;
    return true;
  }

  /** GPU reading from the agent when it is fresh enough to trust; otherwise null (unknown, never idle). */
  freshAgent(staleMs: number, now = Date.now()): AgentStatusDto | null {
    if (!this.agent || this.agentAt === null) return null;
    if (!this.agent.nvml.available) return null;
    if (now - this.agentAt + (this.agent.readingAgeMs ?? 0) > staleMs) return null;
    return this.agent;
  }

  gpuUtilization(staleMs: number, now = Date.now()): number | null {
    return this.freshAgent(staleMs, now)?.host.meanUtilizationGpu ?? null;
  }

  /** The model's size here as last listed (on disk, else in memory); 0 when unknown. */
  sizeOf(model: string): number {
    return this.modelsOnDisk.get(model)?.size ?? this.modelsLoaded.get(model)?.size ?? 0;
  }

  /**
   * Requests sent here to load a model that have no answer yet, each with what to do if Ollama
   * holds that load back (no room: every resident model busy): nothing has started for them here.
   */
  readonly loadWatchers = new Set<{ model: string; onHeld: () => void }>();

  /** What the last /api/ps listed (to tell, at the next one, which models a load evicted). */
  lastPs: { name: string; expiresAt: number | null }[] = [];
  /** Models unloaded on a client's request since the last /api/ps (not evictions: they teach no room). */
  readonly unloadedOnRequest = new Set<string>();

  /** Records that `model` left memory (an unload it answered). */
  noteUnloaded(model: string): void {
    this.unloadedOnRequest.add(model);
    this.modelsLoaded.delete(model);
    this.loading.delete(model);
  }

  /** Records that `model` is resident now (it just answered a request). */
  noteLoaded(model: string, keepAliveMs = 5 * 60_000): void {
    this.loading.delete(model);
    // Its answer does not say whether a load still pending here will evict it next.
    const by = this.maybeEvicted.get(model);
    if (by !== undefined && !this.evictionPending(by)) this.maybeEvicted.delete(model);
    const existing = this.modelsLoaded.get(model);
    if (existing) {
      existing.expiresAt = keepAliveMs < 0 ? null : Date.now() + keepAliveMs;
      return;
    }
    const size = this.modelsOnDisk.get(model)?.size ?? 0;
    this.modelsLoaded.set(model, {
      name: model,
      size,
      sizeVram: size,
      expiresAt: keepAliveMs < 0 ? null : Date.now() + keepAliveMs,
      raw: { name: model, model, size, size_vram: size },
    });
  }
}

/**
 * The runner options of a request that Ollama compares with the loaded runner's (server/sched.go
 * needsReload: api.Runner's num_ctx, num_batch, num_gpu, use_mmap, num_thread, and context shift).
 * Absent = the server's default.
 */
export interface RunnerOptions {
  numCtx?: number;
  numBatch?: number;
  /** Only a non-negative num_gpu forces a reload (a negative one means "decide"). */
  numGpu?: number;
  useMmap?: boolean;
  numThread?: number;
  /** False when the request turns context shift off. */
  noShift?: boolean;
}

/**
 * Whether a request with `want` makes Ollama reload a runner loaded with `loaded`: two defaults
 * never differ, a value differs from the default (or another value) unless equal.
 */
export function optionsForceReload(loaded: RunnerOptions, want: RunnerOptions): boolean {
  if ((loaded.noShift === true) !== (want.noShift === true)) return true;
  if (want.numCtx !== undefined && loaded.numCtx !== want.numCtx) return true;
  // A runner loaded with a named num_ctx, asked for the default: a reload unless they happen to agree (not known here).
  if (want.numCtx === undefined && loaded.numCtx !== undefined) return true;
  if ((want.numBatch ?? 512) !== (loaded.numBatch ?? 512)) return true;
  if (want.numGpu !== undefined && want.numGpu >= 0 && loaded.numGpu !== want.numGpu) return true;
  if (want.useMmap !== loaded.useMmap) return true;
  return (want.numThread ?? 0) !== (loaded.numThread ?? 0);
}

/** How long a backend that answered "server busy" (its own queue full) is passed over. */
export const BUSY_BACKOFF_MS = 2000;

/** Routes newer than some Ollama servers still in use, and the version that added each (Ollama's changelog). */
export const ROUTE_SINCE: Readonly<Record<string, readonly [number, number, number]>> = {
  '/v1/messages': [0, 14, 0],
  '/v1/responses': [0, 13, 3],
  '/api/status': [0, 16, 2],
};

/** Whether a version ("0.13.2", "v0.12.3-rc1") is below `min`; false for 0.0.0 (a dev build) or one that does not parse. */
export function versionBelow(version: string, min: readonly [number, number, number]): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (m === null) return false;
  const v = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (v[0] === 0 && v[1] === 0 && v[2] === 0) return false;
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i] < min[i];
  return false;
}

/** Gin's default 404 body: the server has no such route (an Ollama older than it). */
export const PAGE_NOT_FOUND = '404 page not found';

/** Whether a 404 is Gin's NotFound (text/plain `404 page not found`) rather than Ollama's JSON "model not found". */
export function isPageNotFound(contentType: string | undefined, body: Buffer): boolean {
  if (contentType !== undefined && !contentType.startsWith('text/plain')) return false;
  return body.length < 64 && body.toString('latin1').trim() === PAGE_NOT_FOUND;
}

/** A cold load's load_duration teaches how fast this backend loads models. */
export function learnLoad(b: Backend, model: string, body: Buffer, elapsedMs: number): void {
  const size = b.modelsOnDisk.get(model)?.size ?? 0;
  if (size <= 0) return;
  // Ollama's load-only answer carries no load_duration: the call's own duration is the load time.
  let ms = elapsedMs;
  try {
    const ns = Number(JSON.parse(body.toString('utf8'))?.load_duration);
    if (ns > 0) ms = ns / 1e6;
  } catch {
    // no JSON: keep the elapsed time
  }
  b.learned.noteLoad(ms, size);
}
