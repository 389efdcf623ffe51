import { Inject, Injectable } from '@nestjs/common';
import type { Backend } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { degradedCap, SHARED_STATE, SharedSlot, SharedState } from '../shared-state';
import { Lease, LeaseLedger } from './lease-ledger';
import type { Pick, RouteRequest } from './policies';

/**
 * In-flight slots counted for every replica together, in Redis (REDIS_URL). While Redis answers, no
 * slot is taken here without its grant: every placement goes through SharedPlacementQueue, which
 * asks Redis for a slot and then places the request on the backend granted (withGrant). While Redis
 * is away, this replica takes slots on its own up to its share of each cap (degradedCap: the cap
 * divided by the replicas alive at the last heartbeat, at least 1); those slots are registered in
 * Redis when it returns. The counts on each Backend stay this replica's own, as before.
 */
@Injectable()
export class SharedLeaseLedger extends LeaseLedger {
  private granted: SharedSlot | null = null;
  private grantUsed = false;
  private readonly slotOf = new WeakMap<Lease, SharedSlot>();

  constructor(
    private readonly registry: BackendRegistry,
    @Inject(SHARED_STATE) private readonly shared: SharedState,
  ) {
    super();
  }

  override readonly othersInFlight = (b: Backend, model: string | null): number =>
    this.shared.slots.othersInFlight(b.name, model);

  override waitingFor(model: string | null): number {
    return this.shared.slots.waitingFor(model);
  }

  override get grantsLater(): boolean {
    return this.shared.up;
  }

  /** Runs a placement with the slot Redis granted (only its backend has room meanwhile); whether it took the slot. */
  withGrant<T>(slot: SharedSlot, place: () => T): { placement: T; taken: boolean } {
    this.granted = slot;
    this.grantUsed = false;
    try {
      const placement = place();
      return { placement, taken: this.grantUsed };
    } finally {
      this.granted = null;
    }
  }

  hasRoom(b: Backend, model: string | null): boolean {
    if (this.granted) return b.name === this.granted.backend;
    if (this.shared.up) return false;
    return this.hasLocalRoom(b, model);
  }

  /** This replica's share of the caps, while Redis is away. */
  private hasLocalRoom(b: Backend, model: string | null): boolean {
    const replicas = this.shared.link.replicasSeen;
    const c = b.config;
    const factor = b.slowStartFactor();
    const eff = (cap: number) => (cap <= 0 ? 0 : Math.max(1, Math.floor(cap * factor)));
    if (c.maxConcurrency > 0 && b.inFlight >= degradedCap(eff(c.maxConcurrency), replicas)) return false;
    if (
      model !== null &&
      c.modelConcurrency > 0 &&
      b.inFlightFor(model) >= degradedCap(eff(c.modelConcurrency), replicas)
    )
      return false;
    return true;
  }

  take(pick: Pick, req: RouteRequest, queuedMs: number): Lease {
    const b = pick.backend;
    const expectedEnd = pick.completionMs !== undefined ? req.now + pick.completionMs : 0;
    b.acquire(req.model, expectedEnd);
    let slot: SharedSlot;
    if (this.granted && this.granted.backend === b.name && !this.grantUsed) {
      slot = this.granted;
      this.grantUsed = true;
    } else slot = this.shared.slots.adoptLocal(b.name, req.model);
    const lease = new Lease(b, req.model, pick.reason, pick.predictedMs, queuedMs, expectedEnd, this);
    this.slotOf.set(lease, slot);
    return lease;
  }

  release(lease: Lease): void {
    lease.backend.release(lease.model, lease.expectedEnd);
    const slot = this.slotOf.get(lease);
    if (slot) this.shared.slots.release(slot);
    this.registry.capacityChanged();
  }

  capacityGrew(): void {
    this.registry.capacityChanged();
  }
}
