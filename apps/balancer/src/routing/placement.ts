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

/** What placing a request gives: a slot on a backend, a reason to wait, or a refusal. */
export type Placement = Lease | typeof WAIT | NoCandidate;
