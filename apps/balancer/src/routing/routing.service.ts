import { Inject, Injectable, Logger } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { Lifecycle } from '../lifecycle/lifecycle';
import { createPolicy, Pick, PickReason, PolicyContext, PredictivePolicy, RouteRequest, RoutingPolicy } from './policies';

/** A dispatched request's hold on a backend; release exactly once. */
export class Lease {
  private released = false;
  constructor(
    readonly backend: Backend,
    readonly model: string | null,
    readonly reason: PickReason,
    readonly predictedMs: number | undefined,
    readonly queuedMs: number,
    /** When the policy expects the answer to be complete (0 when it does not predict). */
    readonly expectedEnd: number,
    private readonly onRelease: (lease: Lease) => void,
  ) {}
  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this);
  }
  get isReleased(): boolean {
    return this.released;
  }
}

/** Why no backend could be had: becomes the client's status and message. */
export class RouteError extends Error {
  constructor(
    readonly status: 404 | 429 | 503,
    message: string,
    readonly retryAfterS?: number,
    readonly kind: 'not_found' | 'no_backend' | 'queue_full' | 'queue_timeout' | 'draining' = 'no_backend',
  ) {
    super(message);
  }
}

interface Waiter {
  req: RouteRequest;
  exclude: ReadonlySet<Backend> | undefined;
  enqueuedAt: number;
  resolve: (lease: Lease) => void;
  reject: (err: RouteError) => void;
  timer: NodeJS.Timeout;
}

export interface Decision {
  at: number;
  model: string | null;
  backend: string;
  reason: PickReason;
  predictedMs?: number;
  queuedMs: number;
  candidates: number;
}

const AFFINITY_MAX_SESSIONS = 10_000;
/** Until a backend has shown its prompt speed: about 1,000 prompt tokens per second. */
const DEFAULT_PROMPT_MS_PER_TOKEN = 1;
/** Affinity always tolerates this much extra predicted time (keeps short chats together). */
const MIN_AFFINITY_MS = 50;

/**
 * Filter -> score -> pick. Filters drop backends that cannot serve (unhealthy, cordoned, ejected,
 * without the model, at their caps); the configured policy ranks the rest. When every candidate is
 * at its cap the request waits in a bounded FIFO queue instead of piling onto one server.
 */
