import { Inject, Injectable, Logger } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { SHARED_STATE, SharedSlot, SharedState, SharedStateUnavailable } from '../shared-state';
import { LeaseLedger } from './lease-ledger';
import { NoCandidate, Placement } from './placement';
import { FairPlacementQueue } from './fair-placement-queue';
import { PlaceWaiter, PlacementQueue, QueueCounters, QueuedRequest } from './placement-queue';
import { RoutingService } from './routing.service';
import { SessionAffinity } from './session-affinity';
import { SharedLeaseLedger } from './shared-lease-ledger';
import { SharedSessionAffinity } from './shared-session-affinity';

interface SharedWaiter {
  entry: QueuedRequest;
  enqueuedAt: number;
  timer: NodeJS.Timeout | null;
  cancel: ((reason: Error) => void) | null;
  slot: SharedSlot | null;
}

/**
 * The placement queue of replicas that share state (REDIS_URL). While Redis answers, every request
 * is placed through it: SharedSlots takes a slot on the first backend, in the policy's order, with
 * room under the global caps, or puts the request in its model's line in Redis, where a slot freed
 * on any replica goes to the oldest waiter that may use it. A granted request is then placed on that
 * backend (RoutingService.placeGranted, the ledger holding the grant). The line is ordered by
 * priority class, then arrival (fair share between keys within a class is a single replica's
 * refinement: FairPlacementQueue). While Redis is away, requests wait in this replica's
 * FairPlacementQueue on its share of the caps, as a single balancer would; they move back into
 * Redis's line when it returns.
 */
