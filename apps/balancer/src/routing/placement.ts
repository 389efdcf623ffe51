import type { Lease } from './lease-ledger';

/** No backend can take the request: the client's status and message. */
export class NoCandidate {
  readonly kind = 'no-candidate';
  constructor(
    readonly status: 400 | 404 | 429 | 503,
    readonly message: string,
    readonly retryAfterS?: number,
  ) {}
}

/** Every candidate is at its cap: the request may wait in the placement queue. */
export const WAIT = { kind: 'wait' } as const;

/**
 * A candidate has room, but the policy would rather wait for a busier one (warm, faster): the
 * requests queued behind it may still take that room (they are further back for the busy one).
 */
export const WAIT_BY_CHOICE = { kind: 'wait', byChoice: true } as const;

/** What placing a request gives: a slot on a backend, a reason to wait, or a refusal. */
export type Placement = Lease | typeof WAIT | typeof WAIT_BY_CHOICE | NoCandidate;
