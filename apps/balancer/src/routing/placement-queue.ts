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
  /** Set by the queue when it takes the request: where it entered (for X-Balancer-Queue-Position). */
  queuePosition?: number;
}

/** Counts for the status view and the metrics. */
export interface QueueCounters {
  queued: number;
  timeouts: number;
  rejected: number;
  /** Waiters pushed out of a full queue by a higher class (503). */
  displaced: number;
  /** Sheddable requests refused instead of queued (429). */
  shed: number;
}

/**
 * Places one waiter in a queue pass: with the requests for its model ahead of it (passed over this
 * pass), how long it has waited, the time of the pass, and the requests for its model behind it.
 */
export type PlaceWaiter = (
  entry: QueuedRequest,
  ahead: number,
  queuedMs: number,
  now: number,
  behind: number,
) => Placement;

/**
 * Requests waiting for a slot when every candidate is at its cap: the one owner of who waits and in
 * which order. This process's implementation is FairPlacementQueue (priority classes, fair share
 * between keys); a queue shared by several replicas replaces it behind the same methods.
 */
export abstract class PlacementQueue {
  abstract readonly counters: QueueCounters;
  abstract get length(): number;
  /** Whether a request for `model` waits (a new arrival must not overtake it). */
  abstract hasWaiting(model: string | null): boolean;
  /** How many requests for `model` wait here (this replica's own, and those it holds for the shared line). */
  abstract waitingFor(model: string | null): number;
  /** Queues the request, or refuses it when the queue is full. */
  abstract offer(entry: QueuedRequest, now: number): NoCandidate | null;
  /** Takes a request out without telling it (the client left). */
  abstract cancel(entry: QueuedRequest): void;
  /**
   * Offers waiting requests, in the queue's order, to `place` (with the count of requests for the
   * same model ahead of each, the time it waited, and how many for the model wait behind it); the
   * ones placed or refused leave the queue and are told after the pass.
   */
  abstract drain(place: PlaceWaiter): void;
  /** Refuses every waiting request (the balancer is closing). */
  abstract refuseAll(refusal: NoCandidate): void;
  /** Waiting requests by class and key (status view, dashboard, metrics). */
  abstract waitingByClassAndKey(): { cls: string; key: string; waiting: number }[];
}
