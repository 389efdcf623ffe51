import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { Backend, LoadedModel, ModelOnDisk } from './backend';
import { BackendRegistry } from './backend-registry.service';
import { OllamaClient, UpstreamResponse } from './ollama-client';

/** A load sent this long ago and not in /api/ps is held back by Ollama (no room), not under way. */
const BLOCKED_AFTER_MS = 250;
/** A load longer than this may have evicted another model: look at the backend again soon. */
const REAL_LOAD_NS = 200e6;

/**
 * What each backend holds on disk (/api/tags) and in memory (/api/ps): refreshed by the poller,
 * from the merged views' own calls, and soon after anything that may have changed it.
 */
@Injectable()
export class ModelInventory {
  private readonly refreshTimers = new Map<Backend, NodeJS.Timeout>();
  /** /api/show calls in progress, per (backend, digest). */
  private readonly showing = new Map<string, Promise<void>>();
  /** Called with the models /api/ps shows a load evicted from a backend (not unloaded on request, not expired). */
  readonly evictionListeners: ((b: Backend, evicted: string[]) => void)[] = [];

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly client: OllamaClient,
  ) {}

  /** Refreshes what a backend has on disk and in memory. Throws when the backend cannot answer. */
  async refresh(b: Backend): Promise<void> {
    const [tags, ps] = await Promise.all([
      this.client.backend(b, '/api/tags', { timeoutMs: this.config.healthTimeoutMs * 2 }),
      this.client.backend(b, '/api/ps', { timeoutMs: this.config.healthTimeoutMs * 2 }),
    ]);
    this.applyTags(b, tags);
    this.applyPs(b, ps);
    b.inventoryAt = Date.now();
  }

  applyTags(b: Backend, r: UpstreamResponse): void {
    const models = modelsOf(r, '/api/tags');
    b.modelsOnDisk.clear();
    for (const { m, name } of models) {
      const entry: ModelOnDisk = {
        name: normaliseModelName(name),
        size: Number(m.size) || 0,
        digest: typeof m.digest === 'string' && m.digest !== '' ? m.digest : null,
        capabilities: stringList(m.capabilities),
        raw: m,
      };
      b.modelsOnDisk.set(entry.name, entry);
    }
  }

  applyPs(b: Backend, r: UpstreamResponse): void {
    const models = modelsOf(r, '/api/ps');
    const now = Date.now();
    // Resident before, and not about to expire: one of them missing now, beside a newcomer, was evicted.
    const before = b.lastPs.filter((m) => m.expiresAt === null || m.expiresAt > now + 1000).map((m) => m.name);
    b.modelsLoaded.clear();
    for (const { m, name } of models) {
      const expires = typeof m.expires_at === 'string' ? Date.parse(m.expires_at) : NaN;
      // Go's zero time or a far-future date means "kept forever".
      const expiresAt =
        Number.isFinite(expires) && expires > 0 && expires < Date.now() + 365 * 86400_000 ? expires : null;
      const entry: LoadedModel = {
        name: normaliseModelName(name),
        size: Number(m.size) || 0,
        sizeVram: Number(m.size_vram) || 0,
        expiresAt,
        raw: m,
      };
      b.modelsLoaded.set(entry.name, entry);
    }
    const after = [...b.modelsLoaded.keys()];
    b.lastPs = [...b.modelsLoaded.values()].map((m) => ({ name: m.name, expiresAt: m.expiresAt }));
    // A load under way that /api/ps does not list yet still takes its place.
    const withLoading = [...after, ...[...b.loading.keys()].filter((m) => !b.modelsLoaded.has(m))];
    const arrived = withLoading.find((m) => !before.includes(m));
    const gone =
      arrived === undefined ? [] : before.filter((m) => !b.modelsLoaded.has(m) && !b.unloadedOnRequest.has(m));
    const evicted = gone.length > 0;
    if (evicted) b.learned.room.observeLoad(before, withLoading, arrived!);
    else b.learned.room.observe(after.length);
    // A load sent a while ago that /api/ps does not list, beside models that are all still there:
    // Ollama holds it until one of them goes idle, so it is full (and later requests must not
    // queue behind that load as if it were under way).
    for (const [m, l] of b.loading)
      if (!b.modelsLoaded.has(m) && now - l.since >= BLOCKED_AFTER_MS && after.length > 0 && !evicted) {
        b.learned.room.observeFull(after.length);
        b.loading.delete(m);
        // The requests waiting on that load have not started: they may go elsewhere now.
        for (const w of [...b.loadWatchers]) if (w.model === m) w.onHeld();
      }
    // A model a pending load may evict stays in doubt, though still listed, until that load is over.
    for (const [victim, by] of b.maybeEvicted)
      if (!b.modelsLoaded.has(victim) || !b.evictionPending(by)) b.maybeEvicted.delete(victim);
    b.unloadedOnRequest.clear();
    if (evicted) for (const l of this.evictionListeners) l(b, gone);
    // Options recorded for runners that are gone no longer describe anything.
    for (const m of b.runnerOptions.keys()) if (!b.modelsLoaded.has(m) && !b.loading.has(m)) b.runnerOptions.delete(m);
  }

  /** Refreshes a backend's inventory shortly (coalescing bursts), e.g. after a model load. */
  refreshSoon(b: Backend, delayMs = 50): void {
    if (this.refreshTimers.has(b)) return;
    const t = setTimeout(() => {
      this.refreshTimers.delete(b);
      void this.refresh(b).catch(() => undefined);
    }, delayMs);
    t.unref();
    this.refreshTimers.set(b, t);
  }

  /** A backend said it does not have the model: stop sending it there until the next refresh. */
  forgetModel(b: Backend, model: string): void {
    b.modelsOnDisk.delete(model);
    b.modelsLoaded.delete(model);
  }

  /**
   * A model request succeeded there: the model is resident now, until its keep_alive (ms, -1 for
   * good, 0 unloads it right after) runs out. A real load may have evicted another model there:
   * look again soon rather than at the next poll.
   */
  noteServed(b: Backend, model: string, keepAliveMs: number | undefined, loadDurationNs: number | undefined): void {
    b.noteLoaded(model, keepAliveMs);
    if ((loadDurationNs ?? 0) > REAL_LOAD_NS) this.refreshSoon(b);
  }

  /**
   * Makes sure the capabilities of `model` are known on each available backend holding it: those
   * /api/tags did not list are asked with /api/show, once per (backend, digest), concurrent asks
   * shared. Never throws: a backend that cannot say stays unknown (routing then lets it decide).
   */
  async learnCapabilities(model: string): Promise<void> {
    const asks: Promise<void>[] = [];
    for (const b of this.registry.available()) {
      const m = b.modelsOnDisk.get(model);
      if (m === undefined || b.capabilitiesOf(model) !== undefined) continue;
      const key = `${b.name}\u0000${m.digest ?? m.name}`;
      let ask = this.showing.get(key);
      if (ask === undefined) {
        ask = this.show(b, m).finally(() => this.showing.delete(key));
        this.showing.set(key, ask);
      }
      asks.push(ask);
    }
    if (asks.length > 0) await Promise.all(asks);
  }

  /** Whether some available backend holding `model` has capabilities not known yet. */
  capabilitiesUnknown(model: string): boolean {
    for (const b of this.registry.available())
      if (b.modelsOnDisk.has(model) && b.capabilitiesOf(model) === undefined) return true;
    return false;
  }

  private async show(b: Backend, m: ModelOnDisk): Promise<void> {
    try {
      const r = await this.client.backend(b, '/api/show', {
        method: 'POST',
        body: JSON.stringify({ model: typeof m.raw.model === 'string' ? m.raw.model : m.name }),
        headers: { 'content-type': 'application/json' },
        timeoutMs: this.config.healthTimeoutMs * 2,
      });
      if (r.status !== 200) return;
      const caps = stringList(JSON.parse(r.body.toString('utf8'))?.capabilities);
      // An Ollama older than capabilities (0.6.4) lists none: it checks tools and thinking itself.
      if (caps !== null) b.shownCapabilities.set(m.digest ?? m.name, caps);
    } catch {
      // Unknown stays unknown: the backend answers for itself.
    }
  }

  /** Available backends that hold the model loaded now (as last seen). */
  holdersOf(model: string): Backend[] {
    return this.registry.available().filter((b) => b.isLoaded(model));
  }

  /** Largest size any backend reported for the model (0 when unknown). */
  largestSize(model: string | null): number {
    if (model === null) return 0;
    let size = 0;
    for (const b of this.registry.backends) size = Math.max(size, b.sizeOf(model));
    return size;
  }
}

/** The named entries of an /api/tags or /api/ps answer; throws when it is not one. */
function modelsOf(r: UpstreamResponse, path: string): { m: any; name: string }[] {
  if (r.status !== 200) throw new Error(`${path} answered ${r.status}`);
  const models = JSON.parse(r.body.toString('utf8'))?.models;
  if (!Array.isArray(models)) throw new Error(`${path}: no models array`);
  const out: { m: any; name: string }[] = [];
  for (const m of models) {
    const name = typeof m?.name === 'string' ? m.name : typeof m?.model === 'string' ? m.model : null;
    if (name) out.push({ m, name });
  }
  return out;
}

/** An array of strings, else null. */
function stringList(v: unknown): readonly string[] | null {
  if (!Array.isArray(v)) return null;
  return v.filter((c): c is string => typeof c === 'string');
}
