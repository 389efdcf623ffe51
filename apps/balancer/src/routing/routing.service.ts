import { Inject, Injectable, Logger } from '@nestjs/common';
import { parseModelName } from '@app/ollama-names';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { ModelInventory } from '../fleet/model-inventory';
import { Lifecycle } from '../lifecycle/lifecycle';
import { DemandReading } from '../shared-state';
import { Lease, LeaseLedger } from './lease-ledger';
import { NoCandidate, Placement, WAIT, WAIT_BY_CHOICE } from './placement';
import { PlaceWaiter, PlacementQueue, QueuedRequest } from './placement-queue';
import {
  createPolicy,
  IDLE_DEMAND_PER_S,
  SATURATED,
  inFlightAt,
  Pick,
  PickReason,
  PolicyContext,
  Prediction,
  PredictivePolicy,
  rankMs,
  RouteRequest,
  RoutingPolicy,
} from './policies';
import { SessionAffinity } from './session-affinity';

export interface Decision {
  at: number;
  model: string | null;
  backend: string;
  reason: PickReason;
  predictedMs?: number;
  queuedMs: number;
  candidates: number;
}

/** Until a backend has shown its prompt speed: about 1,000 prompt tokens per second. */
const DEFAULT_PROMPT_MS_PER_TOKEN = 1;
/** Affinity always tolerates this much extra predicted time (keeps short chats together). */
const MIN_AFFINITY_MS = 50;
const KEEP_DECISIONS = 50;
/** A backend predicted within this (or 10 %) of the best is as good, for a shared line's preferences. */
const SHARED_PREFERENCE_SLACK_MS = 50;
const withSlack = (bestMs: number) => bestMs + Math.max(SHARED_PREFERENCE_SLACK_MS, bestMs * 0.1);
const SHUTTING_DOWN = new NoCandidate(503, 'balancer is shutting down', 1);
/** Demand is counted over about this long (an exponentially decaying count). */
const DEMAND_TAU_MS = 10_000;
/** A cold dispatch: look at the backend's /api/ps this soon (what the load evicted, whether it started). */
const AFTER_COLD_MS = 300;
/** An overload that has lasted this long is no burst, however long a load is predicted to take. */
const SUSTAINED_OVERLOAD_MS = 5000;
/**
 * An overload not looked at for this long (its model's requests stopped, or none was placed: under
 * overload they are placed as slots free) is over. A pause that long is itself a lull.
 */
const OVERLOAD_GAP_MS = SUSTAINED_OVERLOAD_MS;

/** An arrival rate is judged over at least this long (a few requests at once are not a rate yet). */
const MIN_ARRIVALS_SPAN_MS = 3000;

/** A model's arrival count as of `now`, each arrival fading over DEMAND_TAU_MS. */
const decayed = (c: { n: number; at: number }, now: number): number => c.n * Math.exp(-(now - c.at) / DEMAND_TAU_MS);

/**
 * Requests per second arriving for each model, decaying over DEMAND_TAU_MS. With REDIS_URL every
 * replica sees only its share of the traffic: the others' readings (`setOthers`, exchanged through
 * Redis every heartbeat by SharedDemandSync) are added to its own, so that overload and idle
 * demand are judged on the fleet's traffic, not on a third of it behind three replicas.
 */
export class Demand {
  private readonly counts = new Map<string, { n: number; at: number; first: number }>();
  private since = 0;
  private others: ReadonlyMap<string, DemandReading> = new Map();

  /** The other replicas' readings, summed per model (empty: this replica alone, or Redis away). */
  setOthers(others: ReadonlyMap<string, DemandReading>): void {
    this.others = others;
  }

  /** This replica's own readings of its `max` busiest models, for the other replicas. */
  readings(now: number, max = 256): Record<string, DemandReading> {
    const rows: [string, DemandReading][] = [];
    const window = this.since !== 0 && now - this.since >= DEMAND_TAU_MS;
    for (const model of this.counts.keys()) {
      const arrivals = this.ownArrivals(model, now)!;
      if (arrivals < 1e-3) continue;
      rows.push([model, { arrivals, rate: this.ownRate(model, now)!, perS: window ? arrivals : null }]);
    }
    rows.sort((a, b) => b[1].arrivals - a[1].arrivals);
    return Object.fromEntries(rows.slice(0, max));
  }