@Injectable()
export class RoutingService {
  private readonly logger = new Logger(RoutingService.name);
  readonly policy: RoutingPolicy;
  private readonly predictor = new PredictivePolicy();
  private readonly ctx: PolicyContext;
  private readonly waiters: Waiter[] = [];
  /** Session key -> backend name, in insertion order for bounded eviction. */
  private readonly sessions = new Map<string, string>();
  readonly recentDecisions: Decision[] = [];
  /** Retries in progress, for the retry budget. */
  activeRetries = 0;
  readonly counters = { routed: 0, queued: 0, queueTimeouts: 0, queueRejected: 0, byReason: new Map<string, number>() };
  /** Called for every decision (metrics and logs hook in here). */
  readonly decisionListeners: ((d: Decision) => void)[] = [];

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly lifecycle: Lifecycle,
  ) {
    this.policy = createPolicy(config.policy);
    this.ctx = { agentStaleMs: config.agentStaleMs };
    registry.onCapacity(() => this.drainQueue());
    lifecycle.onChange((state) => {
      if (state === 'closing') this.refuseQueued();
    });
  }

  get queueLength(): number {
    return this.waiters.length;
  }

  queueLengthFor(model: string | null): number {
    let n = 0;
    for (const w of this.waiters) if (w.req.model === model) n++;
    return n;
  }

  /** The drain deadline passed: every queued request gets 503 now. */
  private refuseQueued(): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new RouteError(503, 'balancer is shutting down', 1, 'draining'));
    }
  }

  /**
   * Backends that may serve the model: available, and holding it (a backend whose inventory is not
   * known yet stays a candidate). Throws RouteError when none can.
   */
  candidatesFor(req: RouteRequest, exclude?: ReadonlySet<Backend>): Backend[] {
    const available = this.registry.available(req.now).filter((b) => !exclude?.has(b));
    if (this.registry.backends.length === 0) throw new RouteError(503, 'no Ollama backends are configured', 5);
    if (available.length === 0) {
      const model = req.model;
      if (model !== null && !this.registry.backends.some((b) => b.inventoryAt === null || b.hasModel(model)))
        throw new RouteError(404, `model '${req.displayModel ?? model}' not found`, undefined, 'not_found');
      const tried = exclude && exclude.size > 0;
      throw new RouteError(503, tried ? 'no healthy backend could take the request' : 'no healthy Ollama backend is available', 5);
    }
    if (req.model === null) return available;
    const model = req.model;
    const holding = available.filter((b) => b.inventoryAt === null || b.hasModel(model));
    if (holding.length > 0) return holding;
    const anywhere = this.registry.backends.some((b) => b.hasModel(model));
    if (anywhere) throw new RouteError(503, `no healthy backend holding model '${req.displayModel ?? model}' is available`, 5);
    throw new RouteError(404, `model '${req.displayModel ?? model}' not found`, undefined, 'not_found');
  }

  /**
   * Places the request at once when it can: a lease, or null when it would have to wait (then call
   * acquire). Throws RouteError when no backend can take it at all.
   */
  tryAcquire(req: RouteRequest, exclude?: ReadonlySet<Backend>): Lease | null {
    if (this.lifecycle.state === 'closing') throw new RouteError(503, 'balancer is shutting down', 1, 'draining');
    return this.tryPlace(req, exclude, req.now);
  }

  /** Places the request on a backend, waiting in the queue when every candidate is at its cap. */
  acquire(req: RouteRequest, exclude?: ReadonlySet<Backend>, onQueued?: (cancel: () => void) => void): Promise<Lease> {
    if (this.lifecycle.state === 'closing') return Promise.reject(new RouteError(503, 'balancer is shutting down', 1, 'draining'));
    let lease: Lease | null;
    try {
      lease = this.tryPlace(req, exclude, req.now);
    } catch (e) {
      return Promise.reject(e);
    }
    if (lease) return Promise.resolve(lease);
    if (this.waiters.length >= this.config.queueMax) {
      this.counters.queueRejected++;
      return Promise.reject(new RouteError(503, 'server busy, please try again.  balancer queue is full', this.retryAfterS(), 'queue_full'));
    }
    this.counters.queued++;
    return new Promise<Lease>((resolve, reject) => {
      const w: Waiter = {
        req,
        exclude,
        enqueuedAt: Date.now(),
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeWaiter(w);
          this.counters.queueTimeouts++;
          reject(new RouteError(503, `server busy, please try again.  timed out after ${this.config.queueTimeoutMs} ms in the balancer queue`, this.retryAfterS(), 'queue_timeout'));
        }, this.config.queueTimeoutMs),
      };
      this.waiters.push(w);
      onQueued?.(() => {
        if (this.removeWaiter(w)) {
          clearTimeout(w.timer);
          reject(new RouteError(503, 'request canceled while queued', undefined, 'queue_timeout'));
        }
      });
    });
  }

  private retryAfterS(): number {
    return Math.max(1, Math.ceil(Math.min(this.config.queueTimeoutMs, 30_000) / 1000 / 2));
  }

  private removeWaiter(w: Waiter): boolean {
    const i = this.waiters.indexOf(w);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    return true;
  }

  /** Gives queued requests the capacity that appeared, oldest first (FIFO per model). */
  drainQueue(): void {
    if (this.waiters.length === 0) return;
    const now = Date.now();
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i];
      let lease: Lease | null = null;
      try {
        let ahead = 0;
        for (let j = 0; j < i; j++) if (this.waiters[j].req.model === w.req.model) ahead++;
        lease = this.tryPlace({ ...w.req, now, queuedAhead: ahead }, w.exclude, now, now - w.enqueuedAt);
      } catch (e) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.reject(e as RouteError);
        continue;
      }
      if (lease) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(lease);
        continue;
      }
      i++;
    }
  }

  private tryPlace(req: RouteRequest, exclude: ReadonlySet<Backend> | undefined, now: number, queuedMs = 0): Lease | null {
    const candidates = this.candidatesFor(req, exclude);
    // An older waiter for the same model goes first: a new arrival never overtakes the queue.
    if (queuedMs === 0 && this.waiters.length > 0 && this.waiters.some((w) => w.req.model === req.model)) return null;
    if (this.policy.weighsWaiting) {
      // The policy may judge that waiting for a busy (warm) backend beats a free (cold) one.
      const pick = this.choose(candidates, req);
      if (pick.backend.atCap(req.model)) return null;
      return this.dispatch(pick, req, queuedMs, candidates.length);
    }
    const open = candidates.filter((b) => !b.atCap(req.model));
    if (open.length === 0) return null;
    const pick = this.choose(open, req);
    return this.dispatch(pick, req, queuedMs, candidates.length);
  }

  private choose(open: Backend[], req: RouteRequest): Pick {
    const pick = this.policy.pick(open, req, this.ctx);
    if (req.sessionKey === null) return pick;
    const pinnedName = this.sessions.get(req.sessionKey);
    const pinned = pinnedName === undefined ? undefined : open.find((b) => b.name === pinnedName);
    if (pinned && pinned !== pick.backend) {
      // Stay with the pinned backend (its prompt cache) while its predicted wait is within the bound.
      const pinnedP = this.predictor.predict(pinned, req, this.ctx);
      const bestMs = pick.completionMs ?? this.predictor.predict(pick.backend, req, this.ctx).totalMs;
      // Staying is worth about what the prompt cache saves: re-evaluating the prompt elsewhere.
      const saves = (req.promptTokens ?? 0) * (pick.backend.learned.promptMsPerToken.value ?? DEFAULT_PROMPT_MS_PER_TOKEN);
      const bound = Math.min(this.config.affinityMaxExtraMs, Math.max(MIN_AFFINITY_MS, saves));
      if (pinnedP.totalMs <= bestMs + bound)
        return { backend: pinned, reason: 'affinity', predictedMs: Math.round(pinnedP.ttftMs), completionMs: Math.round(pinnedP.totalMs) };
    }
    this.pin(req.sessionKey, pick.backend.name);
    return pick;
  }

  private pin(key: string, backend: string): void {
    this.sessions.delete(key);
    this.sessions.set(key, backend);
    if (this.sessions.size > AFFINITY_MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
  }

  pinnedBackend(sessionKey: string): string | undefined {
    return this.sessions.get(sessionKey);
  }

  private dispatch(pick: Pick, req: RouteRequest, queuedMs: number, candidates: number): Lease {
    const b = pick.backend;
    const expectedEnd = pick.completionMs !== undefined ? req.now + pick.completionMs : 0;
    b.acquire(req.model, expectedEnd);
    this.counters.routed++;
    this.counters.byReason.set(pick.reason, (this.counters.byReason.get(pick.reason) ?? 0) + 1);
    const d: Decision = { at: Date.now(), model: req.model, backend: b.name, reason: pick.reason, predictedMs: pick.predictedMs, queuedMs, candidates };
    this.recentDecisions.push(d);
    if (this.recentDecisions.length > 50) this.recentDecisions.shift();
    for (const l of this.decisionListeners) l(d);
    return new Lease(b, req.model, pick.reason, pick.predictedMs, queuedMs, expectedEnd, (lease) => {
      lease.backend.release(lease.model, lease.expectedEnd);
      this.drainQueue();
    });
  }

  /** Whether the retry budget allows one more retry now (Envoy-style: a share of active requests). */
  retryAllowed(): boolean {
    const active = this.registry.totalInFlight();
    return this.activeRetries < Math.max(this.config.retryBudgetMin, Math.floor(active * this.config.retryBudgetRatio));
  }
}
