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

  /** Whether a request for `model` would exceed a concurrency cap here. */
  atCap(model: string | null): boolean {
    const c = this.config;
    if (c.maxConcurrency > 0 && this.inFlight >= this.effectiveCap(c.maxConcurrency)) return true;
    if (model !== null && c.modelConcurrency > 0 && this.inFlightFor(model) >= this.effectiveCap(c.modelConcurrency))
      return true;
    return false;
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

  isLoaded(model: string, now = Date.now()): boolean {
    const m = this.modelsLoaded.get(model);
    if (!m) return false;
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

  /** Records that `model` left memory (an unload it answered). */
  noteUnloaded(model: string): void {
    this.modelsLoaded.delete(model);
  }

  /** Records that `model` is resident now (it just answered a request). */
  noteLoaded(model: string, keepAliveMs = 5 * 60_000): void {
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