@Injectable()
export class SharedPlacementQueue extends PlacementQueue {
  private readonly logger = new Logger(SharedPlacementQueue.name);
  private readonly local: FairPlacementQueue;
  private readonly waiting = new Map<QueuedRequest, SharedWaiter>();
  private readonly ready: SharedWaiter[] = [];
  /** Requests waiting on local state (Redis away): the entry we gave the FIFO for each. */
  private readonly onLocal = new Map<QueuedRequest, QueuedRequest>();
  /** Requests of this replica waiting in Redis's line now. */
  private inLine = 0;
  private readonly own: QueueCounters = { queued: 0, timeouts: 0, rejected: 0, displaced: 0, shed: 0 };
  private routingRef: RoutingService | null = null;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly ledger: LeaseLedger,
    private readonly affinity: SessionAffinity,
    @Inject(SHARED_STATE) private readonly shared: SharedState,
    private readonly moduleRef: ModuleRef,
  ) {
    super();
    this.local = new FairPlacementQueue(config);
    shared.link.on('up', () => this.rejoin());
  }

  get counters(): QueueCounters {
    const l = this.local.counters;
    return {
      queued: this.own.queued + l.queued,
      timeouts: this.own.timeouts + l.timeouts,
      rejected: this.own.rejected + l.rejected,
      displaced: l.displaced,
      shed: l.shed,
    };
  }

  waitingByClassAndKey(): { cls: string; key: string; waiting: number }[] {
    const classes = this.config.priority.classes;
    const counts = new Map<string, { cls: string; key: string; waiting: number }>();
    for (const w of this.local.waitingByClassAndKey()) counts.set(`${w.cls}\u0000${w.key}`, { ...w });
    for (const w of this.waiting.values()) {
      if (w.timer === null) continue;
      const cls = classes[this.classOf(w.entry)] ?? this.config.priority.defaultClass;
      const key = w.entry.route.queue?.key ?? '';
      const id = `${cls}\u0000${key}`;
      const c = counts.get(id);
      if (c) c.waiting++;
      else counts.set(id, { cls, key, waiting: 1 });
    }
    return [...counts.values()];
  }

  /** The request's class as an index, 0 the highest. */
  private classOf(entry: QueuedRequest): number {
    return (
      entry.route.queue?.cls ?? Math.max(0, this.config.priority.classes.indexOf(this.config.priority.defaultClass))
    );
  }

  /** Requests waiting in Redis's line (not those still being placed) and on local state. */
  get length(): number {
    return this.inLine + this.local.length;
  }

  hasWaiting(model: string | null): boolean {
    if (this.local.hasWaiting(model)) return true;
    for (const w of this.waiting.values()) if (w.timer !== null && w.entry.route.model === model) return true;
    return false;
  }

  waitingFor(model: string | null): number {
    let n = this.local.waitingFor(model);
    for (const w of this.waiting.values()) if (w.timer !== null && w.entry.route.model === model) n++;
    return n;
  }

  private get routing(): RoutingService {
    return (this.routingRef ??= this.moduleRef.get(RoutingService, { strict: false })!);
  }

  offer(entry: QueuedRequest, now: number): NoCandidate | null {
    if (!this.shared.up) return this.offerLocal(entry, now);
    if (this.length >= this.config.queueMax) {
      this.own.rejected++;
      return new NoCandidate(503, 'server busy, please try again.  balancer queue is full', this.retryAfterS());
    }
    this.startShared(entry, now);
    return null;
  }

  private startShared(entry: QueuedRequest, enqueuedAt: number): void {
    const w: SharedWaiter = {
      entry,
      enqueuedAt,
      cancel: null,
      slot: null,
      // Armed once the request is in Redis's line: until then it waits only on Redis's answer,
      // which REDIS_COMMAND_TIMEOUT_MS bounds (most requests get a slot at once and never need one).
      timer: null,
    };
    this.waiting.set(entry, w);
    void this.placeShared(w);
  }

  private async placeShared(w: SharedWaiter): Promise<void> {
    const route = w.entry.route;
    // A conversation pinned through another replica: read its pin first, so the choice sees it.
    if (route.sessionKey !== null && this.affinity instanceof SharedSessionAffinity)
      await this.affinity.load(route.sessionKey);
    if (this.waiting.get(w.entry) !== w) return;
    const tried = w.entry.tried;
    let slot: SharedSlot | null;
    try {
      slot = await this.shared.slots.place({
        model: route.model,
        exclude: [...tried].map((b) => b.name),
        targets: () => {
          const order = this.routing.preferences({ ...route, now: Date.now() }, tried);
          if (order instanceof NoCandidate) throw order;
          return order.map((b) => b.name);
        },
        accept: (backend) => this.routing.acceptsGrant({ ...route, now: Date.now() }, tried, backend),
        // Every backend's counts come back with each request for a slot: the policy sees the fleet's load.
        observe: () => this.registry.backends.map((b) => b.name),
        wait: true,
        priority: this.classOf(w.entry),
        onQueued: (cancel) => {
          // Cancelled (client gone, closing) while Redis was answering: out of its line at once.
          if (this.waiting.get(w.entry) !== w) return cancel(new Error('no longer waiting'));
          w.cancel = cancel;
          this.own.queued++;
          this.inLine++;
          w.timer = setTimeout(
            () => this.timeout(w),
            Math.max(1, this.config.queueTimeoutMs - (Date.now() - w.enqueuedAt)),
          );
        },
      });
    } catch (e) {
      if (this.waiting.get(w.entry) !== w) return;
      this.finish(w);
      if (e instanceof NoCandidate) return w.entry.onRefused(e);
      if (!(e instanceof SharedStateUnavailable)) this.logger.error(`shared placement failed: ${(e as Error).message}`);
      // Redis is away: wait on this replica's share of the caps instead.
      const refusal = this.offerLocal(w.entry, w.enqueuedAt);
      if (refusal) w.entry.onRefused(refusal);
      else this.registry.capacityChanged();
      return;
    }
    if (this.waiting.get(w.entry) !== w) {
      // Cancelled or timed out meanwhile: the slot goes on to the next in line.
      if (slot) this.shared.slots.release(slot);
      return;
    }
    w.slot = slot;
    this.ready.push(w);
    // The routing drains the queue on a capacity change: the granted request is placed there.
    this.registry.capacityChanged();
  }

  cancel(entry: QueuedRequest): void {
    const w = this.waiting.get(entry);
    if (w) {
      this.finish(w);
      w.cancel?.(new Error('client gone'));
      if (w.slot) this.shared.slots.release(w.slot);
      return;
    }
    const onLocal = this.onLocal.get(entry);
    if (onLocal) {
      this.onLocal.delete(entry);
      this.local.cancel(onLocal);
    }
  }

  drain(place: PlaceWaiter): void {
    if (this.ready.length > 0) this.placeReady();
    if (this.local.length > 0) this.local.drain(place);
  }

  /** Places each request a slot was granted for, on that backend. */
  private placeReady(): void {
    const told: { entry: QueuedRequest; outcome: Placement }[] = [];
    const now = Date.now();
    for (const w of this.ready.splice(0)) {
      if (this.waiting.get(w.entry) !== w || !w.slot) continue;
      const slot = w.slot;
      this.finish(w);
      const { placement: outcome, taken } = (this.ledger as SharedLeaseLedger).withGrant(slot, () =>
        this.routing.placeGranted(w.entry, slot.backend, now - w.enqueuedAt, now),
      );
      if (!taken) this.shared.slots.release(slot);
      if (outcome.kind === 'wait') {
        // The backend granted is no longer a candidate here (cordoned, ejected meanwhile): in line again.
        this.startShared(w.entry, w.enqueuedAt);
        continue;
      }
      told.push({ entry: w.entry, outcome });
    }
    for (const { entry, outcome } of told) {
      if (outcome.kind === 'lease') entry.onPlaced(outcome);
      else if (outcome.kind === 'no-candidate') entry.onRefused(outcome);
    }
  }

  refuseAll(refusal: NoCandidate): void {
    for (const w of [...this.waiting.values()]) {
      this.finish(w);
      w.cancel?.(new Error('closing'));
      if (w.slot) this.shared.slots.release(w.slot);
      w.entry.onRefused(refusal);
    }
    this.ready.length = 0;
    this.onLocal.clear();
    this.local.refuseAll(refusal);
  }

  private finish(w: SharedWaiter): void {
    if (w.timer) {
      clearTimeout(w.timer);
      w.timer = null;
      this.inLine--;
    }
    this.waiting.delete(w.entry);
  }

  private timeout(w: SharedWaiter): void {
    if (this.waiting.get(w.entry) !== w) return;
    this.finish(w);
    this.own.timeouts++;
    w.cancel?.(new Error('queue timeout'));
    if (w.slot) this.shared.slots.release(w.slot);
    w.entry.onRefused(
      new NoCandidate(
        503,
        `server busy, please try again.  timed out after ${this.config.queueTimeoutMs} ms in the balancer queue`,
        this.retryAfterS(),
      ),
    );
  }

  /** Waits on this replica's state (Redis away); the entry is told through a wrapper that forgets it. */
  private offerLocal(entry: QueuedRequest, now: number): NoCandidate | null {
    const wrapped: QueuedRequest = {
      route: entry.route,
      tried: entry.tried,
      onPlaced: (lease) => {
        this.onLocal.delete(entry);
        entry.onPlaced(lease);
      },
      onRefused: (refusal) => {
        this.onLocal.delete(entry);
        entry.onRefused(refusal);
      },
    };
    const refusal = this.local.offer(wrapped, now);
    if (!refusal) this.onLocal.set(entry, wrapped);
    return refusal;
  }

  /** Redis is back: requests waiting on local state go into its line. */
  private rejoin(): void {
    for (const [entry, wrapped] of [...this.onLocal]) {
      this.onLocal.delete(entry);
      this.local.cancel(wrapped);
      this.startShared(entry, Date.now());
    }
  }

  private retryAfterS(): number {
    return Math.max(1, Math.ceil(Math.min(this.config.queueTimeoutMs, 30_000) / 1000 / 2));
  }
}
