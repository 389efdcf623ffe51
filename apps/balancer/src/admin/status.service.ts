import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { FleetEvents } from '../fleet/fleet-events';
import { OutlierDetection } from '../fleet/outlier-detection';
import { OutputLengths } from '../fleet/output-lengths';
import { PlacementQueue } from '../routing/placement-queue';
import { Rewarm } from '../routing/rewarm';
import { RoutingService } from '../routing/routing.service';
import { SHARED_STATE, SharedState } from '../shared-state';

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

/** The JSON view of every backend that the status endpoint and the dashboard show. */
@Injectable()
export class StatusService {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly routing: RoutingService,
    private readonly queue: PlacementQueue,
    private readonly outliers: OutlierDetection,
    private readonly events: FleetEvents,
    @Inject(SHARED_STATE) private readonly shared: SharedState | null,
    private readonly outputLengths: OutputLengths,
    private readonly rewarm: Rewarm,
  ) {}

  backendView(b: Backend, now = Date.now()) {
    const agent = b.agent;
    return {
      name: b.name,
      url: b.origin,
      /** config, dns (OLLAMA_BACKENDS_DNS) or registered (by its agent). */
      source: b.source,
      health: b.health,
      available: b.isAvailable(now),
      cordoned: b.cordoned,
      /** Why it is leaving the fleet (draining, then removed), or null. */
      retiring: b.retiring,
      ejected: b.isEjected(now),
      ejectedUntil: b.isEjected(now) ? iso(b.ejectedUntil) : null,
      inFlight: b.inFlight,
      inFlightByModel: Object.fromEntries(b.modelInFlight),
      served: b.served,
      consecutiveFailures: b.consecutiveFailures,
      lastPollAt: iso(b.lastPollAt),
      lastOkAt: iso(b.lastOkAt),
      lastError: b.lastError,
      version: b.version,
      missingRoutes: [...b.missingRoutes].sort(),
      parallel: b.config.parallel,
      weight: b.weight,
      models: [...b.modelsOnDisk.keys()].sort(),
      loaded: [...b.modelsLoaded.values()].map((m) => ({
        name: m.name,
        sizeVram: m.sizeVram,
        expiresAt: iso(m.expiresAt),
        inFlight: b.inFlightFor(m.name),
      })),
      inventoryAt: iso(b.inventoryAt),
      learned: {
        serviceMs: b.learned.serviceMsAll.value === null ? null : Math.round(b.learned.serviceMsAll.value),
        ttfbMs: b.learned.ttfbMs.value === null ? null : Math.round(b.learned.ttfbMs.value),
        loadMsPerGB: b.learned.loadMsPerByte.value === null ? null : Math.round(b.learned.loadMsPerByte.value * 1e9),
        /** Parallel slots per model: as configured, or as learned (proven so far) when nobody said. */
        slots: Object.fromEntries([...b.learned.slots.keys()].sort().map((m) => [m, b.slotsFor(m)])),
        slotsLearned: b.config.learnSlots === true,
        /** Models it keeps loaded at once: configured, or learned (known once an eviction showed it). */
        maxLoadedModels: b.room,
        maxLoadedModelsKnown: b.roomKnown,
        tokensPerSecond:
          b.learned.tokensPerSecAll.value === null ? null : Math.round(b.learned.tokensPerSecAll.value * 10) / 10,
      },
      agent: b.config.agentUrl
        ? {
            url: b.config.agentUrl,
            fresh: b.freshAgent(this.config.agentStaleMs, now) !== null,
            ageMs: b.agentAt === null ? null : now - b.agentAt + (agent?.readingAgeMs ?? 0),
            error: b.agentError,
            nvml: agent?.nvml ?? null,
            host: agent?.host ?? null,
            gpus: agent?.gpus ?? [],
          }
        : null,
    };
  }

  /** Several replicas over Redis: null without REDIS_URL (a single process). */
  sharedStateView() {
    const s = this.shared;
    if (!s) return null;
    return {
      up: s.up,
      replica: s.link.replicaId,
      replicas: s.link.replicasSeen,
      downSince: s.up || s.link.downSince === 0 ? null : iso(s.link.downSince),
      outages: s.link.outages,
      slotsHeld: s.slots.held.size,
      waitingInRedis: s.slots.waiting,
      leaseMs: s.link.config.leaseMs,
      heartbeatMs: s.link.config.heartbeatMs,
    };
  }

  status() {
    const now = Date.now();
    return {
      policy: this.routing.policy.name,
      time: new Date(now).toISOString(),
      queue: {
        length: this.queue.length,
        max: this.config.queueMax,
        timeoutMs: this.config.queueTimeoutMs,
        waiting: this.queue.waitingByClassAndKey().map((w) => ({ class: w.cls, key: w.key, waiting: w.waiting })),
      },
      priority: {
        classes: this.config.priority.classes,
        defaultClass: this.config.priority.defaultClass,
        sheddable: this.config.priority.sheddable,
        shedAt: this.config.priority.shedAt,
        minShareEvery: this.config.priority.minShareEvery,
      },
      keys: this.config.apiKeys.map((k) => ({
        name: k.name,
        class: k.priorityClass,
        weight: k.weight,
        tokensPerMinute: k.tokensPerMinute || null,
        tokensPerDay: k.tokensPerDay || null,
      })),
      counters: {
        routed: this.routing.counters.routed,
        queued: this.queue.counters.queued,
        queueTimeouts: this.queue.counters.timeouts,
        queueRejected: this.queue.counters.rejected,
        queueDisplaced: this.queue.counters.displaced,
        queueShed: this.queue.counters.shed,
        byReason: Object.fromEntries(this.routing.counters.byReason),
        ejections: this.outliers.ejectionsTotal,
        // Background loads where a model fits: evicted models still in use (REWARM_EVICTED), and
        // another copy of a model its warm holders cannot keep up with (PRELOAD_SATURATED).
        rewarms: { ...this.rewarm.counters.rewarms },
        scaleOuts: { ...this.rewarm.counters.scaleOuts },
      },
      backends: this.registry.backends.map((b) => this.backendView(b, now)),
      /** What the fleet as a whole has learned: each model's usual output tokens (eval_count), this replica's. */
      learned: { outputTokens: this.outputLengths.usual() },
      sharedState: this.sharedStateView(),
      decisions: this.routing.recentDecisions.slice(-20).reverse(),
      events: this.events.events.slice(-20).reverse(),
    };
  }
}