  note(model: string, now: number): void {
    if (this.since === 0) this.since = now;
    const c = this.counts.get(model);
    if (!c) {
      if (this.counts.size > 10_000) this.counts.clear(); // bounded: names come from clients
      this.counts.set(model, { n: 1, at: now, first: now });
      return;
    }
    c.n = decayed(c, now) + 1;
    c.at = now;
  }

  /**
   * The model's own arrival rate so far (over at least 3 s), before a full window has passed too.
   * It divides the decayed count by the time elapsed, which reads a steady rate low while the window
   * fills (63 % of it at 10 s, 86 % at 3 s): the eviction rules were tuned on this reading.
   */
  arrivals(model: string, now: number): number | null {
    return plus(this.ownArrivals(model, now), this.others.get(model)?.arrivals);
  }

  private ownArrivals(model: string, now: number): number | null {
    const c = this.counts.get(model);
    if (!c) return null;
    const span = Math.max(MIN_ARRIVALS_SPAN_MS, Math.min(DEMAND_TAU_MS, now - c.first));
    return (decayed(c, now) * 1000) / span;
  }

  /**
   * The model's arrival rate (over at least 3 s), read without that lag: the decayed count of a
   * steady rate r after T ms is r·tau·(1 − e^(−T/tau)), so it is divided by that weight. For what
   * evicts nothing (scale-out), where acting early costs only an idle server's load.
   */
  rate(model: string, now: number): number | null {
    return plus(this.ownRate(model, now), this.others.get(model)?.rate);
  }

  private ownRate(model: string, now: number): number | null {
    const c = this.counts.get(model);
    if (!c) return null;
    const span = Math.max(MIN_ARRIVALS_SPAN_MS, now - c.first);
    const weight = DEMAND_TAU_MS * (1 - Math.exp(-span / DEMAND_TAU_MS));
    return (decayed(c, now) * 1000) / weight;
  }

  /**
   * Null until this replica has seen a full window of traffic: what nobody has asked for yet is
   * unknown, not unwanted. The other replicas' full windows are added.
   */
  perS(model: string, now: number): number | null {
    if (this.since === 0 || now - this.since < DEMAND_TAU_MS) return null;
    return (this.ownArrivals(model, now) ?? 0) + (this.others.get(model)?.perS ?? 0);
  }
}

/** a + b where either may be unknown (null when both are). */
const plus = (a: number | null, b: number | null | undefined): number | null =>
  a === null ? (b ?? null) : a + (b ?? 0);

/**
 * Filter -> score -> pick. Filters drop backends that cannot serve (unhealthy, cordoned, ejected,
 * without the model, at their caps); the configured policy ranks the rest. When every candidate is
 * at its cap the request waits in the placement queue instead of piling onto one server. Placing
 * answers with a value (a lease, wait, or no candidate), never by throwing.
 */
