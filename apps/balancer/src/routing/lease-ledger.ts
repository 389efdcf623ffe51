import { Injectable } from '@nestjs/common';
import type { Backend } from '../fleet/backend';
import type { OllamaCounters } from '../fleet/learned-stats';
import type { SlotSample } from '../fleet/learners';
import { BackendRegistry } from '../fleet/backend-registry.service';
import type { Pick, PickReason, RouteRequest } from './policies';

/** A dispatched request's hold on one slot of a backend; release exactly once. */
export class Lease {
  readonly kind = 'lease';
  private released = false;
  /** Its passage through the backend, for slot learning (null for routes without a model). */
  private readonly slot: SlotSample | null;
  constructor(
    readonly backend: Backend,
    readonly model: string | null,
    readonly reason: PickReason,
    readonly predictedMs: number | undefined,
    readonly queuedMs: number,
    /** When the policy expects the answer to be complete (0 when it does not predict). */
    readonly expectedEnd: number,
    private readonly ledger: LeaseLedger,
  ) {
    // Slots are learned only where nobody said how many there are.
    this.slot =
      model === null || backend.config.learnSlots !== true ? null : backend.learned.beginSlot(model, Date.now());
  }

  /** Sent while the model was not loaded (nor loading) there: it watches for Ollama holding that load back. */
  startedLoad = false;
  /** Sent cold with no other request for the model at that server: its load_duration is the whole load. */
  loadStarter = false;

  private watcher: { model: string; onHeld: () => void } | null = null;

  /**
   * Until its first byte (or its end), `onHeld` runs if the backend turns out to hold back the load
   * this request started (fleet/model-inventory.ts).
   */
  watchLoad(onHeld: () => void): void {
    if (!this.startedLoad || this.model === null || this.released) return;
    this.watcher = { model: this.model, onHeld };
    this.backend.loadWatchers.add(this.watcher);
  }

  private unwatch(): void {
    if (this.watcher === null) return;
    this.backend.loadWatchers.delete(this.watcher);
    this.watcher = null;
  }

  /**
   * The answer's first byte came back: the request holds a slot there now (slot learning). A good
   * answer's first byte also means the model is loaded there (Ollama answers once its runner is
   * ready): a load under way is done, and the requests queued in the balancer are offered that
   * backend again at once. (Offering the queue each slot a first byte proves was tried: it placed
   * requests on slow servers at moments a faster one was about to free, 1132683894 3.26 -> 4.27 s.)
   */
  firstByte(ok = true): void {
    this.unwatch();
    if (this.slot !== null && this.model !== null) this.backend.learned.startedSlot(this.model, this.slot);
    if (ok && this.model !== null && this.backend.loading.has(this.model)) {
      this.backend.noteLoaded(this.model);
      this.ledger.capacityGrew();
    }
  }

  /** The backend answered with these counters: they tell slot learning whether the request queued there. */
  answered(counters: OllamaCounters): void {
    if (this.slot !== null && this.model !== null)
      this.backend.learned.endSlot(this.model, this.slot, counters, Date.now());
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.unwatch();
    if (this.slot !== null && this.model !== null)
      this.backend.learned.endSlot(this.model, this.slot, null, Date.now());
    this.ledger.release(this);
  }
}

/**
 * In-flight accounting: who holds which backend's slots. The one place a slot is taken or given
 * back, so that a shared implementation (counts kept for several replicas) can replace this one.
 * Synchronous on purpose: placing a request costs no turn of the event loop.
 */
export abstract class LeaseLedger {
  /** Whether a request for `model` may take a slot on `b` now (under every cap). */
  abstract hasRoom(b: Backend, model: string | null): boolean;
  /** Takes a slot on the backend the policy picked. */
  abstract take(pick: Pick, req: RouteRequest, queuedMs: number): Lease;
  /** Gives the slot back; called by Lease.release, once. */
  abstract release(lease: Lease): void;
  /** A backend may take more now (a load under way there is done): queued requests may be placed. */
  abstract capacityGrew(): void;
  /**
   * Whether slots are granted later, not taken at once: a ledger shared by several replicas asks
   * Redis, so every placement waits in the queue until a grant comes (SharedPlacementQueue).
   */
  get grantsLater(): boolean {
    return false;
  }
  /** Requests other replicas have in flight at a backend, for the policies; null for a single balancer. */
  readonly othersInFlight: ((b: Backend, model: string | null) => number) | null = null;
  /** Requests waiting for the model on every replica (a shared line); 0 for a single balancer. */
  waitingFor(_model: string | null): number {
    return 0;
  }
}

/** This process's counts, exact, on each Backend (taken at dispatch, never overwritten by a poll). */
@Injectable()
export class LocalLeaseLedger extends LeaseLedger {
  constructor(private readonly registry: BackendRegistry) {
    super();
  }

  hasRoom(b: Backend, model: string | null): boolean {
    return !b.atCap(model);
  }

  take(pick: Pick, req: RouteRequest, queuedMs: number): Lease {
    const b = pick.backend;
    const expectedEnd = pick.completionMs !== undefined ? req.now + pick.completionMs : 0;
    b.acquire(req.model, expectedEnd);
    return new Lease(b, req.model, pick.reason, pick.predictedMs, queuedMs, expectedEnd, this);
  }

  release(lease: Lease): void {
    lease.backend.release(lease.model, lease.expectedEnd);
    // A slot freed: queued requests may take it now.
    this.registry.capacityChanged();
  }

  capacityGrew(): void {
    this.registry.capacityChanged();
  }
}
