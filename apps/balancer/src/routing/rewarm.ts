import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend, learnLoad } from '../fleet/backend';
import { FleetEvents } from '../fleet/fleet-events';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { SHARED_STATE, SharedState } from '../shared-state';
import { RoutingService } from './routing.service';

/** Background loads under way at once, fleet-wide (each is one model on one backend). */
const MAX_LOADS = 4;
/** A model's need for another copy is looked at most this often (from its routing decisions). */
const SCALE_OUT_CHECK_MS = 250;
/** A background load that failed on a backend (the model does not fit there, say) is not tried there again for this long. */
const FAILED_LOAD_BACKOFF_MS = 60_000;

type Kind = 'rewarm' | 'scale-out';

/** A key for `model` on `b` (a copy per backend, a failure per backend). */
const perBackend = (model: string, b: Backend): string => `${model}\n${b.name}`;

/**
 * Loads the balancer starts on its own, in the background, where a model fits beside what is loaded
 * (Ollama's load-only request, an empty generate), so that no request waits for them:
 * - rewarm: a load is sent that evicts a model still in use and loaded nowhere else (or /api/ps
 *   shows such an eviction; make-before-break, as early as it is known): its next requests find it
 *   warm instead of each paying for a reload, or queueing behind one on a server that has to evict again. Where no
 *   server is known to have room, the load its next request would start (on a server whose room
 *   is not known) is started now rather than by that request;
 * - scale-out: a model's arrivals have been past what its warm holders may serve for as long as the
 *   load would take (at most 5 s: a shorter burst is over before the copy is ready); another copy is
 *   loaded while they keep serving, instead of when a request has queued long enough to pay for it.
 *   A server that holds nothing at all gets a copy sooner: as soon as the model's requests are past
 *   the slots its warm holders have shown (several such servers may load at once, one per look);
 * RoutingService.rewarmTarget / scaleOutTarget decide whether and where; neither loads where a load
 * evicts for sure. Off with REWARM_EVICTED=false / PRELOAD_SATURATED=false (and with any policy but
 * predictive). Replicas sharing Redis each see the same eviction or overload: a model's background
 * load is claimed there first (SharedClaims), so one replica loads it and the others see that load
 * in /api/ps; while Redis is away each acts on its own.
 */
@Injectable()
export class Rewarm {
  private readonly log = new Logger('Rewarm');
  /** Models being loaded in the background now (one such load per model at a time). */
  private readonly underWay = new Set<string>();
  /** When each model's need for another copy was last looked at. */
  private readonly checked = new Map<string, number>();
  /** Until when a background load of a model on a backend (key: model, newline, backend name) is not tried again. */
  private readonly failedUntil = new Map<string, number>();
  readonly counters = {
    rewarms: { started: 0, loaded: 0, failed: 0 },
    scaleOuts: { started: 0, loaded: 0, failed: 0 },
  };

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly routing: RoutingService,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly events: FleetEvents,
    @Optional() @Inject(SHARED_STATE) private readonly shared: SharedState | null = null,
  ) {
    // Listen only for what may act: the decision listener runs for every routed request.
    const predictive = routing.policy.weighsWaiting === true;
    if (predictive && config.rewarmEvicted) {
      inventory.evictionListeners.push((b, evicted) => {
        for (const model of evicted) this.consider(model, b);
      });
      // As soon as a load that evicts it is sent, not once /api/ps shows it gone (that load's time later).
      routing.evictionAheadListeners.push((b, victim) => this.consider(victim, b));
    }
    if (predictive && config.preloadSaturated)
      routing.decisionListeners.push((d) => {
        if (d.model !== null) this.considerScaleOut(d.model, d.at);
      });
  }

  /** Rewarms `model` (just evicted from `from`) where RoutingService says, if it says so. */
  consider(model: string, from: Backend): void {
    if (this.underWay.has(model) || this.underWay.size >= MAX_LOADS) return;
    const target = this.routing.rewarmTarget(model, from);
    if (target === null || this.failedLately(model, target.backend)) return;
    void this.load('rewarm', model, target.backend, target.loadMs, `evicted from ${from.name}, in use, loaded nowhere`);
  }

  /** Loads another copy of `model` (just routed) where RoutingService says, if it says so. */
  considerScaleOut(model: string, now: number): void {
    if (this.underWay.size >= MAX_LOADS) return;
    const last = this.checked.get(model);
    if (last !== undefined && now - last < SCALE_OUT_CHECK_MS) return;
    if (this.checked.size > 10_000) this.checked.clear(); // bounded: names come from clients
    this.checked.set(model, now);
    // While one of its loads is under way, only a copy on an idle server (one per server) may start.
    const target = this.routing.scaleOutTarget(model, now, this.underWay.has(model));
    if (target === null || this.failedLately(model, target.backend)) return;
    const why = target.idle
      ? 'its warm holders are busy and this server holds nothing'
      : 'its warm holders cannot keep up';
    void this.load('scale-out', model, target.backend, target.loadMs, why, target.idle);
  }

  private failedLately(model: string, b: Backend): boolean {
    const key = perBackend(model, b);
    const until = this.failedUntil.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.failedUntil.delete(key);
    return false;
  }

  private async load(kind: Kind, model: string, b: Backend, loadMs: number, why: string, idle = false): Promise<void> {
    const counters = kind === 'rewarm' ? this.counters.rewarms : this.counters.scaleOuts;
    // Copies on idle servers are one per server (several may load at once); others one per model.
    const key = idle ? perBackend(model, b) : model;
    this.underWay.add(key);
    // Another replica saw the same need a moment ago: its load will show in /api/ps (the claim lasts
    // the load and one inventory period beyond it).
    const claimMs = Math.min(loadMs, 120_000) + this.config.inventoryIntervalMs + 1000;
    if (this.shared?.up && !(await this.shared.claims.claim(`load:${key}`, claimMs))) {
      this.underWay.delete(key);
      return;
    }
    const started = Date.now();
    counters.started++;
    // Under way: requests for it wait for this load there rather than start another elsewhere.
    b.noteLoadStarted(model, started + loadMs, started, true);
    this.events.note(b, kind, `loading ${model} (${why})`);
    try {
      const r = await this.client.backend(b, '/api/generate', {
        method: 'POST',
        body: JSON.stringify({ model: b.modelsOnDisk.get(model)?.raw.model ?? model }),
        headers: { 'content-type': 'application/json' },
        // A load may take as long as a request's first byte may (HEADERS_TIMEOUT_MS).
        timeoutMs: this.config.headersTimeoutMs,
      });
      if (r.status !== 200) throw new Error(`answered ${r.status}: ${r.body.toString('utf8').slice(0, 200)}`);
      b.noteLoaded(model);
      learnLoad(b, model, r.body, Date.now() - started);
      counters.loaded++;
    } catch (e) {
      counters.failed++;
      // Not under way any more: the next request for it decides afresh. Not tried there again for a
      // while by the balancer itself (a model too large for that server would fail every look).
      b.loading.delete(model);
      if (this.failedUntil.size > 10_000) this.failedUntil.clear(); // bounded: names come from clients
      this.failedUntil.set(perBackend(model, b), Date.now() + FAILED_LOAD_BACKOFF_MS);
      this.log.warn(`${kind} of ${model} on ${b.name} failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.underWay.delete(key);
      this.inventory.refreshSoon(b);
      // Requests held back for this load (or that waited for it) may be placed now.
      this.routing.loadSettled();
    }
  }
}
