import { RedisLink } from './redis-link';
import { SharedEvents } from './shared-events';
import {
  SharedClaims,
  SharedDemand,
  SharedLearned,
  SharedPins,
  SharedQuotas,
  SharedRateLimiter,
  SharedRegistrations,
} from './shared-limits';
import { SharedSlots, SlotCaps } from './shared-slots';
import { SharedStateConfig } from '../config/shared-state-config';

/**
 * Everything several balancer replicas share through one Redis, built when REDIS_URL is set (the
 * SHARED_STATE provider is null otherwise, and the balancer is a single process as before).
 */
export class SharedState {
  readonly link: RedisLink;
  readonly slots: SharedSlots;
  readonly pins: SharedPins;
  readonly rates: SharedRateLimiter;
  readonly quotas: SharedQuotas;
  readonly events: SharedEvents;
  readonly learned: SharedLearned;
  readonly registrations: SharedRegistrations;
  readonly claims: SharedClaims;
  readonly demand: SharedDemand;

  constructor(config: SharedStateConfig & { url: string }, capsOf: (backend: string, model: string) => SlotCaps) {
    this.link = new RedisLink(config);
    this.slots = new SharedSlots(this.link, capsOf);
    this.pins = new SharedPins(this.link, config.pinTtlMs);
    this.rates = new SharedRateLimiter(this.link);
    this.quotas = new SharedQuotas(this.link);
    this.events = new SharedEvents(this.link);
    this.learned = new SharedLearned(this.link);
    this.registrations = new SharedRegistrations(this.link);
    this.claims = new SharedClaims(this.link);
    this.demand = new SharedDemand(this.link);
  }

  get up(): boolean {
    return this.link.up;
  }

  start(): void {
    this.link.start();
    this.events.start();
  }

  async stop(): Promise<void> {
    this.events.stop();
    this.slots.close();
    await this.link.stop();
  }
}

/**
 * A cap this replica enforces on its own while Redis is unreachable: its share of the global cap
 * between the replicas alive at the last heartbeat, rounded down, at least 1 (0 = no cap stays 0).
 * Slots it already holds count against its share, so the replicas together stay within the cap once
 * the requests placed before the outage have finished.
 */
export function degradedCap(cap: number, replicas: number): number {
  if (cap <= 0) return 0;
  return Math.max(1, Math.floor(cap / Math.max(1, replicas)));
}

export const SHARED_STATE = Symbol('SHARED_STATE');
