import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import type { Backend } from '../fleet/backend';
import type { Lease } from './lease-ledger';
import { NoCandidate, Placement } from './placement';
import type { RouteRequest } from './policies';

/** A request waiting for a slot; told once, by onPlaced or onRefused, unless it was cancelled. */
export interface QueuedRequest {
  readonly route: RouteRequest;
  /** Backends it already tried (never placed there again). */
  readonly tried: ReadonlySet<Backend>;
  onPlaced(lease: Lease): void;
  onRefused(refusal: NoCandidate): void;
}

/** Counts for the status view and the metrics. */
export interface QueueCounters {
  queued: number;
  timeouts: number;
  rejected: number;
}

/**
 * Requests waiting for a slot when every candidate is at its cap: the one owner of who waits and in
 * which order. This implementation is a bounded FIFO; a priority or fair-share order, or a queue
 * shared by several replicas, replaces it behind the same methods.
 */
export abstract class PlacementQueue {
  abstract readonly counters: QueueCounters;
  abstract get length(): number;
  /** Whether a request for `model` waits (a new arrival must not overtake it). */
  abstract hasWaiting(model: string | null): boolean;
  /** Queues the request, or refuses it when the queue is full. */
  abstract offer(entry: QueuedRequest, now: number): NoCandidate | null;
  /** Takes a request out without telling it (the client left). */
  abstract cancel(entry: QueuedRequest): void;
  /**
   * Offers waiting requests, in the queue's order, to `place` (with the count of requests for the
   * same model ahead of each and the time it waited); the ones placed or refused leave the queue and
   * are told after the pass.
   */
  abstract drain(place: (entry: QueuedRequest, ahead: number, queuedMs: number, now: number) => Placement): void;
  /** Refuses every waiting request (the balancer is closing). */
  abstract refuseAll(refusal: NoCandidate): void;
}

interface Waiter {
  entry: QueuedRequest;
  enqueuedAt: number;
  timer: NodeJS.Timeout;
}

@Injectable()
export class FifoPlacementQueue extends PlacementQueue {
  readonly counters: QueueCounters = { queued: 0, timeouts: 0, rejected: 0 };
  private readonly waiters: Waiter[] = [];

  constructor(@Inject(BALANCER_CONFIG) private readonly config: BalancerConfig) {
    super();
  }

  get length(): number {
    return this.waiters.length;
  }

  hasWaiting(model: string | null): boolean {
    for (const w of this.waiters) if (w.entry.route.model === model) return true;
    return false;
  }

  offer(entry: QueuedRequest, now: number): NoCandidate | null {
    if (this.waiters.length >= this.config.queueMax) {
      this.counters.rejected++;
      return new NoCandidate(503, 'server busy, please try again.  balancer queue is full', this.retryAfterS());
    }
    this.counters.queued++;
    const w: Waiter = {
      entry,
      enqueuedAt: now,
      timer: setTimeout(() => {
        if (!this.remove(w)) return;
        this.counters.timeouts++;
        entry.onRefused(new NoCandidate(503, `server busy, please try again.  timed out after ${this.config.queueTimeoutMs} ms in the balancer queue`, this.retryAfterS()));
      }, this.config.queueTimeoutMs),
    };
    this.waiters.push(w);
    return null;
  }

  cancel(entry: QueuedRequest): void {
    const i = this.waiters.findIndex((w) => w.entry === entry);
    if (i < 0) return;
    clearTimeout(this.waiters[i].timer);
    this.waiters.splice(i, 1);
  }

  drain(place: (entry: QueuedRequest, ahead: number, queuedMs: number, now: number) => Placement): void {
    if (this.waiters.length === 0) return;
    const now = Date.now();
    const told: { entry: QueuedRequest; outcome: Lease | NoCandidate }[] = [];
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i];
      let ahead = 0;
      for (let j = 0; j < i; j++) if (this.waiters[j].entry.route.model === w.entry.route.model) ahead++;
      const outcome = place(w.entry, ahead, now - w.enqueuedAt, now);
      if (outcome.kind === 'wait') {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      told.push({ entry: w.entry, outcome });
    }
    // Told after the pass, so that what they do next (start, fail, release) cannot disturb it.
    for (const { entry, outcome } of told) {
      if (outcome.kind === 'lease') entry.onPlaced(outcome);
      else entry.onRefused(outcome);
    }
  }

  refuseAll(refusal: NoCandidate): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.entry.onRefused(refusal);
    }
  }

  private remove(w: Waiter): boolean {
    const i = this.waiters.indexOf(w);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    return true;
  }

  private retryAfterS(): number {
    return Math.max(1, Math.ceil(Math.min(this.config.queueTimeoutMs, 30_000) / 1000 / 2));
  }
}