@Injectable()
export class RoutingService {
  readonly policy: RoutingPolicy;
  private readonly predictor = new PredictivePolicy();
  private readonly ctx: PolicyContext;
  readonly demand = new Demand();
  /** Per model, since when (and as of when) its arrivals have been past what its warm holders may serve. */
  private readonly overloadedSince = new Map<string, { since: number; at: number }>();
  readonly recentDecisions: Decision[] = [];
  readonly counters = { routed: 0, byReason: new Map<string, number>() };
  /** Called for every decision (metrics and logs hook in here). */
  readonly decisionListeners: ((d: Decision) => void)[] = [];
  /**
   * Called when a request is sent cold to a backend whose room is (or may be) full, with the model
   * that load is expected to evict there (before /api/ps can show it).
   */
  readonly evictionAheadListeners: ((b: Backend, victim: string) => void)[] = [];
  private readonly log = new Logger('Routing');
  /**
   * Per model, in the queue pass under way: the backends the waiters passed over chose to wait for
   * (a waiter further back counts them ahead of it there, and only there).
   */
  private readonly chosenAhead = new Map<string | null, Map<string, number>>();
  private readonly drainPass: PlaceWaiter = (entry, ahead, queuedMs, now, behind) => {
    const model = entry.route.model;
    let chosen = this.chosenAhead.get(model);
    if (ahead === 0 || chosen === undefined) {
      chosen = new Map();
      this.chosenAhead.set(model, chosen);
    }
    const placed = this.placeNow(
      { ...entry.route, now, queuedAhead: ahead, queuedBehind: behind, queuedMs, aheadAt: chosen },
      entry.tried,
      queuedMs,
      true,
    );
    if (placed === WAIT_BY_CHOICE && this.lastChoice !== null)
      chosen.set(this.lastChoice, (chosen.get(this.lastChoice) ?? 0) + 1);
    if (ahead === 0 && placed !== WAIT_BY_CHOICE) this.chosenAhead.delete(model);
    return placed;
  };
  /** The backend the last placement that chose to wait is waiting for. */
  private lastChoice: string | null = null;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly ledger: LeaseLedger,
    private readonly queue: PlacementQueue,
    private readonly affinity: SessionAffinity,
    private readonly lifecycle: Lifecycle,
    private readonly inventory: ModelInventory,
  ) {
    this.policy = createPolicy(config.policy);
    this.ctx = {
      agentStaleMs: config.agentStaleMs,
      queueTimeoutMs: config.queueTimeoutMs,
      demandPerS: (model) => this.demand.perS(model, Date.now()),
      arrivalsPerS: (model) => this.demand.arrivals(model, Date.now()),
      provenLoadMsPerByte: () => {
        let slowest: number | null = null;
        for (const b of registry.backends) {
          const v = b.learned.loadMsPerByte.value;
          if (v !== null && (slowest === null || v > slowest)) slowest = v;
        }
        return slowest;
      },
      available: () => registry.available(),
      ...(ledger.othersInFlight ? { othersInFlight: ledger.othersInFlight } : {}),
    };
    registry.onCapacity(() => this.queue.drain(this.drainPass));
    lifecycle.onChange((state) => {
      // The drain deadline passed: every queued request gets 503 now.
      if (state === 'closing') this.queue.refuseAll(SHUTTING_DOWN);
    });
  }

  /**
   * Places the request at once: a lease on a backend, WAIT when every candidate is at its cap (or
   * older requests for the model wait: a new arrival never overtakes the queue), or no candidate.
   */
  place(req: RouteRequest, tried?: ReadonlySet<Backend>): Placement {
    if (this.lifecycle.state === 'closing') return SHUTTING_DOWN;
    if (req.model !== null && (tried === undefined || tried.size === 0)) this.demand.note(req.model, req.now);
    return this.placeNow(req, tried, 0, false);
  }

  /** Queues a request that place() told to wait; a refusal when it cannot wait. */
  enqueue(entry: QueuedRequest): NoCandidate | null {
    if (this.lifecycle.state === 'closing') return SHUTTING_DOWN;
    const refused = this.queue.offer(entry, Date.now());
    // A newcomer queued behind requests that chose to wait for a busy backend may take a free one:
    // look once the caller has finished queuing it (one pass per turn of the event loop, however many arrive).
    if (refused === null && this.policy.weighsWaiting && !this.drainSoon) {
      this.drainSoon = true;
      setImmediate(() => {
        this.drainSoon = false;
        this.queue.drain(this.drainPass);
      });
    }
    return refused;
  }
  private drainSoon = false;

  /** A load the balancer started in the background is over: requests held back for it may go now. */
  loadSettled(): void {
    this.registry.capacityChanged();
  }

  /** Takes a queued request out without an answer (its client left). */
  cancel(entry: QueuedRequest): void {
    this.queue.cancel(entry);
  }

  /** Whether a backend not yet tried could serve the model (on this route, with these capabilities) (for a retry). */
  hasCandidate(
    model: string | null,
    tried: ReadonlySet<Backend>,
    needs?: { capabilities?: readonly string[]; route?: string; digest?: string },
  ): boolean {
    return Array.isArray(
      this.candidatesFor(model, undefined, tried, Date.now(), needs?.capabilities, needs?.route, needs?.digest),
    );
  }

  /**
   * Backends that may serve the model: available, holding it (a backend whose inventory is not
   * known yet stays a candidate), and where the model has the capabilities the request needs (one
   * whose capabilities are unknown stays a candidate: it answers for itself); why not when none can.
   */
  private candidatesFor(
    model: string | null,
    displayModel: string | undefined,
    tried: ReadonlySet<Backend> | undefined,
    now: number,
    capabilities?: readonly string[],
    route?: string,
    digest?: string,
  ): Backend[] | NoCandidate {
    if (this.registry.backends.length === 0) return new NoCandidate(503, 'no Ollama backends are configured', 5);
    const available = this.registry.available(now).filter((b) => !tried?.has(b));
    // Nobody could be asked: that is 503, never "not found" (the ollama CLI answers a 404 by pulling).
    if (available.length === 0)
      return new NoCandidate(
        503,
        tried && tried.size > 0
          ? 'no healthy backend could take the request'
          : 'no healthy Ollama backend is available',
        5,
      );
    if (model === null) return available;
    let holding = available.filter((b) => b.inventoryAt === null || b.hasModel(model));
    if (holding.length > 0 && route !== undefined && holding.some((b) => b.lacksRoute(route))) {
      holding = holding.filter((b) => !b.lacksRoute(route));
      // As each of those Ollama servers would answer (Gin's NotFound), in the route's error shape.
      if (holding.length === 0) return new NoCandidate(404, '404 page not found');
    }
    if (digest !== undefined && holding.length > 0) {
      holding = holding.filter((b) => b.modelsOnDisk.get(model)?.digest === digest);
      if (holding.length === 0)
        return new NoCandidate(
          503,
          `no other healthy backend holds the same build of model '${displayModel ?? model}'`,
          5,
        );
    }
    if (holding.length > 0) {
      if (capabilities === undefined || capabilities.length === 0) return holding;
      const able = holding.filter((b) => b.canServe(model, capabilities) !== false);
      return able.length > 0 ? able : lacking(model, displayModel, capabilities, holding);
    }
    if (this.registry.backends.some((b) => b.hasModel(model)))
      return new NoCandidate(503, `no healthy backend holding model '${displayModel ?? model}' is available`, 5);
    return new NoCandidate(404, `model '${displayModel ?? model}' not found`);
  }

  private placeNow(
    req: RouteRequest,
    tried: ReadonlySet<Backend> | undefined,
    queuedMs: number,
    fromQueue: boolean,
  ): Placement {
    const candidates = this.candidatesFor(
      req.model,
      req.displayModel,
      tried,
      req.now,
      req.capabilities,
      req.route,
      req.digest,
    );
    if (!Array.isArray(candidates)) return candidates;
    if (!fromQueue && (this.ledger.grantsLater || (this.queue.length > 0 && this.queue.hasWaiting(req.model))))
      return WAIT;
    if (this.policy.weighsWaiting) {
      // The policy may judge that waiting for a busy (warm) backend beats a free (cold) one.
      const pick = this.choose(candidates, req);
      if (!this.ledger.hasRoom(pick.backend, req.model)) {
        if (!candidates.some((b) => b !== pick.backend && this.ledger.hasRoom(b, req.model))) return WAIT;
        this.lastChoice = pick.backend.name;
        return WAIT_BY_CHOICE;
      }
      return this.take(pick, req, queuedMs, candidates.length);
    }
    const open = candidates.filter((b) => this.ledger.hasRoom(b, req.model));
    if (open.length === 0) return WAIT;
    return this.take(this.choose(open, req), req, queuedMs, candidates.length);
  }

  /**
   * The candidates in order of preference, for a queue shared by replicas (it takes the first with a
   * free slot under the global caps, counting every replica's requests): the policy's choice (or the
   * session's pin) first, then the rest from least to most loaded. A policy that weighs waiting
   * (predictive) lists only the backends it predicts about as soon done as its choice, waiting
   * counted (the shared line's length as the requests ahead): it would rather wait for a fast or
   * warm server than send the request to a slow or cold one, as a single balancer does.
   */
  preferences(route: RouteRequest, tried?: ReadonlySet<Backend>): Backend[] | NoCandidate {
    const req = this.withSharedLine(route);
    const candidates = this.candidatesFor(req.model, req.displayModel, tried, req.now);
    if (!Array.isArray(candidates)) return candidates;
    const first = this.choose(candidates, req).backend;
    const model = req.model;
    if (this.policy.weighsWaiting) {
      const predicted = new Map(candidates.map((b) => [b, rankMs(this.predictor.predict(b, req, this.ctx))]));
      const bound = withSlack(Math.min(...predicted.values()));
      const rest = candidates.filter((b) => b !== first && predicted.get(b)! <= bound);
      rest.sort((a, b) => predicted.get(a)! - predicted.get(b)!);
      return [first, ...rest];
    }
    const rest = candidates.filter((b) => b !== first);
    const load = (b: Backend) => inFlightAt(b, model, this.ctx) / b.slotsFor(model);
    rest.sort((a, b) => load(a) - load(b));
    return [first, ...rest];
  }

  /**
   * Whether a slot handed over on `backend` suits a waiting request: still a candidate here, and,
   * for a policy that weighs waiting, predicted about as soon done as the best candidate.
   */
  acceptsGrant(route: RouteRequest, tried: ReadonlySet<Backend>, backend: string): boolean {
    const req = this.withSharedLine(route);
    const candidates = this.candidatesFor(req.model, req.displayModel, tried, req.now);
    if (!Array.isArray(candidates)) return false;
    const b = candidates.find((x) => x.name === backend);
    if (!b) return false;
    if (!this.policy.weighsWaiting) return true;
    return rankMs(this.predictor.predict(b, req, this.ctx)) <= this.predictionBound(candidates, req);
  }

  /** The requests waiting in a shared line for the model count as ahead of this one. */
  private withSharedLine(req: RouteRequest): RouteRequest {
    const waiting = this.ledger.waitingFor(req.model);
    return waiting > (req.queuedAhead ?? 0) ? { ...req, queuedAhead: waiting } : req;
  }

  /** The best predicted completion among the candidates, with a tolerance (10 %, at least 50 ms). */
  private predictionBound(candidates: Backend[], req: RouteRequest): number {
    let best = Infinity;
    for (const b of candidates) best = Math.min(best, rankMs(this.predictor.predict(b, req, this.ctx)));
    return withSlack(best);
  }

  /**
   * Places a queued request on the backend a shared ledger granted it a slot on: the policy prices
   * that backend alone (prediction and reason for the headers), the session is pinned to it. WAIT
   * when the backend is no longer a candidate here (the caller gives the slot back).
   */
  placeGranted(entry: QueuedRequest, backend: string, queuedMs: number, now: number): Placement {
    if (this.lifecycle.state === 'closing') return SHUTTING_DOWN;
    const req = { ...entry.route, now };
    const candidates = this.candidatesFor(req.model, req.displayModel, entry.tried, now);
    if (!Array.isArray(candidates)) return candidates;
    const b = candidates.find((x) => x.name === backend);
    if (!b || !this.ledger.hasRoom(b, req.model)) return WAIT;
    return this.take(this.choose([b], req), req, queuedMs, candidates.length);
  }

  private choose(open: Backend[], req: RouteRequest): Pick {
    const pick = this.policy.pick(open, req, this.ctx);
    if (req.sessionKey === null) return pick;
    const pinnedName = this.affinity.pinned(req.sessionKey);
    const pinned = pinnedName === undefined ? undefined : open.find((b) => b.name === pinnedName);
    if (pinned && pinned !== pick.backend) {
      // Stay with the pinned backend (its prompt cache) while its predicted wait is within the bound.
      const pinnedP = this.predictor.predict(pinned, req, this.ctx);
      const bestMs = pick.completionMs ?? this.predictor.predict(pick.backend, req, this.ctx).totalMs;
      // Staying is worth about what the prompt cache saves: re-evaluating the prompt elsewhere.
      const saves =
        (req.promptTokens ?? 0) * (pick.backend.learned.promptMsPerToken.value ?? DEFAULT_PROMPT_MS_PER_TOKEN);
      const bound = Math.min(this.config.affinityMaxExtraMs, Math.max(MIN_AFFINITY_MS, saves));
      if (pinnedP.totalMs <= bestMs + bound)
        return {
          backend: pinned,
          reason: 'affinity',
          predictedMs: Math.round(pinnedP.ttftMs),
          completionMs: Math.round(pinnedP.totalMs),
        };
    }
    this.affinity.pin(req.sessionKey, pick.backend.name);
    return pick;
  }

  /**
   * Where to load `model` again now that a load evicts it from `from` (sent there, or seen in
   * /api/ps), so that its traffic finds it warm instead of paying for a reload then
   * (make-before-break, as early as the evicting load is sent): only with the
   * predictive policy, only a model still in use (its own arrivals, not idle), only when no available
   * backend holds it or is loading it. Into room beside what a backend holds where there is some
   * (the backend where it would be ready soonest); else where its next request would load it when
   * that server's room is not known (nextLoadFor): never where a load evicts for sure. Null when
   * there is none.
   */
  rewarmTarget(model: string, from: Backend, now = Date.now()): { backend: Backend; loadMs: number } | null {
    if (!this.config.rewarmEvicted || !this.policy.weighsWaiting || this.lifecycle.state !== 'serving') return null;
    const available = this.registry.available();
    const demand = this.demand.perS(model, now) ?? this.demand.arrivals(model, now);
    if (demand === null || demand < IDLE_DEMAND_PER_S) return null;
    // A load sent to `from` is evicting it: it may still show there while its last requests finish.
    const leaving = (b: Backend) => b === from && b.maybeEvicted.has(model);
    if (available.some((b) => !leaving(b) && (b.isLoaded(model, now) || b.loadingUntil(model, now) > now))) return null;
    const req: RouteRequest = { model, modelSize: this.inventory.largestSize(model), sessionKey: null, now };
    return this.roomFor(model, available, req, from) ?? this.nextLoadFor(model, available, req, from);
  }

  /**
   * Where the next request for `model` (loaded nowhere, in use) would load it: its cold option with
   * the soonest predicted completion, priced as the request path prices it (a possible eviction
   * included). Taken when that is a server whose room is not known (the load may fit beside what is
   * there): the load the next request would start anyway, started now, so that the requests
   * arriving meanwhile do not each wait for it. Null when the best is a known-full room (a load
   * there evicts for sure: the request decides) or there is none.
   */
  private nextLoadFor(
    model: string,
    available: readonly Backend[],
    req: RouteRequest,
    not: Backend,
  ): { backend: Backend; loadMs: number } | null {
    let best: { backend: Backend; p: Prediction } | null = null;
    for (const b of available) {
      if (b === not || !b.hasModel(model) || b.busyUntil > req.now) continue;
      const p = this.predictor.predict(b, req, this.ctx);
      if (p.warm || !Number.isFinite(p.totalMs)) continue;
      if (best === null || p.totalMs < best.p.totalMs) best = { backend: b, p };
    }
    if (best === null || (best.p.evicts && best.backend.roomKnown)) return null;
    return { backend: best.backend, loadMs: best.p.loadMs };
  }

  /**
   * Where to load another copy of `model` in the background because its warm holders cannot keep
   * up: its own arrival rate (Demand.rate, over at least 3 s) at or past what they may serve (the slots they may have
   * over the service time each has shown for it), no copy being loaded already, and a backend with room for it
   * beside what it holds (a load there evicts nothing: with nothing told, a server that holds
   * nothing), once that overload has lasted as long as the load would take (at most 5 s). The
   * requests keep going to the warm holders meanwhile; none of them pays for the load, as the one
   * that started it would. The backend where it would be ready soonest; null when none. Before
   * that, a backend that holds nothing at all, as soon as the model's requests are past its warm
   * holders' shown slots (`idle` in the answer); with `idleOnly` (a load of the model is under way
   * from this balancer) only that.
   */
  scaleOutTarget(
    model: string,
    now = Date.now(),
    idleOnly = false,
  ): { backend: Backend; loadMs: number; idle: boolean } | null {
    if (!this.config.preloadSaturated || !this.policy.weighsWaiting || this.lifecycle.state !== 'serving') return null;
    const demand = this.demand.rate(model, now);
    if (demand === null) return null;
    const available = this.registry.available();
    const req: RouteRequest = { model, modelSize: this.inventory.largestSize(model), sessionKey: null, now };
    let possible = 0;
    let holders = 0;
    let shown = true;
    let loading = false;
    let inFlight = 0;
    let slots = 0;
    for (const b of available) {
      if (b.loadingUntil(model, now) > now) {
        loading = true;
        continue;
      }
      if (!b.isLoaded(model, now)) continue;
      holders++;
      inFlight += inFlightAt(b, model, this.ctx);
      slots += b.slotsFor(model);
      // What a holder serves is judged from what it has shown, never from a default.
      const serviceMs = b.learned.serviceMs.get(model)?.value ?? null;
      if (serviceMs === null) shown = false;
      else possible += (b.slotsAtMost(model) * 1000) / Math.max(1, serviceMs);
    }
    // A server that holds nothing (no model loaded or loading: its GPUs idle) is capacity nobody
    // uses. While the model's requests (running, or waiting in the balancer) are past the slots its
    // warm holders have shown, a copy is loaded there at once (one more idle server per look, at
    // most every 250 ms), without waiting for an overload to last: it evicts nothing, and a load
    // started early is ready when the queue has grown. The expert's pools do the same from the
    // first request. Servers that hold other models are left to the rule below.
    if (holders > 0 && inFlight + this.queue.waitingFor(model) > slots) {
      const idle = this.idleServerFor(model, available, req);
      if (idle !== null) return { ...idle, idle: true };
    }
    if (idleOnly || loading) return null;
    if (!shown) return null;
    if (holders === 0 || demand < SATURATED * possible) {
      this.overloadedSince.delete(model);
      return null;
    }
    // Looked at (at most every SCALE_OUT_CHECK_MS) as its requests are placed: a long gap is a new overload.
    const seen = this.overloadedSince.get(model);
    const since = seen !== undefined && now - seen.at <= OVERLOAD_GAP_MS ? seen.since : now;
    if (this.overloadedSince.size > 10_000) this.overloadedSince.clear(); // bounded: names come from clients
    this.overloadedSince.set(model, { since, at: now });
    const target = this.roomFor(model, available, req, null, true);
    // A burst shorter than the load is over before the copy is ready (it only costs the load): the
    // copy is loaded once the overload has lasted as long as loading it would take, or 5 s.
    if (target === null || now - since < Math.min(target.loadMs, SUSTAINED_OVERLOAD_MS)) return null;
    return { ...target, idle: false };
  }

  /** Among `available`, a backend holding nothing (loaded or loading) with `model` on disk where it would load soonest. */
  private idleServerFor(
    model: string,
    available: readonly Backend[],
    req: RouteRequest,
  ): { backend: Backend; loadMs: number } | null {
    let best: { backend: Backend; loadMs: number } | null = null;
    for (const b of available) {
      if (!b.hasModel(model) || b.busyUntil > req.now || b.loading.size > 0 || inFlightAt(b, null, this.ctx) > 0)
        continue;
      if (b.loadedCount(req.now) > 0) continue;
      const loadMs = this.predictor.loadMs(b, model, req, this.ctx);
      if (best === null || loadMs < best.loadMs) best = { backend: b, loadMs };
    }
    return best;
  }

  /**
   * Among `available` (but `not`), the backend with room for `model` beside what it holds where it
   * would load soonest. With `orCovered`, when none has such room, a backend whose room is not known
   * where the model the load might evict has a known demand that its other holders' shown capacity
   * covers (what its traffic pays is a share of a reload, below this load's own time): the load may
   * fit, and if it evicts, nobody's requests go without a warm server. One pass over the backends.
   */
  private roomFor(
    model: string,
    available: readonly Backend[],
    req: RouteRequest,
    not: Backend | null,
    orCovered = false,
  ): { backend: Backend; loadMs: number } | null {
    let free: { backend: Backend; loadMs: number } | null = null;
    let covered: { backend: Backend; loadMs: number; costMs: number } | null = null;
    for (const b of available) {
      if (b === not || !b.hasModel(model) || b.busyUntil > req.now) continue;
      const p = this.predictor.predict(b, req, this.ctx);
      if (p.warm) continue;
      if (!p.evicts) {
        if (free === null || p.loadMs < free.loadMs) free = { backend: b, loadMs: p.loadMs };
      } else if (orCovered && free === null && !b.roomKnown && p.amortizable && p.evictMs < p.loadMs) {
        const costMs = p.loadMs + p.evictMs;
        if (covered === null || costMs < covered.costMs) covered = { backend: b, loadMs: p.loadMs, costMs };
      }
    }
    return free ?? (covered === null ? null : { backend: covered.backend, loadMs: covered.loadMs });
  }

  private take(pick: Pick, req: RouteRequest, queuedMs: number, candidates: number): Lease {
    const b = pick.backend;
    const model = req.model;
    const cold =
      model !== null &&
      b.loadingUntil(model, req.now) === 0 &&
      (!b.isLoaded(model, req.now) || b.forcesReload(model, req.runnerOptions));
    if (cold) {
      b.runnerOptions.set(model!, req.runnerOptions ?? {});
      // Sent cold: the model is loading there now (later requests wait for it rather than load it
      // elsewhere), and what it may evict is uncertain until /api/ps says.
      const victim = b.noteLoadStarted(model!, req.now + this.predictor.loadMs(b, model!, req, this.ctx), req.now);
      this.inventory.refreshSoon(b, AFTER_COLD_MS);
      if (victim !== null) this.notify('eviction', this.evictionAheadListeners, b, victim);
    }
    // The load's starter, whose load_duration is the whole load (load speed is learned from it):
    // not when another request for the model is still at that server (one whose load was held back
    // and stayed; the server may be loading for it already).
    const starter = cold && b.inFlightFor(model!) === 0;
    const lease = this.ledger.take(pick, req, queuedMs);
    lease.startedLoad = cold;
    lease.loadStarter = starter;
    this.counters.routed++;
    this.counters.byReason.set(pick.reason, (this.counters.byReason.get(pick.reason) ?? 0) + 1);
    const d: Decision = {
      at: Date.now(),
      model: req.model,
      backend: pick.backend.name,
      reason: pick.reason,
      predictedMs: pick.predictedMs,
      queuedMs,
      candidates,
    };
    this.recentDecisions.push(d);
    if (this.recentDecisions.length > KEEP_DECISIONS) this.recentDecisions.shift();
    this.notify('decision', this.decisionListeners, d);
    return lease;
  }

  /**
   * Tells each listener (metrics, background loads). One that throws must not fail the request it
   * was told of: the lease is taken, and the request has to go on to its backend.
   */
  private notify<A extends unknown[]>(what: string, listeners: readonly ((...args: A) => void)[], ...args: A): void {
    for (const l of listeners)
      try {
        l(...args);
      } catch (e) {
        this.log.error(`${what} listener failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
  }
}

/**
 * No backend's model has what the request needs: 400 with Ollama's own message, so a client sees
 * what one Ollama would say (server/routes.go: `"<model>" does not support thinking`; sched's
 * CheckCapabilities: `<full name> does not support tools`).
 */
function lacking(
  model: string,
  displayModel: string | undefined,
  needed: readonly string[],
  holding: Backend[],
): NoCandidate {
  const missing = needed.filter((c) => !holding.some((b) => b.capabilitiesOf(model)?.includes(c)));
  const shown = displayModel ?? model;
  if (missing.length === 1 && missing[0] === 'thinking')
    return new NoCandidate(400, `${JSON.stringify(shown)} does not support thinking`);
  const n = parseModelName(shown);
  const rest = missing.filter((c) => c !== 'thinking');
  return new NoCandidate(
    400,
    `${n.host}/${n.namespace}/${n.model}:${n.tag} does not support ${(rest.length > 0 ? rest : missing).join(', ')}`,
  );
}
