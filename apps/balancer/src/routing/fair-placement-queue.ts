import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { FairQueue, Waiter } from './fair-queue';
import type { Lease } from './lease-ledger';
import { NoCandidate } from './placement';
import { PlaceWaiter, PlacementQueue, QueuedRequest, QueueCounters } from './placement-queue';

/** How many waiters of one model a drain looks past, when those ahead chose to wait for a busy backend. */
const LOOK_BEHIND = 32;

interface Held {
  entry: QueuedRequest;
  timer: NodeJS.Timeout;
}

/**
 * The placement queue in priority-class and fair-share order (FairQueue's rules: strict priority
 * with a minimum share for lower classes, weighted fair share between keys within a class, FIFO
 * within a key). With no keys configured every request is in one class under one key, which is a
 * FIFO per model: today's behaviour.
 *
 * A drain offers capacity model by model to the waiter FairQueue names for it, the highest class
 * (then the oldest) first across models, and stops for a model at its first waiter that must keep
 * waiting: its work is proportional to the waiters placed plus one per model, not to the queue.
 * A retry that must avoid the backend that is free is passed over: the next waiter may use it.
 */
@Injectable()
export class FairPlacementQueue extends PlacementQueue {
  readonly counters: QueueCounters = { queued: 0, timeouts: 0, rejected: 0, displaced: 0, shed: 0 };
  readonly queue: FairQueue<Held>;
  private readonly waiters = new Map<QueuedRequest, Waiter<Held>>();

  constructor(@Inject(BALANCER_CONFIG) private readonly config: BalancerConfig) {
    super();
    const p = config.priority;
    this.queue = new FairQueue<Held>({
      classes: p.classes,
      minShareEvery: p.minShareEvery,
      capacity: config.queueMax,
      sheddable: p.sheddable,
      shedAt: p.shedAt,
    });
  }

  get length(): number {
    return this.queue.size;
  }

  hasWaiting(model: string | null): boolean {
    return this.queue.sizeFor(model) > 0;
  }

  waitingFor(model: string | null): number {
    return this.queue.sizeFor(model);
  }

  offer(entry: QueuedRequest, now: number): NoCandidate | null {
    const id = entry.route.queue ?? {
      cls: this.queue.classes.indexOf(this.config.priority.defaultClass),
      key: '',
      weight: 1,
    };
    const held: Held = { entry, timer: undefined as unknown as NodeJS.Timeout };
    const r = this.queue.offer(held, { model: entry.route.model, key: id.key, cls: id.cls, weight: id.weight, now });
    if (r.kind === 'shed') {
      this.counters.shed++;
      return new NoCandidate(
        429,
        `server busy: requests of class '${this.queue.classes[id.cls]}' are refused while ${this.queue.size} requests wait in the balancer queue`,
        this.retryAfterS(),
      );
    }
    if (r.kind === 'full') {
      this.counters.rejected++;
      return new NoCandidate(503, 'server busy, please try again.  balancer queue is full', this.retryAfterS());
    }
    this.counters.queued++;
    const w = r.waiter;
    this.waiters.set(entry, w);
    entry.queuePosition = w.position;
    held.timer = setTimeout(() => {
      if (!this.forget(entry)) return;
      this.counters.timeouts++;
      entry.onRefused(
        new NoCandidate(
          503,
          `server busy, please try again.  timed out after ${this.config.queueTimeoutMs} ms in the balancer queue`,
          this.retryAfterS(),
        ),
      );
    }, this.config.queueTimeoutMs);
    if (r.displaced !== null) {
      const d = r.displaced.value;
      clearTimeout(d.timer);
      this.waiters.delete(d.entry);
      this.counters.displaced++;
      d.entry.onRefused(
        new NoCandidate(
          503,
          `server busy, please try again.  displaced from the full balancer queue by a request of a higher class than '${this.queue.classes[r.displaced.cls]}'`,
          this.retryAfterS(),
        ),
      );
    }
    return null;
  }

  cancel(entry: QueuedRequest): void {
    this.forget(entry);
  }

  drain(place: PlaceWaiter): void {
    if (this.queue.size === 0) return;
    const now = Date.now();
    const told: { entry: QueuedRequest; outcome: Lease | NoCandidate }[] = [];
    const blocked = new Set<string | null>();
    // Retries (waiters with backends they must avoid) that cannot use what is free: passed over
    // for this pass so that the ones behind them still can.
    const skipped = new Set<Waiter<Held>>();
    // Per model, waiters passed over because they chose to wait for a busy backend (ahead of the next).
    const ahead = new Map<string | null, number>();
    for (;;) {
      // The best head across the models still open: highest class, then the oldest.
      let best: Waiter<Held> | null = null;
      for (const model of this.queue.waitingModels()) {
        if (blocked.has(model)) continue;
        const head = this.queue.peek(model, skipped);
        if (head === null) blocked.add(model);
        else if (best === null || head.cls < best.cls || (head.cls === best.cls && head.seq < best.seq)) best = head;
      }
      if (best === null) break;
      const entry = best.value.entry;
      const before = ahead.get(best.model) ?? 0;
      const outcome = place(entry, before, now - best.enqueuedAt, now, this.queue.sizeFor(best.model) - before - 1);
      if (outcome.kind === 'wait') {
        if (entry.tried.size > 0) skipped.add(best);
        else if ('byChoice' in outcome && before < LOOK_BEHIND) {
          // It would rather wait for a busy backend while another has room: the one behind it, one
          // further back in that line, may judge the free one sooner (join the shortest expected delay).
          skipped.add(best);
          ahead.set(best.model, before + 1);
        } else blocked.add(best.model); // nothing it may use is free: so, as a rule, for the rest
        continue;
      }
      if (outcome.kind === 'lease') this.queue.take(best);
      else this.queue.cancel(best);
      clearTimeout(best.value.timer);
      this.waiters.delete(entry);
      told.push({ entry, outcome });
    }
    // Told after the pass, so that what they do next (start, fail, release) cannot disturb it.
    for (const { entry, outcome } of told) {
      if (outcome.kind === 'lease') entry.onPlaced(outcome);
      else entry.onRefused(outcome);
    }
  }

  refuseAll(refusal: NoCandidate): void {
    for (const w of this.queue.drainAll()) {
      clearTimeout(w.value.timer);
      this.waiters.delete(w.value.entry);
      w.value.entry.onRefused(refusal);
    }
  }

  /** Waiting requests by class and key (for the status view, the dashboard and the metrics). */
  waitingByClassAndKey(): { cls: string; key: string; waiting: number }[] {
    return this.queue.waitingByClassAndKey();
  }

  private forget(entry: QueuedRequest): boolean {
    const w = this.waiters.get(entry);
    if (w === undefined) return false;
    this.waiters.delete(entry);
    clearTimeout(w.value.timer);
    return this.queue.cancel(w);
  }

  private retryAfterS(): number {
    return Math.max(1, Math.ceil(Math.min(this.config.queueTimeoutMs, 30_000) / 1000 / 2));
  }
}
